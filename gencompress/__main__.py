"""`python -m gencompress ...` (and `torchrun -m gencompress train ...`)."""
from gencompress.cli import main

main()

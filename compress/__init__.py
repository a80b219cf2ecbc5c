"""Stage 1: make generators small: pruning, distillation, INT8 PTQ/QAT, sensitivity."""
from .quantize import QuantConfig, quantize, restore_quantized  # noqa: F401

"""Stage 3: latency against quality loss, reports.

`run(bundle, cfg)` times a bundle on each backend and batch and judges its quality;
`sweep(bundle, cfg)` does so for every pruning ratio x precision; report_html turns
result JSONs into Markdown and self-contained HTML.
"""
from .bench import BenchConfig, run  # noqa: F401
from .sweep import SweepConfig, sweep  # noqa: F401

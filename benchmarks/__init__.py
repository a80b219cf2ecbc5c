"""Stage 3: latency against quality loss, reports.

`run(bundle, cfg)` times a bundle on each backend and batch and judges its quality;
`sweep(bundle, cfg)` does so for every pruning ratio x precision; report_html turns
result JSONs into Markdown and self-contained HTML. `build` takes its speed numbers from
build_speed and writes its report with report.write_build_report.
"""
from .bench import BenchConfig, run  # noqa: F401
from .build_speed import (ESTIMATE_PROFILES, Timing, latency_table, onnx_runners, paired_speedup, runtime_speedup,  # noqa: F401
                          target_estimate, timing_batch)
from .report import write_build_report  # noqa: F401
from .sweep import SweepConfig, sweep  # noqa: F401

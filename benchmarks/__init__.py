"""Stage 3: latency against quality loss, reports.

`run(bundle, cfg)` times a bundle on each backend and batch and judges its quality;
`sweep.sweep(bundle, cfg)` does so for every pruning ratio x precision (the module, not a
re-export: a lazy package attribute cannot share a submodule's name); report_html turns
result JSONs into Markdown and self-contained HTML. `build` takes its speed numbers from
build_speed and writes its report with report.write_build_report.
"""
from gencompress.lazy import lazy_exports

# Imported on first use (gencompress/lazy.py): a light module of this package (devices,
# pareto) must not import PyTorch through this package first.
__getattr__, __dir__ = lazy_exports(__name__, {
    "BenchConfig": "bench", "run": "bench",
    **{name: "build_speed" for name in ("ESTIMATE_PROFILES", "Timing", "estimate_profile", "latency_table", "onnx_runners", "paired_speedup",
                                        "runtime_speedup", "target_estimate", "timing_batch")},
    "write_build_report": "report", "ort_runtime_text": "report",
    "SweepConfig": "sweep",
})

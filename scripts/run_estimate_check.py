"""Roofline estimate against ONNX Runtime measurement for every zoo model on this CPU.

    python scripts/run_estimate_check.py

Writes benchmarks/results/cpu_estimate_check.json and its report folder. Models are
random-initialised: latency and the roofline depend on the architecture, not the weights
(so no training is needed). The check asks for measured / estimated within [1/3, 3] at
batch 8 (FP32 ONNX Runtime, 2 threads, this machine's CPU profile `cpu`, measured here).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def main() -> int:
    import torch

    from gencompress import zoo
    from gencompress.benchmarks.bench import BenchConfig, run
    from gencompress.benchmarks.report_html import load_runs, write_report
    from gencompress.benchmarks.results_io import merge, write_json
    from gencompress.train.pretrained import zoo_bundle

    load_start = list(os.getloadavg())
    results = []
    for name in zoo.names():
        torch.manual_seed(0)
        cfg = BenchConfig(backends=("ort",), batches=(1, 8), iters=50, warmup=10, quality_samples=16, variant=f"{name} (random init)")
        results.append(run(zoo_bundle(name, zoo.build(name)), cfg))
    merged = merge(results)
    merged["estimate_vs_measured"] = [c for r in results for c in r["estimate_vs_measured"]]
    merged["conditions"]["loadavg_at_start"] = load_start
    merged["command"] = "python scripts/run_estimate_check.py"
    out = RESULTS / "cpu_estimate_check.json"
    write_json(out, merged)
    write_report(load_runs([str(out)]), out.with_suffix(""), title="Roofline estimate vs ONNX Runtime on this CPU (zoo models)")
    for c in merged["estimate_vs_measured"]:
        ok = 1 / 3 <= c["ratio"] <= 3
        print(f"{c['variant']:<34} batch {c['batch']:>2}: estimate {c['estimated_ms']:.3f} ms, measured {c['measured_ms']:.3f} ms, "
              f"ratio {c['ratio']:.2f} {'(within 3x)' if ok else '(OUTSIDE 3x)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

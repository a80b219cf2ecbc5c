"""Regenerate the committed CPU sweep of the digits DCGAN and its report.

    python scripts/run_cpu_sweep.py            # full sweep (tens of minutes on 2 cores)
    python scripts/run_cpu_sweep.py --quick    # a smoke run: fewer variants and iterations

Writes benchmarks/results/cpu_sweep_dcgan.json and benchmarks/results/cpu_sweep_dcgan/
(report.md, report.html, figures). Run it on a quiet machine: the load average at the
start and end is recorded in the JSON's conditions, and timings from a busy machine are
noisy (other processes steal the 2 cores).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def config(quick: bool):
    from gencompress.benchmarks.sweep import SweepConfig

    if quick:
        return SweepConfig(prune=(0.0, 0.5), precisions=("fp32", "int8"), batches=(1, 8), iters=10, warmup=3,
                           distill_steps=50, baselines=("torch", "torch-channels-last"), fps=30, data_samples=256)
    return SweepConfig(
        prune=(0.0, 0.25, 0.5, 0.75),
        precisions=("fp32", "fp16", "int8", "int8-cpu"),
        batches=(1, 8, 32),
        iters=30,
        warmup=5,
        distill_steps=300,
        baselines=("torch", "torch-channels-last", "torch-compile"),
        estimate_profiles=("cpu", "jetson-orin-nano", "jetson-agx-orin"),
        fps=30,
        data_samples=512,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="CPU sweep of the digits DCGAN, with its report")
    parser.add_argument("--quick", action="store_true", help="a smoke run (fewer variants, fewer iterations)")
    parser.add_argument("--out", default=str(RESULTS / "cpu_sweep_dcgan.json"))
    args = parser.parse_args(argv)

    from gencompress.benchmarks.report_html import load_runs, write_report
    from gencompress.benchmarks.results_io import write_json
    from gencompress.benchmarks.sweep import sweep
    from gencompress.loading import load_spec
    from gencompress.train.pretrained import get_or_train

    load_start = list(os.getloadavg())
    bundle = load_spec(str(get_or_train("dcgan").path))
    result = sweep(bundle, config(args.quick))
    result["conditions"]["loadavg_at_start"] = load_start
    result["conditions"]["loadavg_at_end"] = list(os.getloadavg())
    result["command"] = "python scripts/run_cpu_sweep.py" + (" --quick" if args.quick else "")
    out = Path(args.out)
    write_json(out, result)
    report = write_report(load_runs([str(out)]), out.with_suffix(""), title="gencompress CPU sweep: digits DCGAN")
    print(f"wrote {out} and {report}/report.html; Pareto front: {'; '.join(result['pareto_front'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

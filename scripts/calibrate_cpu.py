"""Measure this CPU's *effective* throughput under ONNX Runtime: the roofline's `cpu` profile.

    python scripts/calibrate_cpu.py [--threads 2] [--out benchmarks/results/cpu_calibration.json]

The measurement is benchmarks/cpu_profile.py's (four micro-graphs: FP32 Conv, the same Conv in
Q/DQ form, a 192 MiB Add, a chain of 50 Sin), which `estimate`, `bench` and `sweep` also run on
first use and cache per CPU model, flags, threads and ONNX Runtime version. This script always
measures afresh, refreshes that cache, and prints (or writes) the record with its conditions.
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    from gencompress.atomic import atomic_write_text
    from gencompress.benchmarks.cpu_profile import measured_record
    from gencompress.conditions import describe

    record = measured_record(args.threads, refresh=True)
    text = json.dumps({**record, "conditions": describe(args.threads)}, indent=2)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

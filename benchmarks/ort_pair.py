"""Interleaved ONNX Runtime CPU timing of several graphs, in a clean child process.

Comparing an FP32 graph with its INT8 form on a small CPU is easily distorted:

- each InferenceSession has its own thread pool whose workers spin after a run, so the
  session not being timed takes cores from the one being timed (on 2 cores the same
  graph's median moved by up to 1.9x between runs);
- PyTorch's OpenMP workers, in a process that has just quantised or verified, do the same;
- the machine's speed drifts over minutes (shared hosts), which hits whichever graph
  happens to be timed at the time.

So the graphs are timed in a child process that imports only ONNX Runtime, with one
process-wide intra-op pool that every session shares, in interleaved rounds: each round
times every graph for `inner` calls, and the speed ratio is taken per round, so a drift
affects both sides of each ratio alike. Reported: the median of the per-round medians
and the median of the per-round ratios against the first graph.

    python -m gencompress.benchmarks.ort_pair SPEC.json   (written by `time_graphs`)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gencompress.errors import GencompressError, first_line


def time_graphs(graphs: dict[str, Path], batch_input: np.ndarray, threads: int = 2, rounds: int = 15,
                inner: int = 20, warmup: int = 10) -> dict:
    """Time each graph on `batch_input` in a child process (see the module docstring).

    Returns {"median_ms": {name: ms}, "ratio_to_first": {name: x}, "rounds": {name: [ms, ...]},
    "method": "..."}; the first graph is the reference of the ratios.
    """
    with tempfile.TemporaryDirectory(prefix="gencompress-ort-pair-") as tmp:
        spec = Path(tmp) / "spec.json"
        np.save(Path(tmp) / "input.npy", np.ascontiguousarray(batch_input, dtype=np.float32))
        spec.write_text(json.dumps({"graphs": {k: str(v) for k, v in graphs.items()}, "input": str(Path(tmp) / "input.npy"),
                                    "threads": threads, "rounds": rounds, "inner": inner, "warmup": warmup}))
        # The child must not inherit a thread-count override that differs from `threads`.
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
        done = subprocess.run([sys.executable, "-m", "gencompress.benchmarks.ort_pair", str(spec)],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise GencompressError(f"ONNX Runtime timing process failed: {lines[-1][:300]}")
        return json.loads(done.stdout)


def _session(path: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.use_per_session_threads = False  # the process-wide pool (module docstring)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _run(spec: dict) -> dict:
    import onnxruntime.capi._pybind_state as ort_state

    ort_state.set_global_thread_pool_sizes(spec["threads"], 1)
    sessions = {name: _session(path) for name, path in spec["graphs"].items()}
    x = np.load(spec["input"])
    feeds = {name: {s.get_inputs()[0].name: x} for name, s in sessions.items()}
    for name, s in sessions.items():
        for _ in range(spec["warmup"]):
            s.run(None, feeds[name])
    rounds: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(spec["rounds"]):
        for name, s in sessions.items():
            times = []
            for _ in range(spec["inner"]):
                start = time.perf_counter_ns()
                s.run(None, feeds[name])
                times.append((time.perf_counter_ns() - start) / 1e6)
            rounds[name].append(float(np.median(times)))
    first = next(iter(rounds.values()))
    return {
        "median_ms": {k: float(np.median(v)) for k, v in rounds.items()},
        "ratio_to_first": {k: float(np.median(np.asarray(first) / np.asarray(v))) for k, v in rounds.items()},
        "rounds": rounds,
        "method": (f"child process, one shared {spec['threads']}-thread ONNX Runtime pool, {spec['rounds']} interleaved rounds "
                   f"x {spec['inner']} calls after {spec['warmup']} warm-up calls; median of round medians, median of per-round ratios"),
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        result = _run(json.loads(Path(argv[0]).read_text()))
    except Exception as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

With `seconds`, the whole measurement is bounded in time as well as by count (see
benchmarks/latency.py): the warm-up calls tell each graph's cost, and the calls per round
and then the rounds shrink (to no fewer than MIN_ROUNDS rounds of one call) so that the
timed rounds fit in `seconds`; a 1 ms graph keeps its `rounds` x `inner`.

    python -m gencompress.export.ort_pair SPEC.json   (written by `time_graphs`)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from gencompress.child import child_main, run_in_child


MIN_ROUNDS = 3  # per-round ratios need a few rounds for their median
WARMUP_SHARE = 0.25


def time_graphs(graphs: dict[str, Path], batch_input: np.ndarray, threads: int = 2, rounds: int = 15,
                inner: int = 20, warmup: int = 10, seconds: float | None = None) -> dict:
    """Time each graph on `batch_input` in a child process (see the module docstring).

    Returns {"median_ms": {name: ms}, "ratio_to_first": {name: x}, "rounds": {name: [ms, ...]},
    "method": "..."}; the first graph is the reference of the ratios.
    """
    spec = {"graphs": {k: str(v) for k, v in graphs.items()}, "threads": threads, "rounds": rounds, "inner": inner,
            "warmup": warmup, "seconds": seconds}
    return run_in_child("gencompress.export.ort_pair", spec, batch_input, "ONNX Runtime timing")


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
    per_call = {name: warm_up(lambda s=s, name=name: s.run(None, feeds[name]), spec) for name, s in sessions.items()}
    n_rounds, inner = plan(spec, sum(per_call.values()))
    rounds: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(n_rounds):
        for name, s in sessions.items():
            times = []
            for _ in range(inner):
                start = time.perf_counter_ns()
                s.run(None, feeds[name])
                times.append((time.perf_counter_ns() - start) / 1e6)
            rounds[name].append(float(np.median(times)))
    first = next(iter(rounds.values()))
    return {
        "median_ms": {k: float(np.median(v)) for k, v in rounds.items()},
        "ratio_to_first": {k: float(np.median(np.asarray(first) / np.asarray(v))) for k, v in rounds.items()},
        "rounds": rounds,
        "method": (f"child process, one shared {spec['threads']}-thread ONNX Runtime pool, {n_rounds} interleaved rounds "
                   f"x {inner} calls after up to {spec['warmup']} warm-up calls; median of round medians, median of per-round ratios"
                   + (f"; bounded to about {spec['seconds']:g} s" if spec.get("seconds") else "")),
        "rounds_run": n_rounds,
        "calls_per_round": inner,
    }


def warm_up(call, spec: dict) -> float:
    """`call()` spec["warmup"] times (cut short after a share of spec["seconds"]); returns seconds
    per call. Shared with export/cpu_runtime.py's runtime timing."""
    limit = WARMUP_SHARE * spec["seconds"] / len(spec["graphs"]) if spec.get("seconds") else float("inf")
    calls, start = 0, time.perf_counter()
    while calls < max(spec["warmup"], 1):  # one call at least: it tells the cost of a call
        call()
        calls += 1
        if time.perf_counter() - start >= limit:
            break
    return (time.perf_counter() - start) / calls


def plan(spec: dict, round_call_s: float) -> tuple[int, int]:
    """(rounds, calls per round) within spec["seconds"]; `round_call_s`: one call of every graph."""
    rounds, inner = spec["rounds"], spec["inner"]
    if not spec.get("seconds") or round_call_s <= 0:
        return rounds, inner
    inner = max(1, min(inner, int(spec["seconds"] / (rounds * round_call_s))))
    if inner == 1:
        rounds = max(min(MIN_ROUNDS, rounds), min(rounds, int(spec["seconds"] / round_call_s)))
    return rounds, inner


def main(argv=None) -> int:
    return child_main(_run, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Latency of a runner: warm-up, then timed iterations, then order statistics.

CPU timing uses perf_counter_ns around a synchronous call; GPU runners synchronise
before the clock stops (their `synchronize`). Tests check this code against runners
that sleep a known time; timings themselves are never asserted in tests.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from gencompress.progress import bar

from gencompress.export.runners import Runner


@dataclass
class LatencyStats:
    batch: int
    iters: int
    warmup: int
    min_ms: float
    median_ms: float
    mean_ms: float
    p90_ms: float
    p99_ms: float
    std_ms: float
    throughput_ips: float  # images per second at the median latency

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples_ms, batch: int, warmup: int) -> LatencyStats:
    t = np.asarray(samples_ms, dtype=np.float64)
    median = float(np.median(t))
    return LatencyStats(
        batch=batch,
        iters=len(t),
        warmup=warmup,
        min_ms=float(t.min()),
        median_ms=median,
        mean_ms=float(t.mean()),
        p90_ms=float(np.percentile(t, 90)),
        p99_ms=float(np.percentile(t, 99)),
        std_ms=float(t.std()),
        throughput_ips=batch * 1000.0 / median if median > 0 else float("inf"),
    )


def measure(runner: Runner, batch_input: np.ndarray, iters: int = 50, warmup: int = 10, label: str = "") -> LatencyStats:
    for _ in range(warmup):
        runner.infer(batch_input)
    runner.synchronize()
    samples = []
    for _ in bar(range(iters), f"time {label}", bool(label), leave=False):
        start = time.perf_counter_ns()
        runner.infer(batch_input)
        runner.synchronize()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return summarize(samples, len(batch_input), warmup)

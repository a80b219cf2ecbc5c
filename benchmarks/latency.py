"""Latency of a runner: warm-up, then timed iterations, then order statistics.

One timing is bounded by count AND time, after trtexec (`--iterations` and `--duration`
are both minimums), with a cap on both: the timed loop runs at least `iters` calls and at
least `min_seconds`, but stops once it has run `seconds` (after MIN_CALLS calls, so a median
exists) or `max_iters` calls. A 1 ms model gets its `iters` calls; a 4 s call at batch 8
gets a few calls in `seconds` instead of 30 calls in two minutes. Warm-up is bounded the
same way (WARMUP_SHARE of `seconds`). `build`, `bench` and `sweep` all time through here
(`--bench-seconds`); each row records how many calls it got and what stopped it.

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


MIN_CALLS = 3  # a median needs a few samples even when one call outlasts the time cap
WARMUP_SHARE = 0.25  # warm-up stops after this share of the time cap
DEFAULT_SECONDS = 10.0  # the time cap per timing when a caller gives none
UNSTABLE_FACTOR = 1.5  # a row whose median is this many times its minimum (or p99 its median) is flagged: a loaded machine


@dataclass(frozen=True)
class Budget:
    """How long one timing runs: at least `iters` calls and `min_seconds`, at most `seconds` and `max_iters`."""

    iters: int = 50
    seconds: float = DEFAULT_SECONDS
    warmup: int = 10
    min_seconds: float = 0.0
    max_iters: int = 100_000

    def validate(self) -> None:
        from gencompress.errors import GencompressError

        if self.iters < 1 or self.warmup < 0 or self.max_iters < 1:
            raise GencompressError("--iters must be at least 1 and --warmup at least 0")
        if not self.seconds > 0 or self.min_seconds < 0:
            raise GencompressError(f"--bench-seconds must be positive (got {self.seconds})")

    def done(self, calls: int, elapsed: float) -> bool:
        if calls >= self.max_iters:
            return True
        if elapsed >= self.seconds and calls >= min(MIN_CALLS, self.iters):
            return True  # the cap
        return calls >= self.iters and elapsed >= min(self.min_seconds, self.seconds)


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
    seconds: float = 0.0  # wall time of the timed calls
    stopped_by: str = "count"  # "count": all `iters` calls ran; "time": the --bench-seconds cap stopped it
    unstable: str | None = None  # why the calls disagree ("median 3.2x min"), None when they agree (instability())

    def as_dict(self) -> dict:
        return asdict(self)


def instability(min_ms: float, median_ms: float, p99_ms: float, factor: float = UNSTABLE_FACTOR) -> str | None:
    """Why a row's calls disagree by more than `factor` ("median 70.0x min", "p99 2.1x median"), or None.
    One model's calls on an idle machine agree within a few percent; a spread this wide means
    something else took the cores (load), so its median is not the model's speed."""
    spread = [f"median {median_ms / min_ms:.1f}x min"] if min_ms > 0 and median_ms > factor * min_ms else []
    spread += [f"p99 {p99_ms / median_ms:.1f}x median"] if median_ms > 0 and p99_ms > factor * median_ms else []
    return ", ".join(spread) or None


def unstable_note(row: dict) -> str:
    """A table's note for a latency row: 'unstable (load?): median 70.0x min', or '' for a steady one."""
    return f"unstable (load?): {row['unstable']}" if row.get("unstable") else ""


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
        unstable=instability(float(t.min()), median, float(np.percentile(t, 99))),
        throughput_ips=batch * 1000.0 / median if median > 0 else float("inf"),
    )


def _warm_up(runner: Runner, batch_input: np.ndarray, budget: Budget) -> tuple[int, float]:
    """Up to `budget.warmup` calls, cut short after WARMUP_SHARE of the cap; returns (calls, seconds per call)."""
    calls, start = 0, time.perf_counter()
    while calls < budget.warmup:
        runner.infer(batch_input)
        runner.synchronize()
        calls += 1
        if time.perf_counter() - start >= WARMUP_SHARE * budget.seconds:
            break
    return calls, (time.perf_counter() - start) / calls if calls else 0.0


def measure(runner: Runner, batch_input: np.ndarray, iters: int = 50, warmup: int = 10, label: str = "",
            seconds: float | None = None, budget: Budget | None = None) -> LatencyStats:
    """Time `runner` on `batch_input` within `budget` (or iters/warmup/seconds; module docstring)."""
    budget = budget or Budget(iters=iters, warmup=warmup, seconds=DEFAULT_SECONDS if seconds is None else seconds)
    budget.validate()
    warm_calls, per_call = _warm_up(runner, batch_input, budget)
    # the bar's length: the calls the cap will allow, as far as the warm-up can tell
    planned = budget.iters if per_call <= 0 else max(min(budget.iters, int(budget.seconds / per_call) + 1), min(MIN_CALLS, budget.iters))
    samples: list[float] = []
    started = time.perf_counter()
    with bar(None, f"time {label}", bool(label), total=planned, leave=False) as progress:
        while not budget.done(len(samples), time.perf_counter() - started):
            start = time.perf_counter_ns()
            runner.infer(batch_input)
            runner.synchronize()
            samples.append((time.perf_counter_ns() - start) / 1e6)
            progress.update()
    stats = summarize(samples, len(batch_input), warm_calls)
    stats.seconds = time.perf_counter() - started
    stats.stopped_by = "count" if len(samples) >= budget.iters else "time"
    return stats

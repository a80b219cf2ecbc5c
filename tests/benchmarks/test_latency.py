"""Timing code against runners of known duration; statistics against hand-computed values."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from gencompress.benchmarks.latency import measure, summarize
from gencompress.export.runners import Runner


class SleepRunner(Runner):
    """Takes `seconds` per call (time.sleep never returns early), and counts its calls."""

    def __init__(self, seconds: float):
        self.seconds, self.calls, self.syncs = seconds, 0, 0

    def infer(self, batch):
        self.calls += 1
        time.sleep(self.seconds)
        return batch

    def synchronize(self):
        self.syncs += 1


class AsyncRunner(Runner):
    """Returns at once and finishes its work on another thread, like a GPU queue:
    only synchronize() makes the timing see the work."""

    def __init__(self, seconds: float):
        self.seconds, self.pending = seconds, None

    def infer(self, batch):
        self.pending = threading.Thread(target=time.sleep, args=(self.seconds,))
        self.pending.start()
        return batch

    def synchronize(self):
        if self.pending is not None:
            self.pending.join()


X = np.zeros((4, 3), np.float32)


def test_measure_sees_a_known_sleep_within_tolerance():
    stats = measure(SleepRunner(0.02), X, iters=8, warmup=2)
    # sleep(0.02) never takes less than 20 ms; on a loaded 2-core machine it may overshoot,
    # so the upper tolerance is generous but still far below a 2x error
    assert 19.9 <= stats.min_ms <= stats.median_ms < 36.0
    assert stats.iters == 8 and stats.warmup == 2 and stats.batch == 4


def test_measure_runs_warmup_plus_iters_and_synchronizes_each_time():
    runner = SleepRunner(0.0)
    measure(runner, X, iters=7, warmup=3)
    assert runner.calls == 10
    assert runner.syncs >= 7  # once per timed iteration (+ once after the warm-up)


def test_measure_waits_for_asynchronous_work():
    stats = measure(AsyncRunner(0.015), X, iters=5, warmup=1)
    assert stats.min_ms >= 14.9


def test_summarize_matches_hand_computed_statistics():
    s = summarize([1.0, 2.0, 3.0, 4.0, 10.0], batch=8, warmup=0)
    assert s.min_ms == 1.0 and s.median_ms == 3.0 and s.mean_ms == 4.0
    # numpy's default (linear) percentile: p90 at position 0.9 x 4 = 3.6 -> 4 + 0.6 x (10 - 4)
    assert s.p90_ms == pytest.approx(7.6)
    assert s.p99_ms == pytest.approx(4 + 0.96 * 6)
    # population standard deviation: squared deviations 9, 4, 1, 0, 36 -> variance 10
    assert s.std_ms == pytest.approx(10**0.5)
    assert s.throughput_ips == pytest.approx(8 * 1000 / 3.0)


def test_summarize_of_one_sample_has_zero_spread():
    s = summarize([2.5], batch=1, warmup=0)
    assert (s.min_ms, s.median_ms, s.p99_ms, s.std_ms) == (2.5, 2.5, 2.5, 0.0)

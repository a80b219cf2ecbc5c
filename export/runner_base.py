"""The runner protocol every inference backend implements (Polygraphy's shape): a *loader*
builds what a backend runs, a *runner* infers NumPy batches and reports its own time.

This module sits below every backend (torch_runner, ort_runner, openvino, tensorrt/runner)
and below the registry (runners.py), so none of them imports another to get the protocol.
See runners.py for the contract in full.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np


def _timed(infer):
    """Wrap a runner's `infer` so the runner knows how long its last call took."""

    @functools.wraps(infer)
    def timed(self, batch):
        self._device_seconds = None
        start = time.perf_counter()
        out = infer(self, batch)
        wall = time.perf_counter() - start
        # a runner that timed the execution on the device (no host copies) reports that
        self._last_inference_seconds = self._device_seconds if self._device_seconds is not None else wall
        return out

    timed._gencompress_timed = True
    return timed


class Loader:
    """How to build what a runner runs; calling it builds it (a Polygraphy loader).

    Subclasses keep their options as attributes, check the cheap ones when made (a bad option
    fails before any work), and build in `__call__`. `conditions()` names the options a timing
    depends on, so a runner made from a loader can report them.
    """

    def __call__(self):  # pragma: no cover - interface
        raise NotImplementedError

    def conditions(self) -> dict:
        return {}


class Runner:
    name = "runner"
    device = "cpu"
    loader: Loader | None = None
    _last_inference_seconds: float | None = None
    _device_seconds: float | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("infer")
        if own is not None and not getattr(own, "_gencompress_timed", False):
            cls.infer = _timed(own)  # every backend reports its own time, the same way

    def _load(self, load, name: str | None):
        """The object this runner runs: `load()` if `load` is a Loader (called here, once), else
        `load` itself, already built. Only Loader instances are called: an nn.Module is callable
        too, and calling it would run it."""
        if isinstance(load, (str, Path, bytes)):  # the constructors before loaders took these
            raise TypeError(f"{type(self).__name__} takes a loader or what it builds, not {type(load).__name__}: "
                            "wrap it in its loader, e.g. OrtRunner(SessionFromOnnx(path)), TrtRunner(EngineFromBytes(data))")
        if name is not None:
            self.name = name
        if isinstance(load, Loader):
            self.loader = load
            return load()
        return load

    def infer(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def last_inference_time(self) -> float | None:
        """Seconds the last `infer` took (device time where the runner measures it); None before the first."""
        return self._last_inference_seconds

    def synchronize(self) -> None:
        """Wait for queued work (no-op for synchronous CPU backends)."""

    def close(self) -> None:
        """Release sessions and device memory."""


def run_batches(runner: Runner, inputs: np.ndarray, batch: int = 32, label: str = "") -> np.ndarray:
    """Run `inputs` through `runner` in batches (memory stays flat as N grows); a bar with an ETA when labelled."""
    from gencompress.progress import bar

    starts = range(0, len(inputs), batch)
    outs = [runner.infer(inputs[i : i + batch]) for i in bar(starts, label, bool(label), leave=False)]
    return np.concatenate(outs, axis=0)


def run_and_close(runner: Runner, inputs: np.ndarray, batch: int = 32, label: str = "") -> np.ndarray:
    """run_batches, then close the runner however that ends: a scoring or reference pass frees its
    session's memory at once, not at the next garbage collection."""
    try:
        return run_batches(runner, inputs, batch, label)
    finally:
        runner.close()

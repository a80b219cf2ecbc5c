"""Inference backends behind one small interface (after Polygraphy's runners).

A runner is built from an artifact, takes a NumPy batch and returns a NumPy batch, and
reports its own inference time (`last_inference_time()`, seconds, as Polygraphy's runners
do): host wall time around the call for CPU backends, device time around the execution
itself where the runner can measure it (TensorRT: CUDA events, host copies excluded).
`synchronize()` lets timing code wait for asynchronous devices. Backends register in
BACKENDS, one name each; heavy imports happen only when a runner is made.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from gencompress.errors import GencompressError, first_line


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


class Runner:
    name = "runner"
    device = "cpu"
    _last_inference_seconds: float | None = None
    _device_seconds: float | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("infer")
        if own is not None and not getattr(own, "_gencompress_timed", False):
            cls.infer = _timed(own)  # every backend reports its own time, the same way

    def infer(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def last_inference_time(self) -> float | None:
        """Seconds the last `infer` took (device time where the runner measures it); None before the first."""
        return self._last_inference_seconds

    def synchronize(self) -> None:
        """Wait for queued work (no-op for synchronous CPU backends)."""

    def close(self) -> None:
        """Release sessions and device memory."""


class TorchRunner(Runner):
    """PyTorch eager on the CPU (or CUDA when asked), under no_grad."""

    name = "torch"

    def __init__(self, model: nn.Module, device: str = "cpu", threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.device = device
        self.model = model.eval().to(device)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.model(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        return out.float().cpu().numpy()

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()


class OrtRunner(Runner):
    """ONNX Runtime on the CPU: the reference for every INT8 number measured here."""

    name = "ort"

    def __init__(self, onnx_path: str | Path, threads: int = 2, optimization: str = "all"):
        import onnxruntime as ort

        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        if optimization not in levels:
            raise GencompressError(f"unknown ONNX Runtime optimisation level {optimization!r}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = levels[optimization]
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = first_line(exc)
            raise GencompressError(f"ONNX Runtime cannot load {onnx_path}: {first[:300]}") from None
        self.threads = threads
        self.optimization = optimization
        self.input_name = self.session.get_inputs()[0].name

    def conditions(self) -> dict:
        """What a timing taken with this runner depends on (goes next to every number)."""
        import onnxruntime as ort

        return {"backend": "onnxruntime", "version": ort.__version__, "provider": "CPUExecutionProvider",
                "intra_op_threads": self.threads, "graph_optimization": self.optimization}

    def infer(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument types
            first = first_line(exc)
            raise GencompressError(f"ONNX Runtime failed to run the model: {first[:300]}") from None

    def close(self) -> None:
        self.session = None


def _tensorrt_runner(bundle, cuda_graph: bool = False) -> Runner:
    """TrtRunner on a bundle's engine.plan, imported only when asked for: a missing TensorRT
    says what to install and breaks nothing else."""
    from .tensorrt import import_tensorrt

    import_tensorrt()  # raises MissingDependencyError with what to install
    from .tensorrt.runner import TrtRunner

    return TrtRunner.from_bundle(bundle, cuda_graph=cuda_graph)


def _openvino_runner(*args, **kwargs) -> Runner:
    """OpenVinoRunner, imported only when asked for: a missing OpenVINO says what to install."""
    from .openvino import OpenVinoRunner

    return OpenVinoRunner(*args, **kwargs)


# One name per backend: `trt` is TensorRT everywhere (bench --backend trt, the registry, reports).
BACKENDS: dict[str, Callable[..., Runner]] = {"torch": TorchRunner, "ort": OrtRunner, "trt": _tensorrt_runner,
                                              "openvino": _openvino_runner}


def register_backend(name: str, factory: Callable[..., Runner]) -> None:
    if name in BACKENDS:
        raise ValueError(f"backend {name!r} is already registered")
    BACKENDS[name] = factory


def run_batches(runner: Runner, inputs: np.ndarray, batch: int = 32, label: str = "") -> np.ndarray:
    """Run `inputs` through `runner` in batches (memory stays flat as N grows); a bar with an ETA when labelled."""
    from gencompress.progress import bar

    starts = range(0, len(inputs), batch)
    outs = [runner.infer(inputs[i : i + batch]) for i in bar(starts, label, bool(label), leave=False)]
    return np.concatenate(outs, axis=0)

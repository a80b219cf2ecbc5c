"""Inference backends behind one small interface (after Polygraphy's runners).

A runner is built from an artifact, takes a NumPy batch and returns a NumPy batch.
`synchronize()` lets timing code wait for asynchronous devices. Backends register
in BACKENDS; heavy imports happen only when a runner is made.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from gencompress.errors import GencompressError, first_line


class Runner:
    name = "runner"
    device = "cpu"

    def infer(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

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


def _tensorrt_runner(*args, **kwargs) -> Runner:
    """TrtRunner, imported only when asked for: a missing TensorRT breaks nothing else."""
    from .tensorrt.runner import TrtRunner

    return TrtRunner(*args, **kwargs)


def _openvino_runner(*args, **kwargs) -> Runner:
    """OpenVinoRunner, imported only when asked for: a missing OpenVINO says what to install."""
    from .openvino import OpenVinoRunner

    return OpenVinoRunner(*args, **kwargs)


BACKENDS: dict[str, Callable[..., Runner]] = {"torch": TorchRunner, "ort": OrtRunner, "tensorrt": _tensorrt_runner,
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

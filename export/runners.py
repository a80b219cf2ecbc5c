"""Inference backends behind one small interface: loaders and runners (Polygraphy's shape).

A *loader* is a small callable object that holds how to build what a backend runs (a path,
threads, graph optimisation, precision, device) and builds it when called: SessionFromOnnx
builds an ONNX Runtime session, ModuleOnDevice places a PyTorch module, OpenVINO's and
TensorRT's loaders live beside their runners. A *runner* takes, as its one positional
argument, a loader or the object that loader builds, plus an optional `name`; it calls a
loader once. Options about how to build live in the loader; options about how to run (a
CUDA graph, torch.compile's backend) stay runner keywords. So every runner has the same
constructor shape: `XRunner(load, name=None, **how_to_run)`.

A runner takes a NumPy batch and returns a NumPy batch, and reports its own inference time
(`last_inference_time()`, seconds, as Polygraphy's runners do): host wall time around the
call for CPU backends, device time around the execution itself where the runner can measure
it (TensorRT: CUDA events, host copies excluded). `synchronize()` lets timing code wait for
asynchronous devices. Backends register in BACKENDS, one name each, as factories that build
loader + runner from an artifact and options; heavy imports happen only when one is made.

This module is the registry and the one place users import runners from. The protocol lives
below it (runner_base.py), each backend in its own module (torch_runner, ort_runner, openvino,
tensorrt/runner) that imports only the protocol: imports point one way, none back here.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .ort_runner import ORT_OPTIMIZATIONS, OrtRunner, SessionFromOnnx
from .runner_base import Loader, Runner, run_and_close, run_batches
from .torch_runner import ModuleOnDevice, TorchRunner

if TYPE_CHECKING:
    from torch import nn

__all__ = ["BACKENDS", "ORT_OPTIMIZATIONS", "Loader", "ModuleOnDevice", "OrtRunner", "Runner", "SessionFromOnnx", "TorchRunner",
           "register_backend", "run_and_close", "run_batches"]


# The registry's factories: each takes the artifact its backend runs (a module, a graph's
# path, a bundle) and the backend's options, and builds loader + runner.
def _torch_runner(model: nn.Module, device: str = "cpu", threads: int | None = None, name: str | None = None) -> Runner:
    return TorchRunner(ModuleOnDevice(model, device, threads), name)


def _ort_runner(path: str | Path, threads: int = 2, optimization: str = "all", name: str | None = None) -> Runner:
    return OrtRunner(SessionFromOnnx(path, threads, optimization), name)


def _tensorrt_runner(bundle, cuda_graph: bool = False, name: str | None = None) -> Runner:
    """TrtRunner on a bundle's engine.plan, imported only when asked for: a missing TensorRT
    says what to install and breaks nothing else."""
    from .tensorrt import import_tensorrt

    import_tensorrt()  # raises MissingDependencyError with what to install
    from .tensorrt.runner import EngineFromBundle, TrtRunner

    return TrtRunner(EngineFromBundle(bundle), name, cuda_graph=cuda_graph)


def _openvino_runner(path: str | Path, threads: int = 2, precision: str = "f32", name: str | None = None) -> Runner:
    """OpenVinoRunner, imported only when asked for: a missing OpenVINO says what to install."""
    from .openvino import OpenVinoModelFromFile, OpenVinoRunner

    return OpenVinoRunner(OpenVinoModelFromFile(path, threads, precision), name)


# One name per backend: `trt` is TensorRT everywhere (bench --backend trt, the registry, reports).
BACKENDS: dict[str, Callable[..., Runner]] = {"torch": _torch_runner, "ort": _ort_runner, "trt": _tensorrt_runner,
                                              "openvino": _openvino_runner}


def register_backend(name: str, factory: Callable[..., Runner]) -> None:
    if name in BACKENDS:
        raise ValueError(f"backend {name!r} is already registered")
    BACKENDS[name] = factory

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
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # PyTorch is imported where a torch runner is made: the CPU timing child never pays for it
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


def _module_device(model: nn.Module) -> str:
    """Where an already-built module's weights are (the CPU for a module without any)."""
    first = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()), None)
    return str(first.device) if first is not None else "cpu"


class ModuleOnDevice(Loader):
    """A PyTorch module in eval mode on `device`, with torch's intra-op threads set to `threads`
    (None: leave them as they are). Moves `model` itself, as nn.Module.to does."""

    def __init__(self, model: nn.Module, device: str = "cpu", threads: int | None = None):
        self.model, self.device, self.threads = model, str(device), threads

    def __call__(self) -> nn.Module:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        return self.model.eval().to(self.device)

    def conditions(self) -> dict:
        import torch

        return {"device": self.device, "threads": self.threads or torch.get_num_threads()}


class TorchRunner(Runner):
    """PyTorch eager under no_grad, on the device the module is on (ModuleOnDevice puts it there)."""

    name = "torch"

    def __init__(self, load: ModuleOnDevice | nn.Module, name: str | None = None):
        self.model = self._load(load, name).eval()
        self.device = _module_device(self.model)

    def conditions(self) -> dict:
        """What a timing taken with this runner depends on."""
        import torch

        built = self.loader.conditions() if self.loader is not None else {"threads": torch.get_num_threads()}
        return {"backend": "torch", "version": torch.__version__, **built, "device": self.device}

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.model(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        return out.float().cpu().numpy()

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()


ORT_OPTIMIZATIONS = ("disable", "basic", "extended", "all")


class SessionFromOnnx(Loader):
    """An ONNX Runtime CPU session on `path`: `threads` intra-op threads, one inter-op thread,
    graph optimisation `optimization` (one of ORT_OPTIMIZATIONS). A file ONNX Runtime cannot
    load is a one-line GencompressError."""

    def __init__(self, path: str | Path, threads: int = 2, optimization: str = "all"):
        if optimization not in ORT_OPTIMIZATIONS:
            raise GencompressError(f"unknown ONNX Runtime optimisation level {optimization!r}; known: {', '.join(ORT_OPTIMIZATIONS)}")
        self.path, self.threads, self.optimization = path, threads, optimization

    def __call__(self):
        import onnxruntime as ort

        levels = dict(zip(ORT_OPTIMIZATIONS, (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                              ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = levels[self.optimization]
        opts.log_severity_level = 3
        try:
            return ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = first_line(exc)
            raise GencompressError(f"ONNX Runtime cannot load {self.path}: {first[:300]}") from None

    def conditions(self) -> dict:
        return {"intra_op_threads": self.threads, "graph_optimization": self.optimization}


def _session_conditions(session) -> dict:
    """What a session built elsewhere was built with, read back from its own options."""
    import onnxruntime as ort

    opts = session.get_session_options()
    levels = {ort.GraphOptimizationLevel.ORT_DISABLE_ALL: "disable", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC: "basic",
              ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED: "extended", ort.GraphOptimizationLevel.ORT_ENABLE_ALL: "all"}
    # 0 threads: ONNX Runtime's own choice (one per physical core)
    return {"intra_op_threads": opts.intra_op_num_threads, "graph_optimization": levels.get(opts.graph_optimization_level, "all")}


class OrtRunner(Runner):
    """ONNX Runtime on the CPU: the reference for every INT8 number measured here."""

    name = "ort"

    def __init__(self, load: SessionFromOnnx | object, name: str | None = None):
        self.session = self._load(load, name)
        self.input_name = self.session.get_inputs()[0].name

    def conditions(self) -> dict:
        """What a timing taken with this runner depends on (goes next to every number)."""
        import onnxruntime as ort

        built = self.loader.conditions() if self.loader is not None else _session_conditions(self.session)
        return {"backend": "onnxruntime", "version": ort.__version__, "provider": "CPUExecutionProvider", **built}

    def infer(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument types
            first = first_line(exc)
            raise GencompressError(f"ONNX Runtime failed to run the model: {first[:300]}") from None

    def close(self) -> None:
        self.session = None


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


def run_batches(runner: Runner, inputs: np.ndarray, batch: int = 32, label: str = "") -> np.ndarray:
    """Run `inputs` through `runner` in batches (memory stays flat as N grows); a bar with an ETA when labelled."""
    from gencompress.progress import bar

    starts = range(0, len(inputs), batch)
    outs = [runner.infer(inputs[i : i + batch]) for i in bar(starts, label, bool(label), leave=False)]
    return np.concatenate(outs, axis=0)

"""Run a TensorRT engine: loaders that deserialise it, and a runner that calls
execute_async_v3 on tensor addresses from torch.cuda tensors.

EngineFromBytes deserialises a plan; EngineFromBundle first checks that a bundle's
engine.plan was built here (TensorRT version, GPU) and whole (size, sha256). Written
against the TensorRT 10 API; TensorRT is imported only when a loader is called.

No pycuda: device memory and streams come from PyTorch's CUDA caching allocator.
With `cuda_graph=True` the first call per input shape captures the enqueue into a CUDA
graph and later calls replay it (less CPU launch overhead: it matters on Jetsons).
"""
from __future__ import annotations

import numpy as np

from gencompress.bundle import ENGINE, Bundle
from gencompress.errors import GencompressError

from ..runner_base import Loader, Runner
from . import import_tensorrt
from .compat import check_engine_file, check_engine_record


def _torch_dtype(trt, trt_dtype):
    import torch

    return torch.from_numpy(np.empty(0, dtype=np.dtype(trt.nptype(trt_dtype)))).dtype


def _need_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise GencompressError("TensorRT needs an NVIDIA GPU, and torch.cuda sees none here")


class EngineFromBytes(Loader):
    """A TensorRT engine (ICudaEngine) deserialised from a plan's bytes. A truncated plan, or
    one another TensorRT version built, is a one-line GencompressError."""

    def __init__(self, data: bytes):
        self.data = data

    def __call__(self):
        trt = import_tensorrt()
        _need_cuda()
        # The runtime stays with the loader (which the runner keeps): an engine must not outlive its runtime.
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = self.runtime.deserialize_cuda_engine(self.data)
        if engine is None:
            raise GencompressError(f"TensorRT {trt.__version__} cannot load this engine (truncated, or built by another TensorRT version)")
        return engine

    def conditions(self) -> dict:
        return {"engine_bytes": len(self.data)}


class EngineFromBundle(Loader):
    """A bundle's engine.plan, deserialised after checking it was built here (same TensorRT,
    same GPU: the manifest's record) and is whole (its size and sha256)."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle

    def record(self) -> dict:
        metrics = self.bundle.manifest.get("metrics", {})
        # `export --format engine` records it at metrics.engine; `build` under metrics.build.engine
        return metrics.get("engine") or metrics.get("build", {}).get("engine", {})

    def __call__(self):
        trt = import_tensorrt()  # first: a missing TensorRT says what to install
        from .builder import gpu_identity

        record = self.record()
        check_engine_record(record, trt.__version__, gpu_identity()["gpu"])
        self.plan = EngineFromBytes(check_engine_file(self.bundle.file(ENGINE), record))  # kept: it holds the runtime
        return self.plan()

    def conditions(self) -> dict:
        record = self.record()
        return {key: record[key] for key in ("tensorrt_version", "gpu", "precision") if key in record}


class TrtRunner(Runner):
    """A TensorRT engine on the GPU. `cuda_graph=True`: capture the enqueue per input shape
    and replay it (how to run, so a runner keyword; how to build is the loader's)."""

    name = "trt"
    device = "cuda"

    def __init__(self, load: EngineFromBytes | EngineFromBundle | object, name: str | None = None, *, cuda_graph: bool = False):
        self.engine = self._load(load, name)
        self.trt = trt = import_tensorrt()
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise GencompressError(f"engine has inputs {self.inputs} and outputs {self.outputs}; a generator has one of each")
        self.cuda_graph = cuda_graph
        self._graph = None
        self._graph_shape: tuple[int, ...] | None = None

    def conditions(self) -> dict:
        """What a timing taken with this runner depends on."""
        built = self.loader.conditions() if self.loader is not None else {}
        return {"backend": "tensorrt", "version": self.trt.__version__, "cuda_graph": self.cuda_graph, **built}

    def _bind(self, x):
        """Set the input shape and the I/O addresses; return the output tensor."""
        import torch

        self.context.set_input_shape(self.inputs[0], tuple(x.shape))
        self.context.set_tensor_address(self.inputs[0], x.data_ptr())
        name = self.outputs[0]
        out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=_torch_dtype(self.trt, self.engine.get_tensor_dtype(name)), device="cuda")
        self.context.set_tensor_address(name, out.data_ptr())
        return out

    def _enqueue(self, stream) -> None:
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise GencompressError("TensorRT execute_async_v3 failed (see the TensorRT log)")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).cuda()
        # CUDA events around the execution only: the reported time excludes the host copies,
        # as trtexec --noDataTransfers (run_bench.sh) does.
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        if self.cuda_graph:
            out = self._replay(x, start, end)
        else:
            out = self._bind(x)
            stream = torch.cuda.current_stream()
            start.record(stream)
            self._enqueue(stream)
            end.record(stream)
        result = out.float().cpu().numpy()  # .cpu() waits on the same stream
        self._device_seconds = start.elapsed_time(end) / 1e3
        return result

    def _replay(self, x, start, end):
        import torch

        if self._graph_shape != tuple(x.shape):
            self._static_in = x.clone()
            self._static_out = self._bind(self._static_in)
            self._enqueue(torch.cuda.current_stream())  # one plain run first: TensorRT allocates lazily
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._enqueue(torch.cuda.current_stream())
            self._graph, self._graph_shape = graph, tuple(x.shape)
        self._static_in.copy_(x)
        start.record(torch.cuda.current_stream())
        self._graph.replay()
        end.record(torch.cuda.current_stream())
        return self._static_out

    def synchronize(self) -> None:
        import torch

        torch.cuda.synchronize()

    def close(self) -> None:
        self._graph = None
        self.context = None
        self.engine = None

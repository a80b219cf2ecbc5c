"""The best PyTorch configurations, as runners beside export's eager and ORT ones.

An INT8 speed-up quoted against eager PyTorch flatters the toolkit (on this CPU eager
was 3-8x slower than ONNX Runtime FP32), so benchmarks also time PyTorch at its best:
channels_last memory format, torch.compile, and CUDA graphs on a GPU. TensorRT's runner
is written by the export stage; here it is only looked up lazily.

Registered into gencompress.export.runners.BACKENDS under the names the CLI takes.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gencompress.errors import GencompressError
from gencompress.export.runners import BACKENDS, ModuleOnDevice, TorchRunner

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class PreparedModule(ModuleOnDevice):
    """ModuleOnDevice that also casts the weights to `precision` (a TORCH_DTYPES key) and, with
    `channels_last`, stores 4-D weights channels-last. Moves and casts `model` itself."""

    def __init__(self, model: nn.Module, device: str = "cpu", threads: int | None = None,
                 precision: str = "fp32", channels_last: bool = False):
        if precision not in TORCH_DTYPES:
            raise GencompressError(f"PyTorch precision {precision!r} is not one of {', '.join(TORCH_DTYPES)}")
        super().__init__(model, device, threads)
        self.precision, self.channels_last = precision, channels_last

    def __call__(self) -> nn.Module:
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise GencompressError("--device cuda asked for, but PyTorch sees no CUDA GPU here")
        model = super().__call__().to(dtype=TORCH_DTYPES[self.precision])
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def conditions(self) -> dict:
        return {**super().conditions(), "precision": self.precision, "channels_last": self.channels_last}


def _float_dtype(model: nn.Module) -> torch.dtype:
    """The dtype an already-built module computes in (its first floating parameter's)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _channels_last(model: nn.Module) -> bool:
    """Whether an already-built module's 4-D weights are stored channels-last (a 1x1 kernel is both forms)."""
    return any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters())


class TorchBestRunner(TorchRunner):
    """PyTorch eager in the module's dtype and memory format (PreparedModule sets both)."""

    name = "torch"

    def __init__(self, load: PreparedModule | nn.Module, name: str | None = None):
        super().__init__(load, name)
        self.dtype = _float_dtype(self.model)
        # inputs follow the weights' format: channels-last inputs only pay off on channels-last weights
        self.channels_last = self.loader.channels_last if isinstance(self.loader, PreparedModule) else _channels_last(self.model)

    def conditions(self) -> dict:
        """What a timing depends on: the dtype and memory format read back from the running module."""
        precision = next(k for k, v in TORCH_DTYPES.items() if v == self.dtype) if self.dtype in TORCH_DTYPES.values() else str(self.dtype)
        return {**super().conditions(), "precision": precision, "channels_last": self.channels_last}

    def _tensor(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.dtype)
        # channels_last only means something for 4-D tensors; a 1x1 latent is unaffected
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(self._tensor(batch))
        return out.float().cpu().numpy()


class TorchCompileRunner(TorchBestRunner):
    """torch.compile (Inductor by default). The first call per batch size compiles,
    which the warm-up absorbs; `dynamic=False` so each batch gets its own kernels.
    The compiler's options are how to run the module (it compiles at run time), so runner keywords."""

    name = "torch-compile"

    def __init__(self, load: PreparedModule | nn.Module, name: str | None = None, *, compile_backend: str = "inductor",
                 mode: str | None = None):
        super().__init__(load, name)
        try:
            self.model = torch.compile(self.model, backend=compile_backend, mode=mode, dynamic=False)
        except Exception as exc:  # an unknown backend name, a missing compiler
            raise GencompressError(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None


class CudaGraphRunner(TorchBestRunner):
    """One CUDA graph per batch size, captured after a warm-up on a side stream.

    Inputs are copied into a static buffer and the graph replayed; this removes the
    per-kernel launch cost that dominates small generators at batch 1.
    """

    name = "cuda-graph"

    def __init__(self, load: PreparedModule | nn.Module, name: str | None = None):
        # checked before the loader moves any weights, and again on what a bare module is on
        if not torch.cuda.is_available() or (isinstance(load, ModuleOnDevice) and not load.device.startswith("cuda")):
            raise GencompressError("the cuda-graph backend needs a CUDA GPU (--device cuda)")
        super().__init__(load, name)
        if not self.device.startswith("cuda"):
            raise GencompressError("the cuda-graph backend needs a CUDA GPU (--device cuda)")
        self.graphs: dict[tuple, tuple] = {}

    def _capture(self, batch: np.ndarray) -> tuple:
        static_in = self._tensor(batch).clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # cuDNN picks algorithms here, not inside the capture
                self.model(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            static_out = self.model(static_in)
        return graph, static_in, static_out

    def infer(self, batch: np.ndarray) -> np.ndarray:
        key = batch.shape
        if key not in self.graphs:
            self.graphs[key] = self._capture(batch)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(self._tensor(batch))
        graph.replay()
        return static_out.float().cpu().numpy()

    def synchronize(self) -> None:
        torch.cuda.synchronize()


def _torch_compile(model: nn.Module, device: str = "cpu", threads: int | None = None, precision: str = "fp32",
                   channels_last: bool = False, compile_backend: str = "inductor", mode: str | None = None,
                   name: str | None = None) -> TorchCompileRunner:
    return TorchCompileRunner(PreparedModule(model, device, threads, precision, channels_last), name,
                              compile_backend=compile_backend, mode=mode)


def _cuda_graph(model: nn.Module, device: str = "cuda", threads: int | None = None, precision: str = "fp32",
                channels_last: bool = False, name: str | None = None) -> CudaGraphRunner:
    return CudaGraphRunner(PreparedModule(model, device, threads, precision, channels_last), name)


def register() -> None:
    """Add the extra backends; names export already registered are left as they are."""
    for name, factory in (("torch-compile", _torch_compile), ("cuda-graph", _cuda_graph)):
        BACKENDS.setdefault(name, factory)


register()

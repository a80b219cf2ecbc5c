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
from gencompress.export.runners import BACKENDS, TorchRunner

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _prepare(model: nn.Module, device: str, precision: str, channels_last: bool) -> nn.Module:
    if precision not in TORCH_DTYPES:
        raise GencompressError(f"PyTorch precision {precision!r} is not one of {', '.join(TORCH_DTYPES)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GencompressError("--device cuda asked for, but PyTorch sees no CUDA GPU here")
    model = model.eval().to(device=device, dtype=TORCH_DTYPES[precision])
    return model.to(memory_format=torch.channels_last) if channels_last else model


class TorchBestRunner(TorchRunner):
    """PyTorch eager with a chosen dtype and memory format (the `torch` backend's options)."""

    name = "torch"

    def __init__(self, model: nn.Module, device: str = "cpu", threads: int | None = None,
                 precision: str = "fp32", channels_last: bool = False):
        if threads:
            torch.set_num_threads(threads)
        self.device, self.dtype, self.channels_last = device, TORCH_DTYPES.get(precision), channels_last
        self.model = _prepare(model, device, precision, channels_last)

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
    which the warm-up absorbs; `dynamic=False` so each batch gets its own kernels."""

    name = "torch-compile"

    def __init__(self, model: nn.Module, device: str = "cpu", threads: int | None = None, precision: str = "fp32",
                 channels_last: bool = False, compile_backend: str = "inductor", mode: str | None = None):
        super().__init__(model, device, threads, precision, channels_last)
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

    def __init__(self, model: nn.Module, device: str = "cuda", threads: int | None = None,
                 precision: str = "fp32", channels_last: bool = False):
        if not str(device).startswith("cuda") or not torch.cuda.is_available():
            raise GencompressError("the cuda-graph backend needs a CUDA GPU (--device cuda)")
        super().__init__(model, device, threads, precision, channels_last)
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


def register() -> None:
    """Add the extra backends; names export already registered are left as they are."""
    for name, factory in (("torch-compile", TorchCompileRunner), ("cuda-graph", CudaGraphRunner)):
        BACKENDS.setdefault(name, factory)


register()

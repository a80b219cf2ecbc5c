"""PyTorch eager as a backend: ModuleOnDevice places a module, TorchRunner runs it.

PyTorch is imported where a runner is made: the CPU timing child imports the registry and
never pays for it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .runner_base import Loader, Runner

if TYPE_CHECKING:
    from torch import nn


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

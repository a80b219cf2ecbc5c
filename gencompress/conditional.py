"""Class-conditional generators (`--classes N`): a model whose forward is `forward(z, y)`.

Every stage (quantisation, ONNX export, runners, TensorRT's Q/DQ contract, mini-batches,
--data) assumes one input tensor. Rather than teach each of them about two, we wrap the
user's model in one module, `ClassConditional`, whose single input packs both:

    x = [z flattened, class index as a float]      shape (N, prod(z_shape) + 1)

Its forward unpacks: `z = x[:, :-1].reshape(-1, *z_shape)`, `y = round(x[:, -1])` clamped
to [0, N-1] as int64, then calls `model(z, y)`. The exported ONNX graph thus has one
input, `latent`, whose last element is the class index; the manifest's input spec records
`classes`, `z_shape` and a `packing` sentence, and the architecture record keeps the wrap
(`conditional`) so a saved bundle is rebuilt the same way.
"""
from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from .errors import GencompressError


def packing(classes: int) -> str:
    """How an input is laid out, for the manifest and the report."""
    return f"z flattened, then one element: the class index 0..{classes - 1} (as a float)"


class ClassConditional(nn.Module):
    """`model(z, y)` behind one packed input `[z flattened, class index]` (see module docstring)."""

    def __init__(self, model: nn.Module, z_shape, classes: int):
        super().__init__()
        self.model = model
        self.z_shape = tuple(int(d) for d in z_shape)
        self.classes = int(classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x[:, :-1].reshape(-1, *self.z_shape)
        y = x[:, -1].round().clamp(0, self.classes - 1).long()  # clamp before the cast: ONNX Clip on floats
        return self.model(z, y)


def check_classes(classes: int) -> int:
    if classes is None or int(classes) < 1:
        raise GencompressError(f"--classes must be a positive number of classes (got {classes})")
    return int(classes)


def packed_shape(z_shape) -> tuple[int]:
    """The wrapper's per-sample input shape for a latent of per-sample shape `z_shape`."""
    return (math.prod(int(d) for d in z_shape) + 1,)


def wrap(model: nn.Module, z_shape, classes: int) -> ClassConditional:
    return ClassConditional(model, z_shape, check_classes(classes))


def architecture_record(z_shape, classes: int) -> dict:
    """What the manifest's architecture keeps so `build_architecture` wraps the rebuilt model."""
    return {"classes": int(classes), "z_shape": [int(d) for d in z_shape]}


def input_fields(z_shape, classes: int) -> dict:
    """The input spec's fields for a packed conditional input (the shape is the packed one)."""
    return {"shape": list(packed_shape(z_shape)), "classes": int(classes), "z_shape": [int(d) for d in z_shape],
            "packing": packing(classes)}


def positional_inputs(model: nn.Module) -> int | None:
    """How many positional arguments `model.forward` requires (None: cannot tell, e.g. TorchScript)."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def check_two_inputs(model: nn.Module, spec: str) -> None:
    """With --classes the forward must accept (z, y); a one-input model is named, not left to fail later."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params) and sum(p.kind in kinds for p in params) < 2:
        raise GencompressError(f"{spec}: --classes needs a forward that takes (z, y), but it takes one input")


def check_single_input(model: nn.Module, spec: str) -> None:
    """Without --classes a model must take one input; a (z, y) forward is named, not left to fail later."""
    if (positional_inputs(model) or 1) >= 2:
        raise GencompressError(f"{spec}: forward takes (z, y): pass --classes N for a class-conditional generator")


def check_labels(y, classes: int, where: str) -> None:
    """Class indices must be whole numbers in [0, classes): the wrapper would clamp others silently."""
    y = torch.as_tensor(y, dtype=torch.float64)
    if y.numel() == 0:
        return
    bad = (y != y.round()) | (y < 0) | (y >= classes)
    if bad.any():
        first = float(y[bad][0])
        raise GencompressError(f"{where}: class index {first:g} is not an integer in [0, {classes}) "
                               f"({int(bad.sum())} of {y.numel()} labels)")


def pack(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N x z_shape, N labels) -> N x (prod(z_shape) + 1) float32, the wrapper's input."""
    return torch.cat([z.reshape(len(z), -1).float(), y.reshape(-1, 1).float()], dim=1)

"""Mini-batch size from the model's largest activation, so memory stays bounded at any image size.

A 32x32 digits generator runs 32 latents at a time in a few MiB; TAESD's decoder at 256x256
holds 64 x 256 x 256 FP32 activations, 16 MiB per sample, so a batch of 32 is 0.5 GiB per
activation tensor, several of them alive at once, and more again under fake quantisation.
Calibration, evaluation and reference/compressed inference therefore run in mini-batches
sized so that the largest activation of one batch stays under ACTIVATION_BUDGET_MB.
"""
from __future__ import annotations

import torch
from torch import nn

ACTIVATION_BUDGET_MB = 64.0
# ONNX Runtime's calibration makes every activation an output: the budget is for all of one
# batch's activations together, not for the largest.
CALIBRATION_BUDGET_MB = 256.0
MAX_BATCH = 32  # the batch calibration and evaluation used before sizes grew; enough for small models


def largest_activation_bytes(model: nn.Module, input_shape) -> int:
    """Bytes of the largest tensor any submodule outputs for one sample (one forward pass at batch 1)."""
    largest = 0

    def hook(_module, _inputs, out):
        nonlocal largest
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                largest = max(largest, t.numel() * t.element_size())

    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return largest


def batch_for(per_sample_bytes: int, budget_mb: float = ACTIVATION_BUDGET_MB, cap: int = MAX_BATCH) -> int:
    """The largest batch (1..cap) whose largest activation fits `budget_mb`."""
    if per_sample_bytes <= 0:
        return cap
    return max(1, min(cap, int(budget_mb * 2**20 // per_sample_bytes)))


def mini_batch(model: nn.Module | None, input_shape, output_shape=None, budget_mb: float = ACTIVATION_BUDGET_MB) -> int:
    """The mini-batch for `model` (measured), or, with no PyTorch model, from its output size
    (an ONNX graph's activations are taken as 16 times its image, a 48-channel full-resolution layer).
    TorchScript modules take no forward hooks, so they are sized like a graph."""
    if model is not None and not isinstance(model, torch.jit.ScriptModule):
        return batch_for(largest_activation_bytes(model, input_shape), budget_mb)
    if output_shape:
        return batch_for(16 * 4 * int(torch.tensor(output_shape).prod()), budget_mb)
    return MAX_BATCH


def forward_batched(model: nn.Module, x: torch.Tensor, batch: int = MAX_BATCH) -> torch.Tensor:
    """`model(x)` without gradients, `batch` inputs at a time, so activations stay bounded."""
    with torch.no_grad():
        return torch.cat([model(chunk) for chunk in x.split(max(1, batch))], dim=0)

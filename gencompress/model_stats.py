"""Parameters and MACs of a PyTorch model.

MACs come from torch.utils.flop_counter.FlopCounterMode, which counts ConvTranspose
by its real work (Torch-Pruning's counter overcounts it); one MAC is two FLOPs.
"""
from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape, batch: int = 1) -> int:
    """Multiply-accumulates for one forward pass at `batch` (default: per image)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(batch, *input_shape)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(x)
    return counter.get_total_flops() // 2 // batch

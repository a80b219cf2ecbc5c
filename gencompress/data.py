"""Datasets a person can use with no download.

`digits` is scikit-learn's handwritten digits (1797 images, 8x8, 17 grey levels), which
ships inside the scikit-learn wheel. We upscale to 32x32 (bilinear) and map to [-1, 1],
the range of a Tanh generator.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import GencompressError


def load_digits(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images N x 1 x size x size in [-1, 1], labels N)."""
    from sklearn.datasets import load_digits as _sk_digits

    digits = _sk_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = images.clamp(0, 1) * 2 - 1
    return images, torch.tensor(digits.target, dtype=torch.long)


def draw_inputs(shape: tuple[int, ...], n: int, distribution: str, seed: int) -> torch.Tensor:
    """Draw `n` model inputs like the model's own: latents N(0, I) or images U(-1, 1).

    A fixed seed gives the same inputs on every run, so the original and the compressed
    model are always compared on the same latents.
    """
    gen = torch.Generator().manual_seed(seed)
    if distribution == "normal":
        return torch.randn((n, *shape), generator=gen)
    if distribution == "uniform":
        return torch.rand((n, *shape), generator=gen) * 2 - 1
    raise GencompressError(f"unknown input distribution {distribution!r} (normal or uniform)")

"""User-style decoders defined outside the zoo, as a new user brings them (issue 14)."""
from __future__ import annotations

import torch
from torch import nn


class TanhClamp(nn.Module):
    """TAESD's input clamp: tanh(x / 3) * 3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def taesd_like(width: int = 8, wide: bool = True) -> nn.Module:
    """A TAESD-like latent decoder, 4x16x16 -> 3x128x128: conv + ReLU + nearest 2x upsampling.

    Random weights rescaled so that every conv's output has unit spread on N(0, I) latents
    (data-dependent init: activations like a trained network's, not the tiny ones of a fresh
    init, whose outputs would all be near 0 and quantise well). With `wide`, one channel of
    one channel of the first upsampling conv is 10x wider (and 10x weaker in the next conv, so
    the function is the same): a few large outliers in the activations between them, which
    stretch one per-tensor uint8 range for every channel.
    """
    torch.manual_seed(0)

    def up() -> list[nn.Module]:
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, 1, 1), nn.ReLU()]

    model = nn.Sequential(TanhClamp(), nn.Conv2d(4, width, 3, 1, 1), nn.ReLU(), *up(), *up(), *up(), nn.Conv2d(width, 3, 3, 1, 1)).eval()
    with torch.no_grad():
        x = torch.randn(32, 4, 16, 16, generator=torch.Generator().manual_seed(0))
        for layer in model:
            if isinstance(layer, nn.Conv2d):
                spread = layer(x).std()
                layer.weight /= spread
                layer.bias /= spread
            x = layer(x)
        if wide:
            model[4].weight[:1] *= 10
            model[4].bias[:1] *= 10
            model[7].weight[:, :1] /= 10
    return model.append(nn.Tanh()).eval()


def taesd_like_plain() -> nn.Module:
    return taesd_like(wide=False)

"""The VAE's encoder (training only) and the reparameterisation trick.

The decoder is the zoo's `vae_decoder`, the part that gets deployed; the encoder mirrors
it (strided convolutions 32 -> 16 -> 8 -> 4, then two linear heads for mu and log-variance).
"""
from __future__ import annotations

import torch
from torch import nn


class VAEEncoder(nn.Module):
    def __init__(self, nz: int = 16, ndf: int = 32, nc: int = 1):
        super().__init__()

        def down(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True)]

        self.body = nn.Sequential(*down(nc, ndf), *down(ndf, ndf * 2), *down(ndf * 2, ndf * 4), nn.Flatten())
        self.mu = nn.Linear(ndf * 4 * 16, nz)
        self.logvar = nn.Linear(ndf * 4 * 16, nz)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I) drawn by the caller: gradients flow through mu and sigma."""
    return mu + torch.exp(0.5 * logvar) * eps

"""A tiny class-conditional generator (forward(z, y)), the form of cGAN/ACGAN/BigGAN generators."""
from __future__ import annotations

import torch
from torch import nn

NZ, CLASSES = 16, 10


class TinyConditional(nn.Module):
    """z (N x 16) and y (N int64 labels) -> N x 1 x 16 x 16 in [-1, 1]; the label is embedded and
    joined to z. Upsample + Conv (not ConvTranspose), so ONNX Runtime's CPU INT8 runs it too."""

    def __init__(self, nz: int = NZ, classes: int = CLASSES, width: int = 8):
        super().__init__()
        self.width = width
        self.embed = nn.Embedding(classes, nz)
        self.fc = nn.Linear(2 * nz, width * 4 * 4)
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, 1, 3, 1, 1), nn.Tanh(),
        )

    def forward(self, z, y):
        h = self.fc(torch.cat([z.flatten(1), self.embed(y)], dim=1))
        return self.body(h.view(-1, self.width, 4, 4))


def make():
    torch.manual_seed(0)
    return TinyConditional()

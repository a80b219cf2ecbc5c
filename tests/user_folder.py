"""A user's working folder for the user-data tests: a small x2 SR net written as a module of
source (as a user's own model file is), its weights, and a folder of 12 small RGB photos."""
from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import save_file

SR_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class TinySR(nn.Module):
        # x2 super-resolution, [0, 1] in and out: a PixelShuffle residual over a nearest upsample
        # (PixelShuffle and Upsample need a batch: 4-D input)
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 12, 3, 1, 1))
            self.shuffle = nn.PixelShuffle(2)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")

        def forward(self, x):
            return torch.clamp(self.up(x) + 0.1 * self.shuffle(self.body(x)), 0, 1)

    def make():
        torch.manual_seed(0)
        return TinySR()
    """
)


def user_folder(tmp_path: Path, monkeypatch, module: str, extra_source: str = "", images: str = "photos",
                checkpoint: str | None = None) -> Path:
    """`tmp_path` as the user's folder (the working directory, importable): `module`.py holding the
    SR net and `extra_source`, `images`/ with 12 RGB 10 x 12 PNGs and, if named, `checkpoint`
    holding make()'s weights (a checkpoint: the build does not warn of random weights)."""
    (tmp_path / f"{module}.py").write_text(SR_SOURCE + textwrap.dedent(extra_source))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    if checkpoint:
        save_file(importlib.import_module(module).make().state_dict(), str(tmp_path / checkpoint))
    rng = np.random.default_rng(0)
    (tmp_path / images).mkdir()
    for i in range(12):
        Image.fromarray((rng.random((10, 12, 3)) * 255).astype(np.uint8)).save(tmp_path / images / f"{i:02d}.png")
    return tmp_path

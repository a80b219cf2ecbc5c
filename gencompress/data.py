"""Datasets a person can use with no download.

`digits` is scikit-learn's handwritten digits (1797 images, 8x8, 17 grey levels), which
ships inside the scikit-learn wheel. We upscale to 32x32 (bilinear) and map to [-1, 1],
the range of a Tanh generator.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
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


def draw_inputs(shape: tuple[int, ...], n: int, distribution: str | dict, seed: int) -> torch.Tensor:
    """Draw `n` model inputs like the model's own: latents N(0, I) or images U(-1, 1).

    `distribution` is "normal" or "uniform", or a manifest's input spec (a dict), whose
    optional `std` (normal) or `range` (uniform) say how wide (`--input-std`, `--input-range`).
    A fixed seed gives the same inputs on every run, so the original and the compressed
    model are always compared on the same latents. A spec with `classes` (a class-conditional
    model's packed input) gets a uniform class index in [0, classes) as each sample's last
    element, from the same generator, so calibration and evaluation cover every class.
    """
    spec = distribution if isinstance(distribution, dict) else {"distribution": distribution}
    gen = torch.Generator().manual_seed(seed)
    if spec["distribution"] == "normal":
        x = torch.randn((n, *shape), generator=gen) * float(spec.get("std", 1.0))
    elif spec["distribution"] == "uniform":
        low, high = spec.get("range", (-1.0, 1.0))
        x = torch.rand((n, *shape), generator=gen) * (high - low) + low
    else:
        raise GencompressError(f"unknown input distribution {spec['distribution']!r} (normal or uniform)")
    if spec.get("classes"):  # a packed class-conditional input (gencompress/conditional.py): last element a class
        x[:, -1] = torch.randint(0, int(spec["classes"]), (n,), generator=gen).float()
    return x


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
# PIL modes -> channels we keep (alpha dropped: generators here make opaque images)
_MODE_CHANNELS = {"1": 1, "L": 1, "LA": 1, "I": 1, "I;16": 1, "F": 1, "RGB": 3, "RGBA": 3, "P": 3, "CMYK": 3, "YCbCr": 3}


def image_files(path: Path) -> list[Path]:
    """The image files under a folder (recursively, sorted, so every run sees the same order)."""
    if not path.is_dir():
        raise GencompressError(f"data folder {path} does not exist or is not a folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise GencompressError(f"data folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_image(path: Path, channels: int | None = None) -> torch.Tensor:
    """One image as C x H x W in [0, 1]; `channels` 1 or 3 converts (None: the file's own, grey or RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            nc = channels or _MODE_CHANNELS.get(im.mode, 3)
            arr = np.asarray(im.convert("L" if nc == 1 else "RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise GencompressError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1)).permute(2, 0, 1)


def resize_center(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Scale (antialiased) so the image covers size (H, W), then crop the centre."""
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = images.shape[-2:]
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    if (nh, nw) != (h, w):
        images = F.interpolate(images, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return images[..., top : top + th, left : left + tw]

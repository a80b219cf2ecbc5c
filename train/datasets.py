"""Training data: `digits` (embedded), `folder:PATH` (images), `npz:PATH` (an array).

Every source becomes a float tensor N x C x 32 x 32 in [-1, 1] (the range of a Tanh
generator), plus labels when the source has them (digits), and a name for caches.
Anything a user can get wrong (empty or unreadable folder, mixed channel counts, an
array of the wrong rank) is a one-line GencompressError.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gencompress.data import image_files, load_digits, read_image, resize_center
from gencompress.errors import GencompressError

IMAGE_SIZE = 32


@dataclass
class Dataset:
    name: str  # "digits", "folder:/abs/path", "npz:/abs/path"
    images: torch.Tensor  # N x C x 32 x 32, [-1, 1]
    labels: torch.Tensor | None
    fingerprint: str  # sha256 of the image tensor: keys cached feature statistics

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])


def load_dataset(spec: str) -> Dataset:
    if spec == "digits":
        images, labels = load_digits(IMAGE_SIZE)
        return _dataset("digits", images, labels)
    kind, _, path = spec.partition(":")
    if kind == "folder" and path:
        return _dataset(f"folder:{Path(path).resolve()}", load_folder(Path(path)), None)
    if kind == "npz" and path:
        return _dataset(f"npz:{Path(path).resolve()}", load_npz(Path(path)), None)
    raise GencompressError(f"data {spec!r} is not one of: digits, folder:PATH, npz:PATH")


def _dataset(name: str, images: torch.Tensor, labels) -> Dataset:
    images = images.contiguous().float()
    if not torch.isfinite(images).all():
        raise GencompressError(f"data {name} contains NaN or infinite values")
    digest = hashlib.sha256(images.numpy().tobytes()).hexdigest()[:16]
    return Dataset(name, images, labels, digest)


def load_folder(path: Path) -> torch.Tensor:
    files = image_files(path)
    arrays, channels = [], {}
    for f in files:
        image = read_image(f)
        channels.setdefault(int(image.shape[0]), f)
        arrays.append(image)
    if len(channels) > 1:
        grey, rgb = channels[1], channels[3]
        raise GencompressError(f"data folder {path} mixes channel counts ({grey.name} is greyscale, {rgb.name} is colour); convert them to one")
    resized = torch.stack([resize_center(a.unsqueeze(0), IMAGE_SIZE)[0] for a in arrays])
    return resized * 2 - 1


def load_npz(path: Path) -> torch.Tensor:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            key = next((k for k in ("images", "x", "arr_0") if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise GencompressError(f"{path} holds arrays {keys}; name the images 'images'")
            arr = npz[key]
    except (OSError, ValueError, EOFError) as exc:
        raise GencompressError(f"cannot read npz {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if arr.ndim != 4:
        raise GencompressError(f"{path}: array {key!r} has rank {arr.ndim} (shape {tuple(arr.shape)}); expected N x C x H x W or N x H x W x C")
    if arr.shape[0] == 0:
        raise GencompressError(f"{path}: array {key!r} holds no images")
    return resize_center(_to_unit_range(_to_nchw(arr, path), path), IMAGE_SIZE) * 2 - 1


def _to_nchw(arr: np.ndarray, path: Path) -> torch.Tensor:
    if arr.shape[1] in (1, 3):
        return torch.from_numpy(np.ascontiguousarray(arr))
    if arr.shape[-1] in (1, 3):
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
    raise GencompressError(f"{path}: shape {tuple(arr.shape)} has no channel axis of 1 or 3 (NCHW or NHWC)")


def _to_unit_range(t: torch.Tensor, path: Path) -> torch.Tensor:
    """uint8 -> /255; floats in [0, 1] kept; floats in [-1, 1] mapped; else /255 if <= 255."""
    if not t.is_floating_point():
        return t.float() / 255.0
    t = t.float()
    if not torch.isfinite(t).all():
        raise GencompressError(f"{path} contains NaN or infinite values")
    lo, hi = float(t.min()), float(t.max())
    if lo >= 0 and hi <= 1:
        return t
    if lo >= -1 and hi <= 1:
        return (t + 1) / 2
    if lo >= 0 and hi <= 255:
        return t / 255.0
    raise GencompressError(f"{path}: values span [{lo:g}, {hi:g}]; expected [0, 1], [-1, 1] or [0, 255]")

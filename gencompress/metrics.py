"""Quality metrics shared by the stages: fidelity of a compressed model to its original.

PSNR's peak is the width of the model's output range: 2 for the usual [-1, 1] (the default
here), 1 for a [0, 1] net (the manifest's output range, gencompress.inputs.peak).
"""
from __future__ import annotations

import math

import numpy as np
import torch


def _as_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def psnr(reference, test, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB; +inf when the two are identical."""
    ref, out = _as_array(reference), _as_array(test)
    mse = float(np.mean((ref - out) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def max_abs_error(reference, test) -> float:
    return float(np.max(np.abs(_as_array(reference) - _as_array(test))))


def cosine_similarity(reference, test) -> float:
    ref, out = _as_array(reference).ravel(), _as_array(test).ravel()
    denom = np.linalg.norm(ref) * np.linalg.norm(out)
    return float(ref @ out / denom) if denom > 0 else float("nan")


def fidelity(reference, test, data_range: float = 2.0) -> dict[str, float]:
    """The flat dict of fidelity metrics every report uses (constant keys); PSNR peak `data_range`."""
    return {
        "psnr_db": psnr(reference, test, data_range),
        "max_abs_error": max_abs_error(reference, test),
        "cosine": cosine_similarity(reference, test),
    }


def ssim(reference, test, data_range: float = 2.0, window: int = 11, sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004) over N x C x H x W images: torchmetrics'.

    Gaussian 11x11 window with sigma 1.5, K1 = 0.01, K2 = 0.03, statistics over the 'valid'
    region (torchmetrics crops the padded border); the window shrinks to the image (odd) for tiny ones.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    ref, out = _as_array(reference), _as_array(test)
    if ref.shape != out.shape:
        raise ValueError(f"ssim needs equal shapes, got {ref.shape} and {out.shape}")
    ref = ref.reshape(-1, 1, *ref.shape[-2:])
    out = out.reshape(-1, 1, *out.shape[-2:])
    size = min(window, *ref.shape[-2:])
    size -= 1 - size % 2  # torchmetrics needs an odd window
    value = structural_similarity_index_measure(torch.from_numpy(out), torch.from_numpy(ref), sigma=sigma, kernel_size=size,
                                                data_range=data_range)
    return float(value)

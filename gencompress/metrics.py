"""Quality metrics shared by the stages: fidelity of a compressed model to its original.

Outputs are images in [-1, 1], so PSNR uses a peak-to-peak range of 2.
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


def fidelity(reference, test) -> dict[str, float]:
    """The flat dict of fidelity metrics every report uses (constant keys)."""
    return {
        "psnr_db": psnr(reference, test),
        "max_abs_error": max_abs_error(reference, test),
        "cosine": cosine_similarity(reference, test),
    }


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    return np.outer(g, g)


def ssim(reference, test, data_range: float = 2.0, window: int = 11, sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004) over N x C x H x W images.

    Gaussian 11x11 window with sigma 1.5, K1 = 0.01, K2 = 0.03, statistics over the
    'valid' region only (no padding); the window shrinks to the image for tiny images.
    """
    ref, out = _as_array(reference), _as_array(test)
    if ref.shape != out.shape:
        raise ValueError(f"ssim needs equal shapes, got {ref.shape} and {out.shape}")
    ref = ref.reshape(-1, 1, *ref.shape[-2:])
    out = out.reshape(-1, 1, *out.shape[-2:])
    size = min(window, *ref.shape[-2:])
    # The Gaussian window is separable: two 1-D passes give the 2-D blur at 2/11 of the cost
    # (the quality floor scores every candidate of a search with SSIM).
    g = torch.from_numpy(_gaussian_window(size, sigma).sum(axis=1))
    a, b = torch.from_numpy(ref), torch.from_numpy(out)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(torch.nn.functional.conv2d(x, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float((num / den).mean())

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
    """Peak signal-to-noise ratio in dB; +inf when the two are identical, -inf when `test` is not
    finite (an overflowed FP16 graph)."""
    ref, out = _as_array(reference), _as_array(test)
    mse = float(np.mean((ref - out) ** 2))
    if mse == 0.0:
        return math.inf
    if not math.isfinite(mse):
        return -math.inf
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


SSIM_CHUNK_ELEMENTS = 2**20  # pixels per pass (16 planes of 256x256): its float64 working maps stay near 100 MB
SSIM_RADIUS_SIGMAS = 3.5  # torchmetrics' Gaussian window: int(3.5 sigma + 0.5) taps each side


def ssim(reference, test, data_range: float = 2.0, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> float:
    """Mean structural similarity (Wang et al. 2004) over N x C x H x W images, each plane alone.

    torchmetrics' `structural_similarity_index_measure` to float rounding (tests hold them
    together): Gaussian window (sigma 1.5, 11 taps), reflection padding, the mean over the whole
    map. Not torchmetrics itself: it convolves with the 2-D window, which its CPU path unfolds
    at 121 values a pixel, so 168 planes of 256x256 asked for 53 GB. The window is separable:
    scipy's two 1-D Gaussian passes ('mirror' is PyTorch's reflection) give the same map, in chunks.
    """
    from scipy.ndimage import gaussian_filter1d

    ref, out = _as_array(reference), _as_array(test)
    if ref.shape != out.shape:
        raise ValueError(f"ssim needs equal shapes, got {ref.shape} and {out.shape}")
    ref = ref.reshape(-1, *ref.shape[-2:])
    out = out.reshape(-1, *out.shape[-2:])
    radius = int(SSIM_RADIUS_SIGMAS * sigma + 0.5)
    radius = min(radius, min(ref.shape[-2:]) - 1)  # a tiny image: reflection needs fewer taps than pixels

    def blur(x: np.ndarray) -> np.ndarray:
        for axis in (-2, -1):
            x = gaussian_filter1d(x, sigma, axis=axis, mode="mirror", radius=radius)
        return x

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    chunk = max(1, SSIM_CHUNK_ELEMENTS // (ref.shape[-2] * ref.shape[-1]))
    total = 0.0
    for start in range(0, len(ref), chunk):
        r = ref[start : start + chunk]
        o = out[start : start + chunk]
        mu_o, mu_r = blur(o), blur(r)
        var_o = np.maximum(blur(o * o) - mu_o**2, 0.0)
        var_r = np.maximum(blur(r * r) - mu_r**2, 0.0)
        covar = blur(o * r) - mu_o * mu_r
        value = ((2 * mu_o * mu_r + c1) * (2 * covar + c2)) / ((mu_o**2 + mu_r**2 + c1) * (var_o + var_r + c2))
        total += float(value.reshape(len(value), -1).mean(-1, dtype=np.float64).sum())
    return total / len(ref)

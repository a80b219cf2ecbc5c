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

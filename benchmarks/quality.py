"""Quality against real data: FID, KID and Inception Score through gencompress.fid.

The feature extractor is the toolkit's own (trained for its dataset) or local Inception
weights, both owned by gencompress.fid; this module only calls it, states the sample
count, and warns when the count is too small for a stable FID (FID is biased upwards
at small N: Chong & Forsyth, "Effectively Unbiased FID and Inception Score", 2020).
"""
from __future__ import annotations

import numpy as np

from gencompress.bundle import Bundle

MIN_STABLE_FID_SAMPLES = 1000


def sample_warning(n: int) -> str | None:
    if n < MIN_STABLE_FID_SAMPLES:
        return (f"only {n} generated samples: FID is biased upwards and noisy below about "
                f"{MIN_STABLE_FID_SAMPLES}; compare FIDs only at equal sample counts")
    return None


def _data_name(bundle: Bundle) -> str | None:
    """The data set the bundle's model was trained on, from its recipe."""
    step = bundle.last_step("train", having="data")
    return str(step["data"]) if step else None


def quality_vs_data(images: np.ndarray, bundle: Bundle, inception_weights: str | None = None) -> dict:
    """{fid, kid_mean, kid_std, is_mean, is_std, extractor, samples, warning} or why it is missing.

    Only data the toolkit can load by name (digits) is compared; FIDs on different
    extractors are not comparable, so the extractor's name goes with the numbers.
    """
    n = len(images)
    result = {"samples": n, "warning": sample_warning(n)}
    data = _data_name(bundle)
    if data != "digits":
        return {**result, "available": False, "message": f"no real data to compare with (trained on {data or 'unknown data'})"}
    try:
        import torch

        from gencompress import fid
        from gencompress.data import load_digits

        real, _ = load_digits(32)
        extractor = fid.extractor_for("digits", real, "digits", inception_weights)
        real_feats = fid.real_features(extractor, real, "digits")
        metrics = fid.quality(extractor, real_feats, torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
    except ImportError as exc:
        return {**result, "available": False, "message": f"FID needs gencompress.fid and torchmetrics ({exc})"}
    return {**result, "available": True, "real_samples": int(len(real)), **metrics}

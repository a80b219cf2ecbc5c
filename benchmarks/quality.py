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


def quality_vs_data(images: np.ndarray, bundle: Bundle, inception_weights: str | None = None, ref_data: str | None = None) -> dict:
    """{fid, kid_mean, kid_std, is_mean, is_std, extractor, samples, warning} or why it is missing.

    Against `ref_data` (folder:|npz:, the user's domain) where given, else the data the bundle
    was trained on where the toolkit can load it by name (digits). FIDs on different extractors
    are not comparable, so the extractor's name goes with the numbers.
    """
    n = len(images)
    result = {"samples": n, "warning": sample_warning(n)}
    if ref_data:
        return {**result, **vs_reference_data(images, bundle, ref_data, inception_weights)}
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


def check_ref_data(ref_data: str) -> None:
    from gencompress.errors import GencompressError

    if not (ref_data.startswith("folder:") or ref_data.startswith("npz:")):
        raise GencompressError(f"--ref-data {ref_data!r} must be folder:PATH or npz:PATH")


def vs_reference_data(images: np.ndarray, bundle: Bundle, ref_data: str, inception_weights: str | None = None) -> dict:
    """FID/KID against the user's reference images (`--ref-data folder:|npz:`), on the extractor
    the toolkit trains for that data (an autoencoder's bottleneck, cached) or local Inception weights.

    Reference images come as train.datasets loads them (32 x 32, [-1, 1]); the generated ones
    are brought to the same: mapped from the bundle's output range, resized and centre-cropped."""
    import torch

    from gencompress import fid
    from gencompress.data import resize_center
    from gencompress.errors import GencompressError
    from gencompress.inputs import output_range
    from gencompress.train.datasets import IMAGE_SIZE, load_dataset

    check_ref_data(ref_data)
    data = load_dataset(ref_data)
    fake = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if fake.shape[1] != data.channels:
        raise GencompressError(f"--ref-data {ref_data} has {data.channels}-channel images; the model makes {fake.shape[1]}-channel ones")
    low, high = output_range(bundle.manifest)
    fake = resize_center((fake.clamp(low, high) - low) / (high - low), IMAGE_SIZE) * 2 - 1
    extractor = fid.extractor_for(data.name, data.images, data.fingerprint, inception_weights)
    real_feats = fid.real_features(extractor, data.images, data.fingerprint)
    return {"available": True, "data": data.name, "real_samples": int(len(data.images)), **fid.quality(extractor, real_feats, fake)}

"""Zoo generators trained on the embedded digits data, trained on first use and cached.

`gencompress build` with no `--model` compresses the zoo's DCGAN trained here: a short
non-saturating GAN run (Goodfellow et al. 2014, Adam 2e-4, beta1 0.5 as in DCGAN) that
takes about three minutes on 2 CPU cores. Every model trains through the training stage's
one loop (`fit`, loop.py): GANs with the `gan` objective, VAEs with the ELBO. That default
ships trained inside the package (train/weights/, written by scripts/package_default_weights.py),
so a fresh clone starts from it; any other model, step count or seed trains on first use into
the cache folder, written atomically, so a killed first run simply trains again next time.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from gencompress import zoo
from gencompress.bundle import Bundle
from gencompress.cache import cache_dir
from gencompress.errors import GencompressError

from .config import TrainConfig
from .loop import fit, zoo_bundle

__all__ = ["DEFAULT_STEPS", "PACKAGED_DIR", "cached_path", "get_or_train", "packaged_bundle", "zoo_bundle"]

# Steps per zoo model: enough for recognisable digits in about two minutes on 2 cores.
DEFAULT_STEPS = {"dcgan": 1500, "upsample_conv": 900, "vae_decoder": 1500}
# 2: GAN bundles carry their discriminator. GANs have trained through fit() since (EMA
# weights, epoch-ordered batches), not a loop of their own; a bundle the former loop trained
# (the shipped default is one) is still a whole bundle of that model, step count and seed, and
# its recipe says how it was trained, so the key did not change.
CACHE_VERSION = 2


PACKAGED_DIR = Path(__file__).resolve().parent / "weights"  # trained bundles shipped with the package


def cached_path(name: str, steps: int, seed: int) -> Path:
    return cache_dir() / "zoo" / f"{name}-digits-s{steps}-seed{seed}-v{CACHE_VERSION}"


def _whole_bundle(path: Path) -> Bundle | None:
    """The bundle at `path` if there is one and its files match their hashes, else None: a
    missing or corrupt one is trained again, never trusted."""
    if not (path / "manifest.json").is_file():
        return None
    try:
        return Bundle.load(path)
    except GencompressError:
        return None


def packaged_bundle(name: str, steps: int, seed: int) -> Bundle | None:
    """The shipped bundle for exactly this model, step count, seed and cache version, if one ships whole."""
    return _whole_bundle(PACKAGED_DIR / cached_path(name, steps, seed).name)


def get_or_train(name: str, steps: int | None = None, seed: int = 0, progress: bool = True) -> Bundle:
    """The zoo model `name` trained on digits: from the cache, or trained now and cached."""
    entry = zoo.get(name)
    is_vae = "vae" in entry.tags
    if entry.discriminator is None and not is_vae:
        raise GencompressError(f"zoo model {name!r} has no digits training recipe")
    steps = steps or DEFAULT_STEPS.get(name, 1000)
    path = cached_path(name, steps, seed)
    found = _whole_bundle(path) or packaged_bundle(name, steps, seed)
    if found is not None:
        return found
    if progress:
        print(f"gencompress: training zoo model {name!r} on digits ({steps} steps, cached in {path})", file=sys.stderr)
    return train_on_digits(name, steps, seed, path, progress)


def train_on_digits(name: str, steps: int, seed: int, path: Path, progress: bool = True) -> Bundle:
    """`name` trained on digits through the training stage (a GAN with the `gan` objective, a
    VAE with the ELBO), saved at `path`; the bundle keeps the discriminator (adversarial
    distillation) or the encoder (calibration from real data). Checkpoints and logs live in a
    temporary folder."""
    with tempfile.TemporaryDirectory(prefix="gencompress-zoo-train-") as work:
        cfg = TrainConfig(model=name, out=str(path), max_steps=steps, seed=seed, evaluate=False,
                          samples_every_epoch=False, checkpoint_dir=work, progress=progress)
        return fit(cfg)

"""Zoo generators trained on the embedded digits data, trained on first use and cached.

`gencompress build` with no `--model` compresses the zoo's DCGAN trained here: a short
non-saturating GAN run (Goodfellow et al. 2014, Adam 2e-4, beta1 0.5 as in DCGAN) that
takes about three minutes on 2 CPU cores. That default ships trained inside the package
(train/weights/, written by scripts/package_default_weights.py with this same function), so a
fresh clone starts from it; any other model, step count or seed trains on first use into the
cache folder, written atomically, so a killed first run simply trains again next time.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from gencompress import zoo
from gencompress.bundle import Bundle, new_manifest
from gencompress.cache import cache_dir
from gencompress.data import load_digits
from gencompress.errors import GencompressError
from gencompress.progress import bar

# Steps per zoo model: enough for recognisable digits in about two minutes on 2 cores.
DEFAULT_STEPS = {"dcgan": 1500, "upsample_conv": 900, "vae_decoder": 1500}
CACHE_VERSION = 2  # 2: GAN bundles carry their discriminator


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
    if is_vae:
        return train_digits_vae(name, steps, seed, path, progress)
    generator, discriminator = train_digits_gan(name, steps, seed, progress)
    bundle = zoo_bundle(name, generator)
    bundle.record({"step": "train", "data": "digits", "objective": "gan", "steps": steps, "seed": seed,
                                      "discriminator_kwargs": {}})
    from .loop import save_state

    with tempfile.TemporaryDirectory(prefix="gencompress-zoo-train-") as work:
        bundle.files["discriminator.safetensors"] = save_state(discriminator, Path(work) / "discriminator.safetensors")
        return bundle.save(path)


def zoo_bundle(name: str, model: torch.nn.Module, **kwargs) -> Bundle:
    """An in-memory bundle for a zoo model (trained or not)."""
    entry = zoo.get(name)
    merged = {**entry.defaults, **kwargs}
    shape = list(entry.input_shape(merged))
    manifest = new_manifest(
        architecture={"kind": "zoo", "name": name, "kwargs": merged},
        input_spec={"name": "latent", "shape": shape, "dtype": "float32", "distribution": entry.input_distribution},
        output_spec={"name": "image", "range": [-1.0, 1.0], "layout": "NCHW"},
    )
    return Bundle(manifest, model.eval())


def train_digits_gan(name: str, steps: int, seed: int, progress: bool = True) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Non-saturating GAN on digits: D maximises log D(x) + log(1 - D(G(z))), G maximises log D(G(z))."""
    torch.manual_seed(seed)
    images, _ = load_digits(32)
    generator = zoo.build(name)
    discriminator = zoo.get(name).discriminator()
    nz = zoo.input_shape(name)
    opt_g = torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999))
    batch = 64
    for _ in bar(range(steps), f"train {name}", progress):
        real = images[torch.randint(0, len(images), (batch,))]
        fake = generator(torch.randn(batch, *nz))
        # softplus(-l) = -log sigmoid(l): the numerically stable form of the log losses
        loss_d = F.softplus(-discriminator(real)).mean() + F.softplus(discriminator(fake.detach())).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-discriminator(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if not torch.isfinite(loss_d + loss_g):
            raise GencompressError(f"training {name} diverged (loss is not finite)")
    return generator.eval(), discriminator.eval()


def train_digits_vae(name: str, steps: int, seed: int, path: Path, progress: bool = True) -> Bundle:
    """A VAE (ELBO) on digits through the training stage; the bundle keeps its encoder
    (for calibration from real data). Checkpoints and logs live in a temporary folder."""
    from .config import TrainConfig
    from .loop import fit

    with tempfile.TemporaryDirectory(prefix="gencompress-zoo-train-") as work:
        cfg = TrainConfig(model=name, out=str(path), max_steps=steps, seed=seed, evaluate=False,
                          samples_every_epoch=False, checkpoint_dir=work, progress=progress)
        fit(cfg)
    return Bundle.load(path)

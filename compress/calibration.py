"""Calibration inputs: the user's data, latents drawn like the model's own, or real data through a VAE's encoder.

A VAE decoder deployed for reconstruction (or editing) decodes the encoder's latents, whose
distribution differs from the N(0, I) prior: its per-dimension means and spreads are the
encoder's. Bundles written by `gencompress train` for a VAE carry `encoder.safetensors` and
name their training data in the recipe; then `auto` calibrates on z = mu + sigma * eps of
real images (the reparameterisation trick with a fixed seed), which are the activations the
decoder meets in use. Everything else calibrates on latents drawn like the model's input.
Where the user gave `--data` (gencompress/inputs.py), that wins over all of these.
"""
from __future__ import annotations

import torch

from gencompress.bundle import Bundle, load_safetensors
from gencompress.data import draw_inputs
from gencompress.errors import GencompressError
from gencompress.inputs import UserData, drawn_record

SOURCES = ("auto", "latents", "encoder")
ENCODER = "encoder.safetensors"


def calibration_inputs(bundle: Bundle, n: int, seed: int, source: str = "auto",
                       data: UserData | None = None) -> tuple[torch.Tensor, str]:
    """`n` calibration inputs for the bundle's model and a description for the recipe.

    The user's `--data` (its calibration part, disjoint from the evaluation samples) comes first:
    those are the inputs the model meets in use."""
    if source not in SOURCES:
        raise GencompressError(f"unknown calibration source {source!r}; known: {', '.join(SOURCES)}")
    if data is not None:
        inputs = data.calibration(n)
        return inputs, data.describe("calibration", len(inputs))
    train = bundle.last_step("train", having="data")
    has_encoder = ENCODER in bundle.files and train is not None
    if source == "encoder" and not has_encoder:
        raise GencompressError(f"--calib-from encoder: the bundle has no {ENCODER} and training data to run it on "
                               "(VAE bundles from `gencompress train` have both)")
    if source == "latents" or not has_encoder:
        shape = tuple(bundle.input_shape)
        spec = bundle.manifest["input"]
        how = f"{n} latents drawn {spec['distribution']} ({drawn_record(spec, n, seed)['distribution']})"
        return draw_inputs(shape, n, spec, seed), how
    return _through_encoder(bundle, train["data"], n, seed)


def _through_encoder(bundle: Bundle, data_name: str, n: int, seed: int) -> tuple[torch.Tensor, str]:
    from gencompress.train.datasets import load_dataset
    from gencompress.train.vae import VAEEncoder, reparameterize

    data = load_dataset(data_name)
    nz = int(bundle.input_shape[0])
    encoder = VAEEncoder(nz=nz, nc=data.channels)
    try:
        encoder.load_state_dict(load_safetensors(bundle.files[ENCODER]))
    except RuntimeError as exc:
        raise GencompressError(f"{ENCODER} does not fit a VAE encoder with {nz} latents: {str(exc).splitlines()[0]}") from None
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(data.images), (n,), generator=gen)
    with torch.no_grad():
        mu, logvar = encoder.eval()(data.images[pick])
        z = reparameterize(mu, logvar, torch.randn(mu.shape, generator=gen))
    return z.reshape(n, *bundle.input_shape), f"{n} images of {data.name} through the VAE encoder (z = mu + sigma * eps)"

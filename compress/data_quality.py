"""FID/KID of a generator against its training data, for the pruning record.

Pruning changes a generator's images, so PSNR against the original says little about
whether they are still good; FID against the data does. Where the bundle's recipe names
training data that loads here (the digits, or a folder/npz that still exists), pruning
measures the original, the pruned model before distillation and after it, on the same
latents, with the extractor the training stage uses (gencompress.fid).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import nn

from gencompress.bundle import Bundle
from gencompress.data import draw_inputs
from gencompress.errors import GencompressError

LATENT_SEED = 123


@dataclass
class DataJudge:
    extractor: object
    real: torch.Tensor
    latents: torch.Tensor
    data: str

    def __call__(self, model: nn.Module) -> dict:
        from gencompress import fid

        was_training = model.training
        model.eval()
        with torch.no_grad():
            images = torch.cat([model(chunk) for chunk in self.latents.split(256)])
        model.train(was_training)
        return fid.quality(self.extractor, self.real, images)


def data_judge(bundle: Bundle, samples: int) -> DataJudge | None:
    """A FID/KID judge on the bundle's training data, or None (with a note) where there is none."""
    if samples <= 0:
        return None
    train = bundle.last_step("train", having="data")
    if train is None:
        return None
    from gencompress import fid
    from gencompress.train.datasets import load_dataset

    try:
        data = load_dataset(train["data"])
    except GencompressError as exc:
        print(f"gencompress: no FID for pruning: training data unavailable ({exc})", file=sys.stderr)
        return None
    extractor = fid.extractor_for(data.name, data.images, data.fingerprint)
    real = fid.real_features(extractor, data.images, data.fingerprint)
    latents = draw_inputs(tuple(bundle.input_shape), samples, bundle.manifest["input"], LATENT_SEED)
    return DataJudge(extractor, real, latents, data.name)

"""Stage 0: train the model family (GAN objectives, VAE) on real data.

    from gencompress.train import TrainConfig, fit
    bundle = fit(TrainConfig(model="dcgan", objective="wgan-gp", max_steps=500, out="g"))
"""
from .config import TrainConfig
from .loop import fit
from .pretrained import get_or_train, zoo_bundle

__all__ = ["TrainConfig", "fit", "get_or_train", "zoo_bundle"]

"""Stage 0: train the model family (GAN objectives, VAE) on real data.

    from gencompress.train import TrainConfig, fit
    bundle = fit(TrainConfig(model="dcgan", objective="wgan-gp", max_steps=500, out="g"))
"""
from .config import TrainConfig
from .loop import fit

__all__ = ["TrainConfig", "fit"]

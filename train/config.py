"""The training stage's one config: every `gencompress train` option maps onto a field."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class TrainConfig:
    model: str = "dcgan"  # a zoo name; `vae_decoder` trains a VAE whose decoder is deployed
    out: str = "gencompress-train"  # the bundle written at the end
    objective: str | None = None  # gan | lsgan | wgan | wgan-gp | elbo; None: gan, or elbo for a VAE
    data: str = "digits"  # digits | folder:PATH | npz:PATH
    epochs: int = 50
    max_steps: int | None = None  # generator (or VAE) steps; whichever of this and epochs ends first
    batch_size: int = 64  # per process
    lr: float | None = None  # None: the objective's paper setting
    beta: float = 1.0  # VAE: KL weight
    ema_decay: float = 0.999
    seed: int = 0
    resume: bool = False
    checkpoint_every: int = 200  # steps; also at every end of run
    checkpoint_dir: str | None = None  # None: <out>.ckpt beside the bundle
    evaluate: bool = True  # FID/KID (+IS) during and after training
    eval_every: int = 10  # epochs between FID/KID evaluations (0: only at the end)
    eval_samples: int = 1000
    inception_weights: str | None = None  # a local TorchScript Inception file for FID/KID
    samples_every_epoch: bool = True  # the fixed-latent sample grid
    progress: bool = True

    @property
    def ckpt_root(self) -> Path:
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(f"{Path(self.out)}.ckpt")

    def resume_key(self) -> dict:
        """What a checkpoint must match to be resumed: the rest (limits, logging) may change."""
        d = asdict(self)
        return {k: d[k] for k in ("model", "objective", "data", "batch_size", "lr", "beta", "ema_decay", "seed")}

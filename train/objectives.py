"""Training objectives: the GAN family and the VAE's ELBO, as small pure functions.

Each GAN objective is a pair of losses on discriminator outputs (any shape (N, ...):
PatchGAN critics emit one value per patch and every loss averages over them) plus the
optimiser settings its paper used. Keeping the losses pure lets tests check each one
against a value computed by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gencompress.errors import GencompressError


# --- losses --------------------------------------------------------------------------


def gan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Goodfellow et al. 2014: -log D(x) - log(1 - D(G(z))), on logits.

    softplus(-l) = -log sigmoid(l) and softplus(l) = -log(1 - sigmoid(l)): the stable forms.
    """
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def gan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: -log D(G(z)) (strong gradients early in training)."""
    return F.softplus(-d_fake).mean()


def lsgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Mao et al. 2017, targets a=0 (fake), b=1 (real): 1/2 (D(x)-1)^2 + 1/2 D(G(z))^2."""
    return 0.5 * ((d_real - 1) ** 2).mean() + 0.5 * (d_fake**2).mean()


def lsgan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Generator target c=1: 1/2 (D(G(z)) - 1)^2."""
    return 0.5 * ((d_fake - 1) ** 2).mean()


def wgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Arjovsky et al. 2017: the critic maximises E[D(x)] - E[D(G(z))]; we minimise the negative."""
    return d_fake.mean() - d_real.mean()


def wgan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    return -d_fake.mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Gulrajani et al. 2017: E[(||grad_x D(x_hat)||_2 - 1)^2], x_hat = alpha x + (1 - alpha) G(z).

    `alpha` has shape (N, 1, 1, 1) and is drawn by the caller (so tests can fix it).
    A PatchGAN critic's value for a sample is the mean over its patches.
    """
    x_hat = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    score = critic(x_hat).flatten(1).mean(1)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def elbo_loss(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0):
    """Negative ELBO per sample (Kingma & Welling 2014), averaged over the batch.

    Reconstruction: a Gaussian likelihood with fixed variance 1/2, i.e. the sum of squared
    errors over pixels (constants dropped). KL(q(z|x) || N(0, I)) in closed form:
    -1/2 sum(1 + logvar - mu^2 - exp(logvar)). `beta` weights the KL (Higgins et al. 2017).
    Returns (loss, reconstruction, kl), all batch means.
    """
    recon = ((x - x_hat) ** 2).flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).flatten(1).sum(1)).mean()
    return recon + beta * kl, recon, kl


# --- objectives with their optimiser settings ---------------------------------------


@dataclass(frozen=True)
class Objective:
    name: str
    d_loss: Callable | None
    g_loss: Callable | None
    optimizer: str  # "adam" or "rmsprop"
    lr: float
    betas: tuple[float, float] = (0.5, 0.999)
    n_critic: int = 1  # discriminator steps per generator step
    clip: float | None = None  # WGAN weight clipping
    gp_weight: float = 0.0  # WGAN-GP lambda
    disc_norm: str | None = None  # None: the discriminator's default normalisation
    description: str = ""


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in [
        # DCGAN settings (Radford et al. 2016): Adam 2e-4, beta1 0.5.
        Objective("gan", gan_d_loss, gan_g_loss, "adam", 2e-4, description="minimax GAN, non-saturating G loss"),
        Objective("lsgan", lsgan_d_loss, lsgan_g_loss, "adam", 2e-4, description="least squares GAN"),
        # WGAN paper, Algorithm 1: RMSprop 5e-5, n_critic 5, clip 0.01.
        Objective("wgan", wgan_d_loss, wgan_g_loss, "rmsprop", 5e-5, n_critic=5, clip=0.01,
                  description="Wasserstein GAN, weight clipping"),
        # WGAN-GP paper, Algorithm 1: Adam 1e-4, betas (0, 0.9), n_critic 5, lambda 10; no batch
        # norm in the critic (the penalty is per sample), layer norm instead.
        Objective("wgan-gp", wgan_d_loss, wgan_g_loss, "adam", 1e-4, betas=(0.0, 0.9), n_critic=5, gp_weight=10.0,
                  disc_norm="layer", description="Wasserstein GAN, gradient penalty"),
        Objective("elbo", None, None, "adam", 1e-3, betas=(0.9, 0.999), description="VAE evidence lower bound"),
    ]
}


def get_objective(name: str) -> Objective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise GencompressError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}") from None


def make_optimizer(obj: Objective, params, lr: float | None = None) -> torch.optim.Optimizer:
    lr = lr if lr is not None else obj.lr
    if obj.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=obj.betas)

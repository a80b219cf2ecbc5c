"""Each training objective against a value computed by hand on a tiny input."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gencompress.train.objectives import (
    OBJECTIVES, elbo_loss, gan_d_loss, gan_g_loss, gradient_penalty, lsgan_d_loss, lsgan_g_loss,
    make_optimizer, wgan_d_loss, wgan_g_loss,
)
from gencompress.train.vae import reparameterize

D_REAL = torch.tensor([[2.0], [0.5]])
D_FAKE = torch.tensor([[-1.0], [1.0]])


def _softplus(x: float) -> float:
    return math.log(1 + math.exp(x))


def test_gan_losses_match_hand_values():
    # D: mean(-log sigmoid(real)) + mean(-log(1 - sigmoid(fake)))
    expected_d = (_softplus(-2.0) + _softplus(-0.5)) / 2 + (_softplus(-1.0) + _softplus(1.0)) / 2
    assert gan_d_loss(D_REAL, D_FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    # non-saturating G: mean(-log sigmoid(fake))
    expected_g = (-math.log(1 / (1 + math.exp(1.0))) - math.log(1 / (1 + math.exp(-1.0)))) / 2
    assert gan_g_loss(D_FAKE).item() == pytest.approx(expected_g, rel=1e-6)


def test_lsgan_losses_match_hand_values():
    # 1/2 mean((real-1)^2) + 1/2 mean(fake^2) = 1/2 (1 + 0.25)/2 + 1/2 (1 + 1)/2
    assert lsgan_d_loss(D_REAL, D_FAKE).item() == pytest.approx(0.3125 + 0.5, rel=1e-6)
    # 1/2 mean((fake-1)^2) = 1/2 (4 + 0)/2
    assert lsgan_g_loss(D_FAKE).item() == pytest.approx(1.0, rel=1e-6)


def test_wgan_losses_match_hand_values():
    # mean(fake) - mean(real) = 0 - 1.25
    assert wgan_d_loss(D_REAL, D_FAKE).item() == pytest.approx(-1.25, rel=1e-6)
    assert wgan_g_loss(D_FAKE).item() == pytest.approx(0.0, abs=1e-7)
    # patch critics: every element counts equally
    assert wgan_g_loss(torch.tensor([[1.0, 3.0], [2.0, 2.0]])).item() == pytest.approx(-2.0)


class _SumOfSquares(nn.Module):
    """D(x) = sum(x^2): grad = 2 x, so ||grad|| = 2 ||x_hat||, computable by hand."""

    def forward(self, x):
        return (x**2).flatten(1).sum(1, keepdim=True)


def test_gradient_penalty_matches_hand_value():
    real = torch.tensor([3.0, 0.0]).view(2, 1, 1, 1)
    fake = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1)
    alpha = torch.tensor([0.5, 0.25]).view(2, 1, 1, 1)
    # x_hat = [2.0, 1.5]; ||grad|| = [4, 3]; penalty = mean((4-1)^2, (3-1)^2) = (9 + 4) / 2
    assert gradient_penalty(_SumOfSquares(), real, fake, alpha).item() == pytest.approx(6.5, rel=1e-6)


def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.copy_(torch.tensor([[1.0, 2.0, 2.0, 0.0]]))  # ||w|| = 3
    x = torch.randn(5, 1, 2, 2)
    gp = gradient_penalty(critic, x, torch.randn(5, 1, 2, 2), torch.rand(5, 1, 1, 1))
    assert gp.item() == pytest.approx((3 - 1) ** 2, rel=1e-5)
    gp.backward()  # the penalty is differentiable in the critic's weights: d/dw (||w||-1)^2 = 2 (1 - 1/||w||) w
    expected = 2 * (1 - 1 / 3) * torch.tensor([[1.0, 2.0, 2.0, 0.0]])
    assert torch.allclose(critic[1].weight.grad, expected, atol=1e-5)


def test_elbo_matches_hand_value():
    x = torch.tensor([[1.0, -1.0]])
    x_hat = torch.tensor([[0.5, -1.0]])
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    # recon = 0.25; KL = -1/2 [(1 + 0 - 1 - 1) + (1 + ln 2 - 0 - 2)] = 1 - ln(2) / 2
    kl = 1 - math.log(2.0) / 2
    loss, recon, kl_t = elbo_loss(x, x_hat, mu, logvar, beta=0.5)
    assert recon.item() == pytest.approx(0.25, rel=1e-6)
    assert kl_t.item() == pytest.approx(kl, rel=1e-6)
    assert loss.item() == pytest.approx(0.25 + 0.5 * kl, rel=1e-6)


def test_elbo_kl_is_zero_at_the_prior():
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    _, _, kl = elbo_loss(torch.zeros(3, 4), torch.zeros(3, 4), mu, logvar)
    assert kl.item() == pytest.approx(0.0, abs=1e-7)


def test_reparameterize_is_mu_plus_sigma_eps():
    mu, logvar, eps = torch.tensor([1.0]), torch.tensor([math.log(4.0)]), torch.tensor([0.5])
    assert reparameterize(mu, logvar, eps).item() == pytest.approx(1.0 + 2.0 * 0.5)


def test_optimizer_settings_follow_the_papers():
    wgan = make_optimizer(OBJECTIVES["wgan"], [nn.Parameter(torch.zeros(1))])
    assert isinstance(wgan, torch.optim.RMSprop) and wgan.defaults["lr"] == 5e-5
    assert OBJECTIVES["wgan"].n_critic == 5 and OBJECTIVES["wgan"].clip == 0.01
    gp = make_optimizer(OBJECTIVES["wgan-gp"], [nn.Parameter(torch.zeros(1))])
    assert isinstance(gp, torch.optim.Adam) and gp.defaults["lr"] == 1e-4 and gp.defaults["betas"] == (0.0, 0.9)
    assert OBJECTIVES["wgan-gp"].gp_weight == 10.0 and OBJECTIVES["wgan-gp"].n_critic == 5
    assert make_optimizer(OBJECTIVES["gan"], [nn.Parameter(torch.zeros(1))]).defaults["betas"] == (0.5, 0.999)

"""Tiny random-init generators for the compress tests (seconds, not minutes)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gencompress import zoo
from gencompress.train.pretrained import zoo_bundle


def randomize_norms(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so folding and pruning are really exercised."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


@pytest.fixture
def tiny_dcgan():
    torch.manual_seed(0)
    return zoo_bundle("dcgan", randomize_norms(zoo.build("dcgan", nz=16, ngf=16)), nz=16, ngf=16)


@pytest.fixture
def tiny_upsample():
    torch.manual_seed(0)
    return zoo_bundle("upsample_conv", randomize_norms(zoo.build("upsample_conv", nz=16, ngf=16)), nz=16, ngf=16)

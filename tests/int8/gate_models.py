"""A generator whose first layer meets rare input outliers (issue 22): an InstanceNorm right
after it absorbs their scale, so only that layer's INT8 input range clips them. Inputs without
outliers quantise well; inputs with them need that layer float."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def outlier_sensitive(width: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, 1, 1), nn.InstanceNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(),
                         nn.Conv2d(width, 3, 3, 1, 1), nn.Tanh()).eval()


def outlier_data(evaluation: int = 32, easy: int = 8, calibration: int = 64, size: int = 16) -> np.ndarray:
    """Inputs N(0, 1): the first `easy` evaluation inputs and every calibration input plain, the
    other evaluation inputs with one 4x4 patch 8x brighter (what a judge set of `easy` never shows)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((evaluation + calibration, 3, size, size)).astype(np.float32)
    x[easy:evaluation, :, 4:8, 4:8] *= 8
    return x

"""Empirical bias correction (compress/bias_correction.py): it removes the per-channel mean
error that INT8 rounding adds, leaves bias-free layers alone, and quantize() keeps it only
where it scores better on held-out inputs."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from gencompress.batching import forward_batched
from gencompress.compress.bias_correction import channel_means, correct_biases, corrected_layers
from gencompress.compress.quantize import QuantConfig, quantize, quantize_module
from gencompress.floor import QualityFloor
from gencompress.train.pretrained import zoo_bundle

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "int8"))
import decoders  # noqa: E402  (the user-style decoders of issue 14)

SHAPE = (4, 16, 16)


def _calibrated(model: nn.Module, calibrator: str = "max") -> tuple[nn.Module, torch.Tensor]:
    x = torch.randn(32, *SHAPE, generator=torch.Generator().manual_seed(3))
    cfg = QuantConfig(calibrator=calibrator, calib_samples=32, calib_batch=16)
    return quantize_module(model, SHAPE, "normal", cfg, progress=False, inputs=x), x


def _mean_error(qmodel, fp32, names, x) -> dict[str, float]:
    got, want = channel_means(qmodel, names, x, 16), channel_means(fp32, names, x, 16)
    return {n: float((want[n] - got[n]).abs().mean()) for n in names}


def test_correction_removes_the_channel_mean_error_of_every_corrected_layer():
    model = decoders.taesd_like()
    qmodel, x = _calibrated(model)
    names = corrected_layers(qmodel)
    assert len(names) == 5  # every conv has a bias and is quantised
    before = _mean_error(qmodel, model, names, x)
    record = correct_biases(qmodel, model, x, batch=16, rounds=3)
    after = _mean_error(qmodel, model, names, x)
    assert record["layers"] == 5 and len(record["mean_abs_shift"]) == 3
    assert record["mean_abs_shift"][-1] < record["mean_abs_shift"][0]  # the rounds converge
    for name in names:  # what is left is a small part of what there was
        assert after[name] <= 0.25 * before[name] + 1e-6, (name, before[name], after[name])


def test_layers_without_a_bias_are_left_alone():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    qmodel, x = _calibrated(model)
    assert corrected_layers(qmodel) == ["2"]
    weights = qmodel[0].weight.detach().clone()
    correct_biases(qmodel, model, x, batch=16)
    assert qmodel[0].bias is None and torch.equal(qmodel[0].weight, weights)


@pytest.mark.parametrize("model_name", ["taesd_like", "taesd_like_plain"])
def test_quantize_keeps_the_correction_only_where_it_scores_better(model_name):
    model = getattr(decoders, model_name)()
    bundle = zoo_bundle("dcgan", nn.Identity())  # any manifest; the model and shape are set below
    bundle.model = model
    bundle.manifest["input"]["shape"] = list(SHAPE)
    cfg = QuantConfig(calibrator="max", calib_samples=32, calib_batch=16, eval_samples=16, no_floor=True, bias_correction=True)
    out = quantize(bundle, cfg, progress=False)
    record = out.last_step("quantize")["calibrators"]["bias_correction"]
    assert record["kept"] == (record["psnr_after_db"] > record["psnr_before_db"])
    plain = quantize(bundle, replace(cfg, bias_correction=False), progress=False)
    assert "bias_correction" not in plain.last_step("quantize")["calibrators"]
    held = torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(cfg.seed + 1))
    reference = forward_batched(model, held)
    scores = [QualityFloor(1.0).measure(reference.numpy(), forward_batched(m.model, held).numpy())["psnr_db"] for m in (out, plain)]
    assert scores[0] >= scores[1] - 1e-6  # never worse than plain calibration on the inputs it judged

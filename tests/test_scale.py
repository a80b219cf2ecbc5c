"""Big models: sample counts sized by cost, held-out passes in mini-batches, one histogram
pass shared by the histogram calibrators."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from gencompress import defaults
from gencompress.batching import forward_batched
from gencompress.cli.pipeline import BuildConfig, sample_counts


def test_sample_counts_shrink_with_the_model_cost_but_not_below_the_minimum():
    small = sample_counts(BuildConfig(), 0.004)  # a digits DCGAN
    assert (small.calib_samples, small.eval_samples) == (defaults.CALIB_SAMPLES, defaults.EVAL_SAMPLES)
    taesd = sample_counts(BuildConfig(), 17.67)
    assert taesd.calib_samples == 56 and taesd.eval_samples == 56 and taesd.judge_samples == 8
    huge = sample_counts(BuildConfig(), 500.0)
    assert (huge.calib_samples, huge.eval_samples, huge.judge_samples) == (32, 16, 8)
    unknown = sample_counts(BuildConfig(), None)  # an ONNX source: no MAC count
    assert unknown.calib_samples == defaults.CALIB_SAMPLES


def test_the_users_counts_are_kept_whatever_the_cost():
    cfg = sample_counts(BuildConfig(calib_samples=300, eval_samples=5), 500.0)
    assert (cfg.calib_samples, cfg.eval_samples) == (300, 5)
    assert cfg.judge_samples == 5  # never more judging inputs than evaluation ones


class _BatchRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.seen: list[int] = []

    def forward(self, x):
        self.seen.append(len(x))
        return self.conv(x)


def test_forward_batched_equals_one_pass_and_never_exceeds_the_batch():
    torch.manual_seed(0)
    model, x = _BatchRecorder().eval(), torch.randn(11, 3, 8, 8)
    out = forward_batched(model, x, 4)
    assert model.seen == [4, 4, 3]
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-6, rtol=1e-5)


def test_quantize_judges_its_choices_in_mini_batches():
    """The held-out passes (reference, each calibrator, each layer's sensitivity) run at
    calib_batch, not as one batch of every held-out input."""
    pytest.importorskip("modelopt")
    from gencompress.compress.quantize import QuantConfig, quantize
    from gencompress.train.pretrained import zoo_bundle
    from gencompress import zoo

    torch.manual_seed(0)
    bundle = zoo_bundle("upsample_conv", zoo.build("upsample_conv"))
    seen: list[int] = []
    # quantize deep-copies the model: the copies carry this hook, so every pass is recorded
    bundle.model.register_forward_pre_hook(lambda _m, args: seen.append(len(args[0])))
    quantize(bundle, QuantConfig(calibrator="auto", calib_samples=16, calib_batch=8, eval_samples=20, min_psnr=5.0), progress=False)
    assert seen and max(seen) <= 8


def test_percentile_from_a_shared_histogram_matches_its_own_pass():
    pytest.importorskip("modelopt")
    from gencompress.compress.quantize import QuantConfig, load_histogram_amax, quantize_module
    from gencompress import zoo

    torch.manual_seed(0)
    model = zoo.build("upsample_conv").eval()
    inputs = torch.randn(16, 100, 1, 1)
    cfg = QuantConfig(calibrator="entropy", calib_samples=16, calib_batch=8)
    entropy = quantize_module(model, (100, 1, 1), "normal", cfg, progress=False, inputs=inputs)
    own = quantize_module(model, (100, 1, 1), "normal", replace(cfg, calibrator="percentile"), progress=False, inputs=inputs)
    shared = copy.deepcopy(entropy)
    load_histogram_amax(shared, replace(cfg, calibrator="percentile"))
    amax = {k: v for k, v in shared.state_dict().items() if k.endswith("input_quantizer._amax")}
    assert amax
    for key, value in amax.items():
        torch.testing.assert_close(value, own.state_dict()[key], rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(v, entropy.state_dict()[k]) for k, v in amax.items())  # the methods differ


@pytest.mark.parametrize("need", [0, 1, 2, 3, 5, 8, 13, 40])
def test_the_float_layer_search_finds_the_fewest_in_few_passes(need):
    from gencompress.floor import fewest_passing

    calls: list[int] = []

    def passes(k: int) -> bool:
        calls.append(k)
        return k >= need

    assert fewest_passing(40, passes) == need
    assert need == 0 or need - 1 in calls  # one fewer was tried and missed
    assert len(calls) <= 2 * max(1, need).bit_length() + 2  # logarithmic, not one pass per layer
    assert fewest_passing(40, lambda k: False) is None


@pytest.mark.parametrize("calibrator", ["entropy", "percentile"])
def test_histogram_calibrators_quantise_the_same_layers_as_max(calibrator):
    """modelopt keeps BatchNorm inputs float; the histogram rule used to re-enable them (11 Q/DQ pairs, not 8)."""
    pytest.importorskip("modelopt")
    from gencompress.compress.quantize import QuantConfig, quantize_module
    from gencompress import zoo

    def enabled(qmodel):
        return {name for name, m in qmodel.named_modules() if name.endswith("_quantizer") and getattr(m, "is_enabled", False)}

    torch.manual_seed(0)
    model = zoo.build("dcgan").eval()  # ConvTranspose + BatchNorm
    inputs = torch.randn(8, 100, 1, 1)
    cfg = QuantConfig(calibrator="max", calib_samples=8, calib_batch=8)
    plain = enabled(quantize_module(model, (100, 1, 1), "normal", cfg, progress=False, inputs=inputs))
    histogram = enabled(quantize_module(model, (100, 1, 1), "normal", replace(cfg, calibrator=calibrator), progress=False, inputs=inputs))
    assert histogram == plain
    assert len(plain) == 8  # four ConvTranspose layers: input and weight each


def test_the_float_layer_search_aims_above_the_floor_and_falls_back_to_it():
    from gencompress.floor import QualityFloor, fewest_meeting

    floor = QualityFloor(35.0)
    psnr_by_k = [30.0, 34.9, 35.1, 35.2, 35.4, 36.0]
    scores = lambda k: {"psnr_db": psnr_by_k[k], "ssim": 1.0}  # noqa: E731
    assert fewest_meeting(5, scores, floor) == 2  # no margin: the first mix over 35
    assert fewest_meeting(5, scores, floor, margin_db=0.3) == 4  # aims at 35.3
    assert fewest_meeting(3, scores, floor, margin_db=0.3) == 2  # nothing clears 35.3 within 3: the floor itself
    assert fewest_meeting(1, scores, floor, margin_db=0.3) is None  # nothing meets 35 at all
    with_ssim = QualityFloor(35.0, 0.97)
    low_ssim = lambda k: {"psnr_db": psnr_by_k[k], "ssim": 0.9 if k < 5 else 0.99}  # noqa: E731
    assert fewest_meeting(5, low_ssim, with_ssim, margin_db=0.3) == 5  # the SSIM floor holds too


def test_interleaved_timings_use_no_more_than_the_mini_batch():
    """Graphs timed side by side each hold a batch of activations: a 256-px decoder (mini-batch 4)
    is timed at 4, a digits model (mini-batch 32) at the largest latency batch."""
    from gencompress.benchmarks import timing_batch

    assert timing_batch(BuildConfig().latency_batches, 4) == 4
    assert timing_batch(BuildConfig().latency_batches, 32) == 8
    assert timing_batch((1,), 32) == 1

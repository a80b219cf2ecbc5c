"""INT8 PTQ: calibrators, the PSNR budget search, QAT, and restoring a saved bundle."""
from __future__ import annotations

import math

import pytest
import torch

from gencompress.bundle import Bundle, load_safetensors
from gencompress.compress import QuantConfig, load_model, quantize
from gencompress.data import draw_inputs
from gencompress.errors import GencompressError
from gencompress.metrics import psnr

FAST = dict(calib_samples=32, calib_batch=32, eval_samples=32)


def _psnr(bundle, qbundle) -> float:
    x = draw_inputs(bundle.input_shape, 32, "normal", 7)
    with torch.no_grad():
        return psnr(bundle.model(x), qbundle.model(x))


def _input_amax(qbundle) -> dict[str, float]:
    layers = qbundle.manifest["precision"]  # the Conv/ConvTranspose/Linear layers
    found = {n: m.input_quantizer.amax for n, m in qbundle.model.named_modules() if n in layers}
    return {n: float(a) for n, a in found.items() if a is not None}


def test_max_calibration_is_faithful(tiny_dcgan):
    q = quantize(tiny_dcgan, QuantConfig(**FAST), progress=False)
    assert set(q.manifest["precision"].values()) == {"int8"}
    assert _psnr(tiny_dcgan, q) >= 30.0


def test_percentile_calibrator_clips_below_max(tiny_dcgan):
    """A histogram percentile picks amax at or under the observed max, for some layer strictly."""
    by_max = _input_amax(quantize(tiny_dcgan, QuantConfig(calibrator="max", **FAST), progress=False))
    q = quantize(tiny_dcgan, QuantConfig(calibrator="percentile", percentile=99.0, **FAST), progress=False)
    amax = _input_amax(q)
    assert set(amax) == set(by_max) and len(amax) == 4
    assert all(amax[n] <= by_max[n] * 1.01 for n in amax)
    assert any(amax[n] < by_max[n] * 0.95 for n in amax)
    assert _psnr(tiny_dcgan, q) >= 30.0


def test_mse_calibrator_searches_weight_ranges(tiny_dcgan):
    q = quantize(tiny_dcgan, QuantConfig(calibrator="mse", **FAST), progress=False)
    by_max = quantize(tiny_dcgan, QuantConfig(calibrator="max", **FAST), progress=False)
    amax = {n: m.weight_quantizer.amax for n, m in q.model.named_modules() if n in q.manifest["precision"]}
    ref = {n: m.weight_quantizer.amax for n, m in by_max.model.named_modules() if n in amax}
    assert any(not torch.equal(amax[n], ref[n]) for n in amax)  # the search moved some weight ranges
    assert q.manifest["recipe"][-1]["calibrator"] == "mse"
    assert _psnr(tiny_dcgan, q) >= 30.0


def test_unknown_calibrator_is_refused():
    with pytest.raises(GencompressError, match="unknown calibrator"):
        QuantConfig(calibrator="magic").validate()


def test_min_psnr_keeps_the_most_sensitive_layers_float(tiny_dcgan):
    plain = _psnr(tiny_dcgan, quantize(tiny_dcgan, QuantConfig(no_floor=True, **FAST), progress=False))
    budget = plain + 3.0  # unreachable with every layer INT8
    q = quantize(tiny_dcgan, QuantConfig(min_psnr=budget, **FAST), progress=False)
    search = q.manifest["recipe"][-1]["sensitivity"]
    keep = search["keep_float"]
    assert 1 <= len(keep) < 4 and search["psnr_db"] >= budget
    # the kept layers are the most sensitive ones, in order
    ranked = sorted(search["layer_psnr_db"], key=search["layer_psnr_db"].get)
    assert keep == ranked[: len(keep)]
    assert [q.manifest["precision"][n] for n in keep] == ["fp32"] * len(keep)
    # one fewer float layer would miss the budget: the mix is the fewest in that order
    probed = {t["float_layers"]: t for t in search["tried"]}
    assert probed[len(keep) - 1]["psnr_db"] < budget


def test_impossible_budget_says_the_best_reached(tiny_dcgan):
    with pytest.raises(GencompressError, match=r"no INT8 mix meets PSNR >= 900 dB vs FP32: the best reached \d+\.\d+ dB"):
        quantize(tiny_dcgan, QuantConfig(min_psnr=900, **FAST), progress=False)


def test_qat_does_not_lose_quality(tiny_dcgan):
    q = quantize(tiny_dcgan, QuantConfig(qat_steps=8, qat_batch=8, **FAST), progress=False)
    log = q.manifest["recipe"][-1]["qat"]
    assert log["steps"] == 8 and log["psnr_after_db"] >= log["psnr_before_db"] - 1.0


def test_saved_mixed_precision_bundle_restores_exactly(tiny_dcgan, tmp_path):
    q = quantize(tiny_dcgan, QuantConfig(keep_float=("0",), **FAST), progress=False).save(tmp_path / "q")
    restored = load_model(Bundle.load(tmp_path / "q"))
    x = torch.randn(4, *tiny_dcgan.input_shape)
    with torch.no_grad():
        assert torch.equal(restored(x), q.model(x))
    assert q.manifest["precision"]["0"] == "fp32" and q.manifest["precision"]["3"] == "int8"


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    """A VAE from the training stage (a few steps): its bundle carries encoder.safetensors."""
    from gencompress.loading import load_spec
    from gencompress.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("vae") / "vae"
    fit(TrainConfig(model="vae_decoder", out=str(out), max_steps=10, batch_size=32, evaluate=False,
                    samples_every_epoch=False, progress=False))
    return load_spec(str(out))


def test_vae_decoder_calibrates_on_real_data_through_its_encoder(trained_vae):
    from gencompress.compress.calibration import calibration_inputs
    from gencompress.train.datasets import load_dataset
    from gencompress.train.vae import VAEEncoder

    z, how = calibration_inputs(trained_vae, 40, seed=5)
    assert z.shape == (40, *trained_vae.input_shape) and "through the VAE encoder" in how
    again, _ = calibration_inputs(trained_vae, 40, seed=5)
    assert torch.equal(z, again)
    # the same draw by hand: 40 digits picked with the seed, encoded, z = mu + sigma * eps
    encoder = VAEEncoder(nz=trained_vae.input_shape[0])
    encoder.load_state_dict(load_safetensors(trained_vae.files["encoder.safetensors"]))
    gen = torch.Generator().manual_seed(5)
    images = load_dataset("digits").images[torch.randint(0, 1797, (40,), generator=gen)]
    with torch.no_grad():
        mu, logvar = encoder.eval()(images)
    expected = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen)
    torch.testing.assert_close(z.flatten(1), expected, rtol=0, atol=1e-6)
    latents, how = calibration_inputs(trained_vae, 40, seed=5, source="latents")
    assert "latents drawn normal" in how and not torch.equal(latents, z)
    q = quantize(trained_vae, QuantConfig(**FAST), progress=False)
    assert "through the VAE encoder" in q.manifest["recipe"][-1]["calibration_data"]
    assert _psnr(trained_vae, q) >= 30.0


def test_encoder_calibration_without_an_encoder_is_refused(tiny_dcgan):
    with pytest.raises(GencompressError, match="the bundle has no encoder.safetensors"):
        quantize(tiny_dcgan, QuantConfig(calib_from="encoder", **FAST), progress=False)
    with pytest.raises(GencompressError, match="--calib-from must be one of"):
        QuantConfig(calib_from="imagenet").validate()


def test_qat_distils_on_the_users_inputs_and_judges_on_the_held_out_ones(tiny_dcgan, monkeypatch):
    """`--data` given: QAT's batches come from the user's inputs, not from a draw of the latent prior."""
    from gencompress.compress import sensitivity
    from gencompress.inputs import UserData

    seen = {}
    real_distill = sensitivity.distill

    def spy(*args, pool=None, **kwargs):
        seen["pool"] = pool
        return real_distill(*args, pool=pool, **kwargs)

    monkeypatch.setattr(sensitivity, "distill", spy)
    gen = torch.Generator().manual_seed(3)
    data = UserData(torch.randn(16, *tiny_dcgan.input_shape, generator=gen), torch.randn(48, *tiny_dcgan.input_shape, generator=gen),
                    {"kind": "npz", "path": "x.npz", "sha256": "0" * 64})
    q = quantize(tiny_dcgan, QuantConfig(qat_steps=2, qat_batch=8, **FAST), progress=False, data=data)
    assert seen["pool"] is data.rest
    assert q.manifest["recipe"][-1]["qat"]["data"] == "the user's inputs (--data)"


def test_qat_trains_through_diffusers_attention():
    """modelopt's quantised diffusers Attention calls an export-only op with no backward; QAT must still train
    (an SD-VAE decoder's QAT failed in backward())."""
    pytest.importorskip("diffusers", reason="the diffusers decoders need the dev extra (pip install -e '.[dev]')")
    from gencompress.benchmarks import architectures as A
    from gencompress.loading import load_spec

    bundle = load_spec("gencompress.benchmarks.architectures:sd_vae_decoder_small", (1, *A.SMALL_INPUT_SHAPES["sd_vae_decoder"]))
    q = quantize(bundle, QuantConfig(qat_steps=1, qat_batch=2, calib_samples=4, calib_batch=4, eval_samples=4, no_floor=True,
                                     calibrator="max"), progress=False)
    log = q.manifest["recipe"][-1]["qat"]
    assert log["steps"] == 1 and math.isfinite(log["final_output_l1"])


class _DecoderOnly(torch.nn.Module):
    """A VAE-like wrapper whose forward runs only the decoder: the encoder's layers never see data."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 4, 3, padding=1))
        self.decoder = torch.nn.Sequential(torch.nn.Conv2d(4, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Upsample(scale_factor=2),
                                           torch.nn.Conv2d(16, 3, 3, padding=1), torch.nn.Tanh())

    def forward(self, z):
        return self.decoder(z)


def decoder_only():
    torch.manual_seed(0)
    return _DecoderOnly()


def test_layers_the_forward_never_runs_get_no_quantisers(tmp_path):
    """modelopt refused to calibrate such a model ("Calibrator returned None"): an internal error,
    exit 3, on diffusers' AutoencoderTiny wrapped to decode. Now the build runs, and the unused
    layers are not listed as layers kept float."""
    from gencompress.compress.quantize import layer_precisions, quantize_module, unused_layers
    from tests.helpers import run_cli

    model = decoder_only().eval()
    assert unused_layers(model, torch.zeros(1, 4, 8, 8)) == ("encoder.0", "encoder.1")
    qmodel = quantize_module(model, (4, 8, 8), "normal", QuantConfig(calibrator="max", calib_samples=8), progress=False)
    assert layer_precisions(qmodel) == {"decoder.0": "int8", "decoder.3": "int8"}
    result = run_cli("build", "--int8", "--model", "tests.compress.test_quantize:decoder_only", "--input-shape", "1x4x8x8",
                     "--calib-samples", "32", "--eval-samples", "16", "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    precision = Bundle.load(tmp_path / "b").manifest["precision"]
    assert not any(name.startswith("encoder") for name in precision), precision

"""Real generator layouts (issue 13) at small widths: build --int8 for gpu and cpu targets,
prune + a few distillation steps, and the export checks; plus the scale mechanics they need
(mini-batches, the rewrite check's tolerance). Full sizes live in scripts/real_architectures.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from gencompress.benchmarks import architectures as A
from gencompress.batching import batch_for, largest_activation_bytes, mini_batch
from gencompress.cli.pipeline import BuildConfig, build
from gencompress.compress import PruneConfig, prune
from gencompress.loading import load_spec
from gencompress.model_stats import count_macs
from tests.helpers import run_cli

NEEDS_DIFFUSERS = ("sd_vae_decoder", "taesd_decoder")
# Measured at these small widths (8 calibration inputs, 16 evaluation inputs): every build
# stays above these floors by at least 3 dB; a broken scale or axis lands far below 20 dB.
PSNR_FLOOR_DB = {"gpu": 25.0, "cpu": 20.0}


def spec(name: str) -> str:
    return f"gencompress.benchmarks.architectures:{name}_small"


def _maybe_skip(name: str) -> None:
    if name in NEEDS_DIFFUSERS:
        pytest.importorskip("diffusers", reason="the diffusers decoders need the dev extra (pip install -e '.[dev]')")


def _bundle(name: str):
    _maybe_skip(name)
    return load_spec(spec(name), (1, *A.SMALL_INPUT_SHAPES[name]))


@pytest.mark.parametrize("name", A.NAMES)
def test_small_builder_is_an_image_generator_with_spread(name):
    model = _bundle(name).model
    x = torch.randn(2, *A.SMALL_INPUT_SHAPES[name], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
    assert isinstance(y, torch.Tensor) and y.dim() == 4 and y.shape[:2] == (2, 3)
    # random weights scaled so the image is not a near-constant (which would make any PSNR meaningless)
    assert 0.1 < float(y.std()) < 2.0
    rebuilt = _bundle(name).model  # seeded: the import spec rebuilds the same weights
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()))


@pytest.mark.slow
@pytest.mark.parametrize("target", ["gpu", "cpu"])
@pytest.mark.parametrize("name", A.NAMES)
def test_build_int8(name, target, tmp_path):
    _maybe_skip(name)
    cfg = BuildConfig(model=spec(name), input_shape=(1, *A.SMALL_INPUT_SHAPES[name]), out=str(tmp_path / "b"), target=target,
                      calib_samples=8, eval_samples=16, latency_batches=(2,), latency_iters=3, latency_warmup=1,
                      bench_seconds=0.2, progress=False,
                      # the measured ONNX Runtime / OpenVINO choice on the hardest layout only: NNCF runs twice per choice
                      **({"cpu_runtime": "auto" if name == "sd_vae_decoder" else "onnxruntime"} if target == "cpu" else {}))
    summary = build(cfg)
    if name == "stylegan2_like":  # its fused modulated convs, rewritten to the shared-weight form (compress/modconv.py)
        rewrite = next(s for s in json.loads((tmp_path / "b" / "manifest.json").read_text())["recipe"] if s["step"] == "rewrite")
        assert [m["module"] for m in rewrite["modules"]][:2] == ["layers.0.0.conv", "layers.0.1.conv"] and len(rewrite["modules"]) == 9
    assert summary["quality"]["psnr_db"] >= PSNR_FLOOR_DB[target], summary["quality"]
    checks = summary["export_checks"]
    assert checks["onnx_checker"] == "full: passed"
    if target == "gpu":
        assert checks["qdq_lint"]["passed"], checks["qdq_lint"]
        assert checks["verification"]["passed"], checks["verification"]
    took = summary["time"]
    assert took["wall_seconds"] > 0 and "compress (int8)" in took["stages"] and "latency table" in took["stages"]
    assert sum(took["stages"].values()) <= took["wall_seconds"] + 1e-6


PRUNABLE = A.NAMES  # stylegan2_like too: its modulated convs prune in their shared-weight form


@pytest.mark.slow
@pytest.mark.parametrize("name", PRUNABLE)
def test_prune_and_distill(name):
    bundle = _bundle(name)
    pruned = prune(bundle, PruneConfig(ratio=0.5, distill_steps=3, distill_batch=4), progress=False)
    before, after = count_macs(bundle.model, bundle.input_shape), count_macs(pruned.model, pruned.input_shape)
    assert after < 0.8 * before, (before, after)
    x = torch.randn(2, *bundle.input_shape)
    with torch.no_grad():
        assert pruned.model(x).shape == bundle.model(x).shape


def test_a_per_sample_conv_no_rewrite_recognises_is_refused_by_name_in_one_line(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # test_modconv.py holds the model
    result = run_cli("build", "--model", "test_modconv:hypernet", "--input-shape", "1x8", "--prune", "0.5", "--distill-steps", "0",
                     "--out", tmp_path / "p")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "cannot prune 0 (Hypernet)" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p").exists()


def test_mini_batch_follows_the_largest_activation():
    wide = nn.Sequential(nn.Conv2d(4, 64, 3, padding=1), nn.Upsample(scale_factor=8), nn.Conv2d(64, 3, 3, padding=1))
    per_sample = largest_activation_bytes(wide, (4, 32, 32))
    assert per_sample == 64 * 256 * 256 * 4  # the upsampled 64-channel map
    assert mini_batch(wide, (4, 32, 32)) == 4  # 64 MiB budget / 16 MiB per sample
    assert mini_batch(nn.Conv2d(4, 3, 1), (4, 8, 8)) == 32  # tiny models keep the old batch of 32
    assert batch_for(10**12) == 1 and batch_for(0) == 32


def test_rewrite_check_is_relative_to_the_output_scale():
    """A nearest-2x + 3x3 conv decoder with outputs in the thousands: the sub-pixel rewrite differs
    by float rounding only, which an absolute 1e-5 bound called 'not exact'."""
    from gencompress.compress.rewrite import cpu_integer_ready

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 64, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2), nn.Conv2d(64, 64, 3, padding=1),
                          nn.ReLU(), nn.Upsample(scale_factor=2), nn.Conv2d(64, 3, 3, padding=1))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(20.0)
    x = torch.randn(4, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert model(x).abs().max() > 1e3
    rewritten, info = cpu_integer_ready(model, (4, 16, 16))
    assert len(info["upsample_convs_rewritten"]) == 2
    with torch.no_grad():
        ref = model(x)
        assert (ref - rewritten(x)).abs().max() <= 1e-5 * ref.abs().max()

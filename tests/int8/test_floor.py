"""The INT8 quality floor (issue 14): by default, on both targets; --min-psnr honoured on
--target cpu; bad budgets and calibrators refused in one line; never a broken bundle."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gencompress.errors import GencompressError
from gencompress.export.int8_cpu import layer_groups, search_cpu_int8
from gencompress.export.onnx_export import OnnxConfig, export_module
from gencompress.export.onnx_quant import prepare_for_quantization
from gencompress.export.runners import OrtRunner, SessionFromOnnx
from gencompress.floor import DEFAULT_MIN_PSNR, DEFAULT_MIN_SSIM, QualityFloor, quality_floor
from gencompress.metrics import psnr, ssim
from tests.helpers import run_cli

HERE = Path(__file__).parent


@pytest.fixture
def decoders_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    sys.modules.pop("decoders", None)


def _one_line_exit_2(result, match: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], result.stderr


def test_default_floor_and_its_options():
    floor = quality_floor()
    assert (floor.min_psnr, floor.min_ssim, floor.default) == (DEFAULT_MIN_PSNR, DEFAULT_MIN_SSIM, True)
    assert quality_floor(40.0) == QualityFloor(40.0) and quality_floor(no_floor=True) is None
    with pytest.raises(GencompressError, match="contradict"):
        quality_floor(40.0, no_floor=True)
    with pytest.raises(GencompressError, match="positive number of dB"):
        quality_floor(-3.0)
    ref = np.random.default_rng(0).uniform(-1, 1, (2, 3, 16, 16))
    noisy = ref + np.random.default_rng(1).normal(0, 0.05, ref.shape)  # ~32 dB: under 35
    scores = floor.measure(ref, noisy)
    assert scores["psnr_db"] == pytest.approx(psnr(ref, noisy)) and scores["ssim"] == pytest.approx(ssim(ref, noisy))
    assert not scores["meets_floor"] and QualityFloor(30.0).measure(ref, noisy)["meets_floor"]


@pytest.mark.slow
def test_taesd_like_decoder_on_cpu_meets_the_floor_or_writes_nothing(decoders_importable, tmp_path):
    """The issue's case: a TAESD-like decoder (wide activations) that ONNX Runtime's plain
    quantize_static breaks. `build --target cpu` must meet the default floor or exit 2."""
    import decoders
    from onnxruntime.quantization import quantize_static

    from gencompress.export.onnx_quant import _Reader

    model = decoders.taesd_like()
    fp32 = export_module(model, (4, 16, 16), tmp_path / "fp32.onnx", OnnxConfig())
    z = torch.randn(32, 4, 16, 16, generator=torch.Generator().manual_seed(5)).numpy()
    quantize_static(str(fp32), str(tmp_path / "plain.onnx"), _Reader("latent", z[:16], 16))  # the plain way
    with torch.no_grad():
        reference = model(torch.from_numpy(z[16:])).numpy()
    assert psnr(reference, OrtRunner(SessionFromOnnx(tmp_path / "plain.onnx", 2)).infer(z[16:])) < DEFAULT_MIN_PSNR  # the case is real

    # The build's Python API (16 evaluation inputs instead of the CLI's 64: seconds, not minutes).
    from gencompress.cli.pipeline import BuildConfig, build

    out = tmp_path / "out"
    cfg = BuildConfig(model="decoders:taesd_like", input_shape=(1, 4, 16, 16), out=str(out), target="cpu", calib_samples=32,
                      eval_samples=16, latency_batches=(1,), latency_iters=2, latency_warmup=1, progress=False,
                      cpu_runtime="onnxruntime")  # the floor is this test's subject; the runtime choice is test_openvino's
    try:
        summary = build(cfg)
    except GencompressError as exc:
        assert str(exc).startswith("no INT8 mix meets PSNR >= 35 dB and SSIM >= 0.97") and "the best reached" in str(exc)
        assert "\n" not in str(exc) and not out.exists()
        return
    assert summary["quality"]["meets_floor"]
    got = OrtRunner(SessionFromOnnx(out / "model.onnx", 2)).infer(z[16:])  # our own check, on inputs the build never saw
    assert psnr(reference, got) >= DEFAULT_MIN_PSNR - 1.0 and ssim(reference, got) >= DEFAULT_MIN_SSIM - 0.01


@pytest.fixture
def prepared_upsample(tmp_path):
    """The tiny upsample+conv generator's float graph (random init), ready for the CPU search."""
    from gencompress import zoo
    from gencompress.train.pretrained import zoo_bundle

    torch.manual_seed(0)
    bundle = zoo_bundle("upsample_conv", zoo.build("upsample_conv", nz=16, ngf=16).eval(), nz=16, ngf=16)
    fp32 = export_module(bundle.model, bundle.input_shape, tmp_path / "fp32.onnx", OnnxConfig())
    prepared = prepare_for_quantization(fp32, tmp_path / "prep.onnx")
    gen = torch.Generator()
    calib = torch.randn(32, *bundle.input_shape, generator=gen.manual_seed(1)).numpy()
    held = torch.randn(16, *bundle.input_shape, generator=gen.manual_seed(2)).numpy()
    return prepared, calib, held


def test_cpu_min_psnr_keeps_the_most_sensitive_layers_float(prepared_upsample, tmp_path):
    prepared, calib, held = prepared_upsample
    _, plain = search_cpu_int8(prepared, tmp_path, calib, held, None, "max", progress=False)
    budget = plain["psnr_db"] + 6.0  # unreachable with every layer integer
    path, record = search_cpu_int8(prepared, tmp_path, calib, held, QualityFloor(budget), "max", progress=False)
    keep = record["keep_float"]
    assert 1 <= len(keep) < len(layer_groups(prepared)) and record["psnr_db"] >= budget
    assert keep == sorted(record["layer_psnr_db"], key=record["layer_psnr_db"].get)[: len(keep)]  # most sensitive first
    probed = {t["float_layers"]: t for t in record["tried"]}
    assert probed[len(keep) - 1]["psnr_db"] < budget  # one fewer float layer misses: the fewest in that order
    # the written graph is the one scored: its float layers are plain Convs, the rest integer
    reference = OrtRunner(SessionFromOnnx(prepared, 2)).infer(held)
    assert psnr(reference, OrtRunner(SessionFromOnnx(path, 2)).infer(held)) == pytest.approx(record["psnr_db"], abs=1e-6)
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert sum(ops.count(op) for op in ("Conv", "MatMul", "Gemm")) == len(keep) and ops.count("QLinearConv") >= 1


def test_cpu_calibrator_choice_scores_each_and_keeps_the_best(prepared_upsample, tmp_path):
    prepared, calib, held = prepared_upsample
    _, record = search_cpu_int8(prepared, tmp_path, calib, held, QualityFloor(20.0), "auto", progress=False)
    scores = record["calibrators"]["scores"]
    assert set(scores) == {"max", "entropy", "percentile"}
    assert record["calibrators"]["chosen"] == max(scores, key=lambda k: scores[k]["psnr_db"])


def test_cpu_unreachable_budget_says_the_best_reached(prepared_upsample, tmp_path):
    prepared, calib, held = prepared_upsample
    with pytest.raises(GencompressError, match=r"no INT8 mix meets PSNR >= 300 dB vs FP32: the best reached \d+\.\d+ dB"):
        search_cpu_int8(prepared, tmp_path, calib, held, QualityFloor(300.0), "max", progress=False)


@pytest.mark.parametrize("args, match", [
    (["--min-psnr", "200"], "is above what the FP32 model itself reaches on ONNX Runtime"),
    (["--calibrator", "magic"], "Invalid value for '--calibrator'"),
    (["--target", "cpu", "--calibrator", "mse"], "calibrator 'mse' is not available for --target cpu"),
    (["--min-psnr", "30", "--no-quality-floor"], "contradict"),
])
def test_bad_budgets_and_calibrators_are_one_line_exit_2_and_write_nothing(args, match, tmp_path):
    out = tmp_path / "out"
    result = run_cli("build", "--precision", "int8", "--model", "upsample_conv", "--random-init", *args, "--calib-samples", "8", "--out", out)
    _one_line_exit_2(result, match)
    assert not out.exists()


def test_per_node_profile_is_attributed_to_layers_in_both_forms(prepared_upsample, tmp_path):
    """ONNX Runtime renames what it fuses; every integer layer still gets its own time."""
    from gencompress.export.int8_cpu import layer_times, node_times

    prepared, calib, held = prepared_upsample
    path, _ = search_cpu_int8(prepared, tmp_path, calib, held, None, "max", progress=False)
    groups = layer_groups(prepared)
    int8_times = node_times(path, held[:4], 2, runs=3)
    int8_us = layer_times(int8_times, prepared, groups)
    assert set(int8_us) == set(groups) and all(v > 0 for v in int8_us.values())
    assert sum(int8_us.values()) <= sum(int8_times.values())
    float_us = layer_times(node_times(prepared, held[:4], 2, runs=3), prepared, groups)
    assert sum(v > 0 for v in float_us.values()) >= len(groups) - 1  # a conv fused with the final Tanh may go unnamed


def test_layers_not_faster_in_int8_are_picked_and_unmeasured_ones_are_not():
    from gencompress.export.int8_cpu import slower_in_int8

    assert slower_in_int8({"a": 10.0, "b": 10.0, "c": 0.0, "d": 5.0}, {"a": 4.0, "b": 10.0, "c": 3.0, "d": 7.0}) == ["b", "d"]

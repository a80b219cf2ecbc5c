"""`--target cpu` at real size (issue 13): calibration holds one batch of activations at a
time, the histogram calibrators read fewer inputs on big models, the OpenVINO Q/DQ twin
reuses the searched quantisation instead of calibrating again, and the exact-rewrite check
runs once."""
from __future__ import annotations

import json

import onnx
import pytest
import torch
from onnxruntime.quantization import calibrate
from torch import nn

from gencompress import defaults
from gencompress.cli.pipeline import BuildConfig, sample_counts
from gencompress.compress import rewrite
from gencompress.errors import GencompressError
from gencompress.export.int8_cpu import requantize, search_cpu_int8
from gencompress.export.onnx_export import OnnxConfig, export_module
from gencompress.export.onnx_quant import prepare_for_quantization, quantize_prepared
from gencompress.export.runners import OrtRunner, SessionFromOnnx
from gencompress.floor import QualityFloor
from gencompress.metrics import psnr


class _Calls:
    """How many batches each calibrator.collect_data call read from gencompress's reader."""

    def __init__(self, monkeypatch):
        self.batches: list[int] = []
        for cls in (calibrate.MinMaxCalibrater, calibrate.HistogramCalibrater):
            original = cls.collect_data

            def spy(calibrator, reader, original=original):
                before = reader.read
                original(calibrator, reader)
                self.batches.append(reader.read - before)

            monkeypatch.setattr(cls, "collect_data", spy)


@pytest.fixture
def prepared(tmp_path):
    from gencompress import zoo
    from gencompress.train.pretrained import zoo_bundle

    torch.manual_seed(0)
    bundle = zoo_bundle("upsample_conv", zoo.build("upsample_conv", nz=16, ngf=16).eval(), nz=16, ngf=16)
    fp32 = export_module(bundle.model, bundle.input_shape, tmp_path / "fp32.onnx", OnnxConfig())
    gen = torch.Generator()
    calib = torch.randn(24, *bundle.input_shape, generator=gen.manual_seed(1)).numpy()
    held = torch.randn(16, *bundle.input_shape, generator=gen.manual_seed(2)).numpy()
    return prepare_for_quantization(fp32, tmp_path / "prep.onnx"), calib, held


@pytest.mark.parametrize("calibrator", ["max", "entropy", "percentile"])
def test_calibration_reads_one_batch_per_collect_call(prepared, tmp_path, monkeypatch, calibrator):
    """quantize_static's calibrators keep every batch's activations until the reader is
    drained: a 256-px decoder on 56 inputs asked for tens of GB. One batch per call."""
    path, calib, _ = prepared
    calls = _Calls(monkeypatch)
    quantize_prepared(path, tmp_path / "q.onnx", calib, calibrator=calibrator, batch=4)
    assert calls.batches == [1] * 6


def test_one_batch_at_a_time_gives_max_the_same_ranges_as_one_pass(prepared, tmp_path):
    """Min/max reduce exactly batch by batch: the strided ranges equal one pass over all inputs."""
    from onnxruntime.quantization import quantize_static

    from gencompress.export.onnx_quant import _Reader, cpu_options

    path, calib, _ = prepared
    quantize_prepared(path, tmp_path / "strided.onnx", calib, calibrator="max", cache=tmp_path / "strided.json", batch=4)
    options = cpu_options("qoperator", "max")
    options["extra_options"] = {k: v for k, v in options["extra_options"].items() if k != "CalibStridedMinMax"}
    reader = _Reader(OrtRunner(SessionFromOnnx(path, 1)).session.get_inputs()[0].name, calib, 4)
    reader.set_range(0, len(reader))
    quantize_static(str(path), str(tmp_path / "whole.onnx"), reader, calibration_cache_path=tmp_path / "whole.json", **options)
    strided, whole = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("strided", "whole"))
    assert strided == whole


def test_histogram_calibrators_read_the_first_inputs_that_fit_their_budget(prepared, tmp_path, monkeypatch):
    path, calib, held = prepared
    calls = _Calls(monkeypatch)
    _, record = search_cpu_int8(path, tmp_path, calib, held, None, "auto", progress=False, batch=4, histogram_samples=8)
    assert record["calibrators"]["calibration_inputs"] == {"max": 24, "entropy": 8, "percentile": 8}
    assert sorted(calls.batches) == [1] * 4 + [1] * 6  # 2 + 2 histogram batches, 6 MinMax batches
    # sized by the model's cost: a TAESD decoder's histogram set is the minimum, a digits model's is all its inputs
    taesd, digits = sample_counts(BuildConfig(), 17.67), sample_counts(BuildConfig(), 0.004)
    assert taesd.histogram_samples == defaults.HISTOGRAM_MIN_SAMPLES < taesd.calib_samples
    assert digits.histogram_samples == digits.calib_samples == defaults.CALIB_SAMPLES


def test_the_qdq_twin_is_the_searched_quantisation_without_a_second_calibration(prepared, tmp_path, monkeypatch):
    path, calib, held = prepared
    (tmp_path / "plain").mkdir()
    _, plain = search_cpu_int8(path, tmp_path / "plain", calib, held, None, "max", progress=False)
    budget = plain["psnr_db"] + 6.0  # some layers must stay float
    searched, record = search_cpu_int8(path, tmp_path, calib, held, QualityFloor(budget), "max", progress=False)
    assert record["float_nodes"] and set(record["keep_float"]) <= set(record["float_nodes"])
    calls = _Calls(monkeypatch)
    twin = requantize(path, tmp_path, "max", record["float_nodes"], tmp_path / "twin.onnx", "qdq")
    assert calls.batches == []  # the cached ranges, no calibration pass
    reference = OrtRunner(SessionFromOnnx(path, 2)).infer(held)
    assert psnr(reference, OrtRunner(SessionFromOnnx(twin, 2)).infer(held)) == pytest.approx(record["psnr_db"], abs=0.5)
    graph = onnx.load(str(twin)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = {n.name: n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
    for name in record["float_nodes"]:
        if name in convs:  # a float layer reads float weights, not dequantised INT8 ones
            assert convs[name].input[1] not in dequantized, name
    assert any(n.input[1] in dequantized for n in convs.values())  # the rest is INT8


def test_requantize_without_the_search_is_a_named_error(prepared, tmp_path):
    path, _, _ = prepared
    with pytest.raises(GencompressError, match="no cached max ranges"):
        requantize(path, tmp_path, "max", [], tmp_path / "twin.onnx", "qdq")


class _UpsampleThenConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.Upsample(scale_factor=2), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x):
        return self.body(x)


def test_the_rewrite_is_verified_once_and_not_at_all_when_nothing_changed(monkeypatch):
    calls = []
    original = rewrite._verify
    monkeypatch.setattr(rewrite, "_verify", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    _, info = rewrite.cpu_integer_ready(_UpsampleThenConv().eval(), (4, 6, 6))
    assert info["upsample_convs_rewritten"] and len(calls) == 1
    calls.clear()
    rewrite.cpu_integer_ready(nn.Sequential(nn.Conv2d(4, 3, 3, padding=1)).eval(), (4, 6, 6))
    assert calls == []


def test_a_rewrite_that_is_not_exact_is_still_refused(monkeypatch):
    exact = rewrite.UpsampleConvAsSubPixel

    def wrong(conv, hw):  # a rewrite with every weight off by 1%
        replaced = exact(conv, hw)
        with torch.no_grad():
            for p in replaced.parameters():
                p.mul_(1.01)
        return replaced

    monkeypatch.setattr(rewrite, "UpsampleConvAsSubPixel", wrong)
    with pytest.raises(GencompressError, match="is not exact"):
        rewrite.cpu_integer_ready(_UpsampleThenConv().eval(), (4, 6, 6))


def test_calibration_batch_bounds_all_of_one_batchs_activations(tmp_path, monkeypatch):
    """ORT calibration makes every activation an output: the batch is sized by their sum."""
    from gencompress import batching
    from gencompress.export.onnx_quant import activation_bytes_per_sample, calibration_batch

    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1)).eval()
    path = prepare_for_quantization(export_module(model, (4, 6, 6), tmp_path / "m.onnx", OnnxConfig()), tmp_path / "p.onnx")
    per_sample = activation_bytes_per_sample(path)
    assert per_sample == 4 * (8 * 36 + 8 * 36 + 2 * 36)  # conv, relu, output
    monkeypatch.setattr(batching, "CALIBRATION_BUDGET_MB", 3.5 * per_sample / 2**20)
    assert calibration_batch(path, 32) == 3 and calibration_batch(path, 2) == 2
    monkeypatch.setattr(batching, "CALIBRATION_BUDGET_MB", 0.1 * per_sample / 2**20)
    assert calibration_batch(path, 32) == 1  # never below one

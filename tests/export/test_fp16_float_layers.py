"""gpu/Jetson INT8: the layers a Q/DQ graph keeps float compute in FP16 (TensorRT's strongly typed
mixed INT8/FP16 form) where the floor holds, checked with ONNX Runtime (issue 25)."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from gencompress.bundle import Bundle
from gencompress.export.onnx_quant import FP16_QDQ_OPSET, convert_fp16
from gencompress.export.qdq_lint import lint
from gencompress.metrics import psnr
from gencompress.onnx_utils import float_compute
from tests.helpers import run_cli

from .qdq_graphs import qdq_conv

FAST = ["--calib-samples", "32", "--eval-samples", "16"]


def test_convert_fp16_keeps_int8_layers_int8_and_the_rest_fp16(tmp_path):
    src = tmp_path / "qdq.onnx"
    onnx.save(qdq_conv(), str(src))
    dst = convert_fp16(src, tmp_path / "fp16.onnx")
    model = onnx.load(str(dst))
    assert model.opset_import[0].version >= FP16_QDQ_OPSET  # Q/DQ take FP16 scales from opset 19
    floats = {i.name: i.data_type for i in model.graph.initializer if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)}
    assert floats and set(floats.values()) == {onnx.TensorProto.FLOAT16}  # weights and scales
    assert [i.type.tensor_type.elem_type for i in (*model.graph.input, *model.graph.output)] == [onnx.TensorProto.FLOAT] * 2
    report = lint(model)
    assert report.passed and report.quantised_ops == ["layer"]  # the DQs feed the conv directly
    assert float_compute(dst) == "fp16" and float_compute(src) == "fp32"
    x = np.random.default_rng(0).uniform(-3, 3, (2, 4, 8, 8)).astype(np.float32)
    want, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0] for p in (src, dst))
    assert got.dtype == np.float32
    # the same INT8 arithmetic, but FP16 rounds the conv's output (3 significant digits) and, before
    # QuantizeLinear, the input, which flips a few INT8 codes by one step
    assert psnr(want, got, data_range=float(want.max() - want.min())) >= 50.0


GENERATORS = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Gen(nn.Module):
        def __init__(self, gain):
            super().__init__()
            torch.manual_seed(0)
            self.up, self.out, self.gain = nn.ConvTranspose2d(16, 8, 4, 1, 0), nn.ConvTranspose2d(8, 3, 4, 2, 1), gain
            with torch.no_grad():
                self.up.weight.mul_(gain), self.up.bias.mul_(gain)

        def forward(self, z):
            # gain 1e5: the last conv's outputs lie far beyond FP16's largest value (65504); the image is in range
            return self.out(torch.relu(self.up(z))) / self.gain

    class Cancel(Gen):
        def forward(self, z):
            y = torch.tanh(self.out(torch.relu(self.up(z))))
            big = z.mean(1, keepdim=True) * 0 + 2000.0  # added and taken away: FP16's step at 2000 is 1, so y is lost
            return (y + big) - big

    class Scatter(Gen):
        def forward(self, z):
            h = torch.relu(self.up(z))
            idx = torch.arange(8).view(1, 8, 1, 1).expand_as(h).flip(1)
            return torch.tanh(self.out(torch.zeros_like(h).scatter_add(1, idx, h)))  # FP16 ScatterElements(add): no CPU kernel

    def quiet():
        return Gen(1.0)

    def loud():
        return Gen(1e5)

    def cancel():
        return Cancel(1.0)

    def scatter():
        return Scatter(1.0)
    """
)


@pytest.fixture
def generators(tmp_path, monkeypatch):
    (tmp_path / "fp16_gens.py").write_text(GENERATORS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _build(name: str, out: str, *extra: str) -> dict:
    result = run_cli("build", "--int8", "--model", f"fp16_gens:{name}", "--input-shape", "1x16x1x1", "--out", out, "--json", "-", *FAST, *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_gpu_build_ships_fp16_float_layers_and_export_keeps_them(generators):
    summary = _build("quiet", "q")
    assert summary["float_layers"]["precision"] == "fp16" and summary["quality"]["meets_floor"]
    assert summary["quality"]["psnr_db"] == pytest.approx(summary["float_layers"]["psnr_db"], abs=1e-9)  # the gate judged this graph
    bundle = Bundle.load(generators / "q")
    assert float_compute(bundle.file("model.onnx")) == "fp16"
    assert bundle.last_step("convert", having="float_layers")["float_layers"] == "fp16"
    assert "everything outside the INT8 layers in FP16" in (generators / "q" / "report" / "report.md").read_text()
    # a strongly typed Jetson target builds from the graph's own types: its scripts say FP16, and a re-export keeps it
    result = run_cli("export", generators / "q", "--target", "jetson-thor", "--out", generators / "thor")
    assert result.exit_code == 0, result.output
    assert float_compute(generators / "thor" / "model.onnx") == "fp16"
    assert "layers without Q/DQ build in FP16" in (generators / "thor" / "README.md").read_text()


def test_float_layers_stay_fp32_where_fp16_breaks_the_floor(generators):
    summary = _build("loud", "l")
    assert summary["float_layers"]["precision"] == "fp32" and summary["quality"]["meets_floor"]
    assert summary["float_layers"]["meets_floor"] is False  # FP16 saturates the last conv's outputs
    assert float_compute(generators / "l" / "model.onnx") == "fp32"
    assert Bundle.load(generators / "l").last_step("convert", having="float_layers") is None
    assert summary["float_layers"]["why"] in (generators / "l" / "report" / "report.md").read_text()
    assert summary["float_layers"]["why"].startswith("the layers kept float stay FP32: ")


def test_fp16_storage_is_judged_where_onnx_runtime_computes_fp16_ops_in_fp32(generators):
    """ONNX Runtime's CPU provider runs the converted graph's Add/Sub in FP32 behind its own Casts,
    so (y + 2000) - 2000 looks lossless there; with every tensor stored FP16, as TensorRT stores
    it, y is gone. The build judges the emulated storage too and keeps FP32."""
    summary = _build("cancel", "c")
    record = summary["float_layers"]
    assert record["precision"] == "fp32" and "with FP16 storage emulated" in record["why"]
    assert record["meets_floor"] is True and record["fp16_storage"]["meets_floor"] is False
    assert float_compute(generators / "c" / "model.onnx") == "fp32"


def test_without_a_floor_fp16_may_not_cost_more_than_half_a_db(generators):
    summary = _build("cancel", "nf", "--no-quality-floor")
    record = summary["float_layers"]
    assert record["precision"] == "fp32" and "no floor: at most 0.5 dB" in record["why"]
    assert summary["quality"]["psnr_db"] == pytest.approx(record["fp32_float_psnr_db"], abs=1e-9)  # the FP32-float graph shipped
    quiet = _build("quiet", "nfq", "--no-quality-floor")
    assert quiet["float_layers"]["precision"] == "fp16"


def test_a_graph_onnx_runtime_cannot_run_in_fp16_ships_fp32_float_layers(generators):
    summary = _build("scatter", "s")
    assert summary["float_layers"]["precision"] == "fp32" and "could not be made or run" in summary["float_layers"]["why"]
    assert summary["quality"]["meets_floor"] and float_compute(generators / "s" / "model.onnx") == "fp32"


def test_a_requantised_bundle_does_not_reuse_the_builds_fp16_decision(generators):
    from gencompress.export.stage import has_fp16_float_layers

    _build("quiet", "q2")
    bundle = Bundle.load(generators / "q2")
    assert has_fp16_float_layers(bundle)
    bundle.manifest["recipe"].append({"step": "quantize", "tool": "nvidia-modelopt"})  # `gencompress quantize` on it again
    assert not has_fp16_float_layers(bundle)

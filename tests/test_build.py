"""`gencompress build` end to end through the CLI, and its bad inputs (issue 3)."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import onnx
import pytest
import torch

from gencompress import zoo
from gencompress.benchmarks.report import ORT_RUNTIME_TEXT
from gencompress.bundle import Bundle
from gencompress.compress import restore_quantized
from tests.helpers import run_cli, tree_digest

FAST = ["--calib-samples", "32"]


def _summary(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_default_build_int8_meets_30db_and_reports_everything(trained_dcgan, tmp_path):
    out = tmp_path / "b"
    summary = _summary(run_cli("build", "--precision", "int8", "--out", out, "--json", "-"))
    assert summary["model"] == "dcgan (trained on digits)"
    assert summary["quality"]["psnr_db"] >= 30.0
    assert summary["quality"]["max_abs_error"] < 0.5
    for name in ("manifest.json", "weights.safetensors", "model.onnx", "report/report.md", "report/samples.png"):
        assert (out / name).is_file(), name
    bundle = Bundle.load(out)  # hashes verify
    assert "source.onnx" not in bundle.manifest["files"]  # the FP32 graph the build judged against stays in its work folder
    assert bundle.manifest["precision"] == {"0": "int8", "3": "int8", "6": "int8", "9": "int8"}
    quant_step = [s for s in bundle.manifest["recipe"] if s["step"] == "quantize"][0]
    assert quant_step["deconv_weight_axis"] == 1
    # latency: 3 backends x 2 batch sizes, each with median <= p90 <= p99
    rows = summary["latency"]
    assert {(r["backend"], r["precision"], r["batch"]) for r in rows} == {
        (b, p, n) for b, p in [("torch eager", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")] for n in (1, 8)
    }
    assert all(0 < r["median_ms"] <= r["p90_ms"] <= r["p99_ms"] for r in rows)
    fp32_ms = {r["batch"]: r["median_ms"] for r in rows if r["backend"] == "onnxruntime" and r["precision"] == "fp32"}
    for r in rows:  # each row's speed is the FP32 ONNX median at its batch over its own
        assert r["speedup_vs_fp32_onnx"] == pytest.approx(fp32_ms[r["batch"]] / r["median_ms"], rel=1e-9)
    assert summary["macs"] == 4_530_176 and summary["params"] == 369_600
    assert summary["conditions"]["threads"] == 2 and "onnxruntime" in summary["conditions"]["versions"]
    report = (out / "report" / "report.md").read_text()
    assert f"{summary['quality']['psnr_db']:.3f}" in report and "p90 ms" in report and "| 9 | int8 |" in report
    assert "speed vs FP32 ONNX" in report and "| onnxruntime | fp32 | 8 |" in report


@pytest.mark.slow
def test_saved_int8_bundle_reloads_to_the_same_fake_quant_model(trained_dcgan, tmp_path):
    out = tmp_path / "b"
    _summary(run_cli("build", "--precision", "int8", "--out", out, "--json", "-", *FAST))
    model = restore_quantized(Bundle.load(out))
    import onnxruntime as ort

    z = torch.randn(8, 100, 1, 1, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch_out = model(z).numpy()
    from gencompress.export.onnx_export import OnnxConfig, export_module
    from gencompress.metrics import psnr

    # the restored model's own Q/DQ export: same graph, two runtimes, only rare rounding flips at INT8 step boundaries
    fp32_float = export_module(model, (100, 1, 1), tmp_path / "restored.onnx", OnnxConfig())
    onnx_out = ort.InferenceSession(str(fp32_float)).run(None, {"latent": z.numpy()})[0]
    assert psnr(torch_out, onnx_out) >= 60.0
    assert np.abs(torch_out - onnx_out).max() < 5e-3
    # the bundle's graph computes outside its INT8 layers in FP16 (3 significant digits): close, not equal
    shipped = ort.InferenceSession(str(out / "model.onnx")).run(None, {"latent": z.numpy()})[0]
    assert Bundle.load(out).last_step("convert", having="float_layers")["float_layers"] == "fp16"
    assert psnr(torch_out, shipped) >= 45.0


def _qdq_nodes(path):
    graph = onnx.load(str(path)).graph
    return [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


@pytest.mark.slow
def test_upsample_conv_builds_with_symmetric_qdq(tmp_path):
    out = tmp_path / "c"
    summary = _summary(run_cli("build", "--precision", "int8", "--model", "upsample_conv", "--random-init", "--out", out, "--json", "-", *FAST))
    assert summary["quality"]["psnr_db"] > 20.0  # random init: a looser bound than the trained default
    model = onnx.load(str(out / "model.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node if n.op_type == "Constant"}
    values = {**inits, **consts}
    nodes = _qdq_nodes(out / "model.onnx")
    assert len(nodes) >= 10
    for node in nodes:
        zero_point = values[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name  # symmetric INT8
    assert model.opset_import[0].version >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["upsample_conv", "vae_decoder"])
def test_cpu_target_builds_integer_convs_and_reports_the_speed_against_fp32(name, tmp_path):
    """`--target cpu`: every conv a QLinearConv (deconvolutions and nearest upsampling
    rewritten away), the form named in the report, each latency row's speed against FP32."""
    out = tmp_path / "cpu"
    # ONNX Runtime's form is what this test reads; the measured choice against OpenVINO is tests/export/test_openvino.py's
    summary = _summary(run_cli("build", "--precision", "int8", "--target", "cpu", "--cpu-runtime", "onnxruntime", "--model", name, "--random-init",
                               "--out", out, "--json", "-", *FAST))
    assert "ONNX Runtime CPU integer form" in summary["quant_form"] and summary["engine"]["built"] is False
    assert summary["quality"]["psnr_db"] >= 30.0
    ops = [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node]
    assert "QLinearConv" in ops and not {"ConvTranspose", "Resize"} & set(ops)
    # float layers only where the search left them (for quality, or INT8 not faster on this CPU)
    assert sum(ops.count(op) for op in ("Conv", "MatMul", "Gemm")) == len(summary["sensitivity"]["keep_float"])
    int8_rows = [r for r in summary["latency"] if r["precision"] == "int8"]
    assert {r["batch"] for r in int8_rows} == {1, 8} and all(r["speedup_vs_fp32_onnx"] > 0 for r in int8_rows)
    saved = Bundle.load(out)
    assert "source.onnx" not in saved.manifest["files"]
    step = [s for s in saved.manifest["recipe"] if s["step"] == "quantize"][-1]
    assert step["calibration_data"].startswith("32 latents drawn normal")
    paired = summary["paired_speedup"]  # interleaved in a child process: the ratio to quote
    assert paired["batch"] == 8 and paired["speedup_vs_fp32_onnx"] > 0 and set(paired["median_ms"]) == {"fp32", "int8"}
    report = (out / "report" / "report.md").read_text()
    assert "ONNX Runtime CPU integer form" in report and f"**{paired['speedup_vs_fp32_onnx']:.2f}x**" in report


@pytest.mark.slow
def test_min_psnr_build_keeps_the_most_sensitive_layers_float_and_reports_them(trained_dcgan, tmp_path):
    out = tmp_path / "mp"
    summary = _summary(run_cli("build", "--precision", "int8", "--min-psnr", "47", "--out", out, "--json", "-", *FAST))
    search = summary["sensitivity"]
    assert search["budget_db"] == 47.0 and search["psnr_db"] >= 47.0
    floats = {k for k, v in summary["layer_precision"].items() if v != "int8"}
    assert floats == set(search["keep_float"])
    # in FP16 where the build's gate measured the floor holding so (export.precision.fp16_float_layers), else FP32
    assert {summary["layer_precision"][k] for k in floats} == {summary["float_layers"]["precision"]}
    by_fragility = sorted(search["layer_psnr_db"], key=search["layer_psnr_db"].get)
    assert floats == set(by_fragility[: len(floats)])  # the most sensitive ones, and only as many as needed
    # the fewest that clear the search's aim (the floor plus its margin), else the floor itself
    tried = {t["float_layers"]: t["psnr_db"] for t in search["tried"]}
    aim = search["budget_db"] + search["search_margin_db"]
    bar = aim if tried[len(floats)] >= aim else search["budget_db"]
    assert all(db < bar for k, db in tried.items() if k < len(floats))
    assert len(floats) == 0 or len(floats) - 1 in tried  # one fewer float layer was tried and missed
    report = (out / "report" / "report.md").read_text()
    assert "PSNR with only this layer INT8 (dB)" in report and f"Budget 47 dB: {search['psnr_db']:.2f} dB" in report


def test_external_generator_by_import_spec(tmp_path, monkeypatch):
    (tmp_path / "my_ext_gen.py").write_text(textwrap.dedent(
        """
        import torch
        from torch import nn

        def make():
            torch.manual_seed(0)
            return nn.Sequential(nn.ConvTranspose2d(16, 8, 4, 1, 0), nn.ReLU(), nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Tanh())
        """
    ))
    monkeypatch.chdir(tmp_path)
    summary = _summary(run_cli("build", "--precision", "int8", "--model", "my_ext_gen:make", "--input-shape", "1x16x1x1", "--out", "ext", "--json", "-", *FAST))
    assert summary["quality"]["psnr_db"] >= 30.0
    manifest = Bundle.load(tmp_path / "ext").manifest
    assert manifest["architecture"] == {"kind": "import", "spec": "my_ext_gen:make"}
    assert manifest["output"]["shape"] == [3, 8, 8]


def test_torchscript_and_onnx_files_take_the_onnx_level_path(tmp_path):
    torch.manual_seed(0)
    model = zoo.build("dcgan").eval()
    ts = tmp_path / "gen.pt"
    torch.jit.trace(model, torch.randn(1, 100, 1, 1)).save(str(ts))
    s1 = _summary(run_cli("build", "--precision", "int8", "--model", ts, "--input-shape", "1x100x1x1", "--out", tmp_path / "t", "--json", "-", *FAST))
    assert "quantize_static" in s1["quant_form"] and s1["quality"]["psnr_db"] > 25.0
    onnx_file = tmp_path / "t-fp32.onnx"
    from gencompress.export.onnx_export import OnnxConfig, export_module

    export_module(model, (100, 1, 1), onnx_file, OnnxConfig())
    s2 = _summary(run_cli("build", "--precision", "int8", "--model", onnx_file, "--out", tmp_path / "o", "--json", "-", *FAST))
    assert s2["quality"]["reference"].startswith("FP32 ONNX") and s2["quality"]["psnr_db"] > 25.0
    assert not (tmp_path / "o" / "weights.safetensors").exists()
    for out in ("t", "o"):  # the user's FP32 graph (source.onnx) is what they gave; the bundle holds the INT8 one
        assert set(Bundle.load(tmp_path / out).manifest["files"]) & {"source.onnx", "model.onnx"} == {"model.onnx"}


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_float_precisions(tmp_path, precision):
    summary = _summary(run_cli("build", "--precision", precision, "--model", "dcgan", "--random-init", "--out", tmp_path / "f", "--json", "-"))
    assert summary["quality"]["psnr_db"] >= (100.0 if precision == "fp32" else 40.0)
    manifest = Bundle.load(tmp_path / "f").manifest
    assert "source.onnx" not in manifest["files"]
    # the manifest records how the graph ran in the report's words, not ONNX Runtime's raw level name
    assert manifest["metrics"]["build"]["quality"]["runtime"] == ORT_RUNTIME_TEXT["disable"]


# --- bad input: one line, exit code 2, nothing half-written -----------------------------

BAD_MODULE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class NaNGen(nn.Module):
        def forward(self, z):
            return torch.full((z.shape[0], 1, 4, 4), float("nan"))

    class FlatGen(nn.Module):
        def forward(self, z):
            return z.flatten(1)

    def nan_gen():
        return NaNGen()

    def flat_gen():
        return FlatGen()

    def not_a_module():
        return 42

    def raises():
        raise ValueError("boom")

    def small():
        return nn.Sequential(nn.ConvTranspose2d(16, 1, 4, 1, 0), nn.Tanh())
    """
)


@pytest.fixture
def bad_env(tmp_path, monkeypatch):
    (tmp_path / "bad_gens.py").write_text(BAD_MODULE)
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07garbage" * 10)
    (tmp_path / "afile").write_text("x")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "missing.onnx"], "does not exist"),
        (["--model", "corrupt.onnx"], "not a valid ONNX model"),
        (["--model", "no_such_module:make", "--input-shape", "1x16x1x1"], "cannot import 'no_such_module'"),
        (["--model", "bad_gens:raises", "--input-shape", "1x16x1x1"], "bad_gens:raises() failed: ValueError: boom"),
        (["--model", "bad_gens:not_a_module", "--input-shape", "1x16x1x1"], "not a torch.nn.Module"),
        (["--model", "bad_gens:small", "--input-shape", "1x7x1x1"], "does not fit the model"),
        (["--model", "bad_gens:small"], "--input-shape is required"),
        (["--model", "bad_gens:nan_gen", "--input-shape", "1x16x1x1"], "NaN"),
        (["--model", "bad_gens:flat_gen", "--input-shape", "1x16x1x1"], "not an N x C x H x W image tensor"),
        (["--model", "dcgan", "--random-init", "--input-shape", "1x50x1x1"], "does not fit zoo model"),
        (["--model", "nonexistent_zoo_name"], "not a bundle folder, a file, an import spec or a zoo name"),
        (["--model", "dcgan", "--random-init", "--out", "afile/sub"], "cannot create output folder"),
        (["--model", "dcgan", "--random-init", "--out", "afile"], "exists and is not a folder"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(bad_env, args, message):
    before = tree_digest(bad_env)
    result = run_cli("build", "--precision", "int8", *FAST, *(args if "--out" in args else [*args, "--out", "out"]))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gencompress: error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output
    after = {k: v for k, v in tree_digest(bad_env).items() if "__pycache__" not in k}
    assert after == {k: v for k, v in before.items() if "__pycache__" not in k}

"""The bundle's form read the same way by every stage (issue 15's seam bugs).

- `build --fp16 --target jetson-*` writes an FP16 engine script (the Jetson writer read only
  `export` steps, and build records FP16 as a `convert` step);
- a `--target cpu` INT8 bundle (ONNX Runtime's integer form, FP32 weights) exports its INT8
  graph, never an FP32 graph recorded as int8; an INT8 export with no Q/DQ fails.
"""
from __future__ import annotations

import onnx
import pytest
import torch

from gencompress import zoo
from gencompress.bundle import ONNX, Bundle, form_of
from gencompress.cli.pipeline import BuildConfig, build
from gencompress.errors import GencompressError, VerificationError
from gencompress.export.onnx_export import OnnxConfig, export_module
from gencompress.export.stage import require_int8_nodes
from gencompress.train.pretrained import zoo_bundle
from tests.helpers import cpu_int8_graph, run_cli

TINY = {"nz": 16, "ngf": 16}


def _fast_build(out, **kw) -> dict:
    fast = {"model": "dcgan", "random_init": True, "eval_samples": 8, "latency_batches": (1,),
            "latency_iters": 2, "latency_warmup": 1, "progress": False}
    if kw.get("precision", "int8") == "int8":  # an INT8-only setting is refused for a float build
        fast["calib_samples"] = 16
    cfg = BuildConfig(out=str(out), **{**fast, **kw})
    return build(cfg)


def test_fp16_jetson_build_writes_an_fp16_engine_script(tmp_path):
    out = tmp_path / "orin-fp16"
    _fast_build(out, precision="fp16", target="jetson-orin-nano")
    script = (out / "build_engine.sh").read_text()
    assert "--fp16" in script and "--int8" not in script
    assert Bundle.load(out).form.precision == "fp16"
    assert "fp16" in (out / "README.md").read_text().lower()


@pytest.fixture(scope="module")
def cpu_int8_bundle(tmp_path_factory):
    """What `build --int8 --target cpu` saves for a zoo model: FP32 weights + ORT's integer graph."""
    work = tmp_path_factory.mktemp("cpu-int8")
    torch.manual_seed(0)
    source = zoo_bundle("dcgan", zoo.build("dcgan", **TINY).eval(), **TINY)
    path, step = cpu_int8_graph(source, work, samples=16)
    out = source.derive(step)
    out.files[ONNX] = path
    return out.save(work / "bundle")


def test_cpu_int8_bundle_form(cpu_int8_bundle):
    form = cpu_int8_bundle.form
    assert (form.precision, form.quantisation, form.target) == ("int8", "ort-qlinear", "cpu")
    assert not form.has_qdq and not form.tensorrt_qdq and not form.fake_quant_weights


def test_cpu_int8_export_keeps_its_integer_graph(cpu_int8_bundle, tmp_path):
    out = tmp_path / "exported"
    result = run_cli("export", cpu_int8_bundle.path, "--target", "cpu", "--verify-psnr", "20", "--out", out)
    assert result.exit_code == 0, result.output
    ops = {n.op_type for n in onnx.load(str(out / ONNX)).graph.node}
    assert "QLinearConv" in ops  # the INT8 graph, not a fresh FP32 export
    saved = Bundle.load(out)
    check = saved.manifest["metrics"]["export_verification"]
    assert check["reference"].startswith("FP32 PyTorch") and 20.0 <= check["psnr_db"] < 100.0  # INT8 vs FP32, not FP32 vs FP32
    assert saved.form.precision == "int8" and saved.form.quantisation == "ort-qlinear"


def test_cpu_int8_export_for_a_gpu_is_refused(cpu_int8_bundle, tmp_path):
    result = run_cli("export", cpu_int8_bundle.path, "--out", tmp_path / "gpu")
    assert result.exit_code == 2 and "CPU integer form" in result.stderr
    assert not (tmp_path / "gpu").exists()


def test_int8_graph_without_qdq_is_refused(tmp_path):
    torch.manual_seed(0)
    model = zoo.build("dcgan", **TINY).eval()
    path = export_module(model, (16, 1, 1), tmp_path / "fp32.onnx", OnnxConfig())
    with pytest.raises(VerificationError, match="holds no Q/DQ"):
        require_int8_nodes(onnx.load(str(path)), "model.onnx")


@pytest.mark.parametrize("recipe, expected", [
    ([], ("fp32", "none", None)),
    ([{"step": "convert", "precision": "fp16"}], ("fp16", "none", None)),
    ([{"step": "quantize", "tool": "nvidia-modelopt", "format": "qdq-symmetric-int8", "deconv_weight_axis": 0}],
     ("int8", "modelopt-qdq", None)),
    ([{"step": "quantize", "tool": "onnxruntime.quantize_static", "format": "qdq-symmetric-int8"},
      {"step": "export", "precision": "int8", "target": "jetson-thor"}], ("int8", "ort-qdq", "jetson-thor")),
    ([{"step": "quantize", "tool": "onnxruntime.quantize_static", "format": "cpu-u8s8-qoperator"}], ("int8", "ort-qlinear", "cpu")),
    ([{"step": "quantize", "tool": "nvidia-modelopt"}, {"step": "export", "precision": "fp32", "target": "gpu"}], ("fp32", "none", "gpu")),
])
def test_form_reads_the_recipe_in_order(recipe, expected):
    form = form_of({"recipe": recipe, "precision": {}, "metrics": {}})
    assert (form.precision, form.quantisation, form.target) == expected
    assert form.has_qdq == (expected[1] in ("modelopt-qdq", "ort-qdq"))


def test_form_names_float_layers_and_deconv_axis():
    manifest = {"recipe": [{"step": "quantize", "tool": "nvidia-modelopt", "deconv_weight_axis": 0}],
                "precision": {"0": "int8", "3": "fp32", "6": "int8-weight-only"}, "metrics": {}}
    form = form_of(manifest)
    assert form.float_layers == ("3", "6") and form.deconv_weight_axis == 0


def test_restore_refuses_a_graph_quantised_bundle(cpu_int8_bundle):
    from gencompress.compress import restore_quantized

    with pytest.raises(GencompressError, match="no modelopt INT8 model"):
        restore_quantized(cpu_int8_bundle)


def test_tensorrt_build_headline_leads_with_the_target_estimate(tmp_path):
    """`build --int8` (TensorRT form): the line leads with the target's labelled estimate against
    the FP16 engine; the CPU measurement of a graph meant for TensorRT comes after, named as not the target."""
    from gencompress.cli.build_cmd import headline

    summary = _fast_build(tmp_path / "gpu", precision="int8", target="gpu", latency_batches=(1, 8))
    est = summary["target_estimate"]
    assert est["profile"] == "h100" and est["batch"] == 8 and "ESTIMATE" in est["label"]
    assert est["speedup_vs_fp16"] == pytest.approx(est["fp16_ms"] / est["compressed_ms"], rel=1e-9)
    assert est["speedup_vs_fp32"] == pytest.approx(est["fp32_ms"] / est["compressed_ms"], rel=1e-9)
    line = headline(summary)
    assert line.startswith("wrote ") and line.index("ESTIMATE") < line.index("PSNR") < line.index("(a stand-in, not the target)")
    assert f"about {est['speedup_vs_fp16']:.2f}x the FP16 engine's speed" in line
    report = (tmp_path / "gpu" / "report" / "report.md").read_text()
    assert f"**{est['speedup_vs_fp16']:.2f}x** the FP16" in report and "not the target" in report


def test_cpu_build_headline_leads_with_the_measurement():
    from gencompress.cli.build_cmd import headline

    summary = {"out": "b", "precision": "int8", "target": "cpu", "target_estimate": None,
               "quality": {"psnr_db": 45.0, "reference": "FP32 PyTorch"},
               "paired_speedup": {"batch": 8, "speedup_vs_fp32_onnx": 2.5}}
    assert "2.50x the FP32 ONNX Runtime speed at batch 8 (measured, ONNX Runtime on this CPU)" in headline(summary)

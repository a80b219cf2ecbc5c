"""ONNX Runtime runner options and the lazily registered TensorRT backend."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from gencompress.errors import GencompressError
from gencompress.export.runners import BACKENDS, OrtRunner, SessionFromOnnx

from .qdq_graphs import qdq_conv


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(qdq_conv(), str(path))
    return path


def test_optimisation_levels_agree(model_path):
    x = np.random.default_rng(0).normal(size=(2, 4, 8, 8)).astype(np.float32)
    ref = OrtRunner(SessionFromOnnx(model_path, threads=1, optimization="disable")).infer(x)
    for level in ("basic", "extended", "all"):
        runner = OrtRunner(SessionFromOnnx(model_path, threads=2, optimization=level))
        assert runner.conditions()["graph_optimization"] == level and runner.conditions()["intra_op_threads"] == 2
        # fused INT8 kernels may round differently from the float Q/DQ path: within one step
        assert np.max(np.abs(runner.infer(x) - ref)) < 0.5


def test_bad_level_and_bad_file(model_path, tmp_path):
    with pytest.raises(GencompressError, match="optimisation level"):
        OrtRunner(SessionFromOnnx(model_path, optimization="max"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(model_path.read_bytes()[:50])
    with pytest.raises(GencompressError, match="cannot load"):
        OrtRunner(SessionFromOnnx(bad))


def test_tensorrt_backend_registered_lazily():
    from gencompress.export.tensorrt import available

    assert "trt" in BACKENDS and "tensorrt" not in BACKENDS  # one name per backend
    if not available():
        with pytest.raises(GencompressError, match="TensorRT is not importable"):
            BACKENDS["trt"](None)

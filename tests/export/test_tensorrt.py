"""TensorRT backend code paths: run where `tensorrt` imports and a GPU is visible, skip elsewhere."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from gencompress.export.tensorrt import available

pytestmark = pytest.mark.skipif(not available(), reason="TensorRT is not importable here (CPU-only machine); pure logic is tested in test_profiles_versions.py")


@pytest.fixture(scope="module")
def qdq_onnx(tmp_path_factory):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT imports but torch.cuda sees no GPU")
    from .qdq_graphs import qdq_conv

    path = tmp_path_factory.mktemp("trt") / "model.onnx"
    onnx.save(qdq_conv(), str(path))
    return path


def test_build_and_run_matches_ort(qdq_onnx, tmp_path):
    from gencompress.export.profiles import BatchProfile
    from gencompress.export.runners import OrtRunner, SessionFromOnnx
    from gencompress.export.tensorrt.builder import BuildConfig, build_engine_file
    from gencompress.export.tensorrt.runner import EngineFromBytes, TrtRunner

    plan = tmp_path / "engine.plan"
    info = build_engine_file(qdq_onnx, plan, BuildConfig(batch=BatchProfile(1, 2, 4), timing_cache=str(tmp_path / "t.cache")))
    assert info["precision"] == "int8" and info["size_bytes"] == plan.stat().st_size and (tmp_path / "t.cache").is_file()
    x = np.random.default_rng(0).normal(size=(3, 4, 8, 8)).astype(np.float32)
    expected = OrtRunner(SessionFromOnnx(qdq_onnx)).infer(x)
    for cuda_graph in (False, True):
        runner = TrtRunner(EngineFromBytes(plan.read_bytes()), cuda_graph=cuda_graph)
        got = runner.infer(x)
        got_again = runner.infer(x)  # a graph replay on the second call
        runner.close()
        assert got.shape == expected.shape
        # INT8 kernels round differently from ORT's: a few quantisation steps at most
        assert np.max(np.abs(got - expected)) < 0.5 and np.allclose(got, got_again)


def test_truncated_engine_is_one_line_error(qdq_onnx, tmp_path):
    from gencompress.errors import GencompressError
    from gencompress.export.tensorrt.builder import build_engine_file
    from gencompress.export.tensorrt.runner import EngineFromBytes, TrtRunner

    plan = tmp_path / "engine.plan"
    build_engine_file(qdq_onnx, plan)
    with pytest.raises(GencompressError, match="cannot load this engine"):
        TrtRunner(EngineFromBytes(plan.read_bytes()[:1000]))

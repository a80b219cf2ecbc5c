"""The TensorRT builder's Polygraphy path, checked against Polygraphy's real loaders.

Constructing Polygraphy's loaders imports no TensorRT (they import it lazily when called), so
what the builder passes them (flags, profile, workspace, timing cache, typing) is checked here
against the installed Polygraphy: a renamed or removed keyword is a TypeError in this test.
Building the engine itself needs TensorRT and a GPU (tests/export/test_tensorrt.py).
"""
from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from gencompress.errors import GencompressError
from gencompress.export.profiles import BatchProfile
from gencompress.export.tensorrt.builder import BuildConfig, onnx_inputs, polygraphy_loaders, polygraphy_trt
from gencompress.export.tensorrt.versions import TrtVersion

pg = polygraphy_trt()
pytestmark = pytest.mark.skipif(pg is None, reason="Polygraphy is not installed (pip install polygraphy): the plain TensorRT API path is used")

WORKSPACE = "WORKSPACE-POOL"  # stands for trt.MemoryPoolType.WORKSPACE, which needs TensorRT


def _graph(path, channels="4"):
    x = helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", channels if channels == "C" else 4, 16, 16])
    y = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 4, 16, 16])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["latent"], ["image"])], "g", [x], [y])), str(path))
    return path


@pytest.mark.parametrize("version, int8_flag, strongly_typed", [("10.3.0", True, False), ("10.13.0", False, True), ("11.0.0", False, False)])
def test_loaders_carry_the_builder_settings(tmp_path, version, int8_flag, strongly_typed):
    """Weakly typed TensorRT (10.3 on JetPack 6) gets int8=True and fp16=True (float layers in FP16); 10.12+ opts into strong typing;
    11.x is always strongly typed; the profile, workspace and timing cache are Polygraphy's own."""
    cfg = BuildConfig(batch=BatchProfile(1, 8, 32), workspace_mib=512)
    cache = tmp_path / "timing.cache"
    loader = polygraphy_loaders(pg, _graph(tmp_path / "m.onnx"), cfg, TrtVersion.parse(version), "int8", cache, WORKSPACE)
    config, network = loader._config, loader._network
    assert isinstance(loader, pg.EngineBytesFromNetwork) and isinstance(config, pg.CreateConfig)
    assert config.int8 is int8_flag and config.fp16 is int8_flag
    assert network.strongly_typed is strongly_typed  # 11.x needs no flag: its networks are strongly typed
    assert config.memory_pool_limits == {WORKSPACE: 512 << 20}
    (profile,) = config.profiles
    assert (tuple(profile["latent"].min), tuple(profile["latent"].opt), tuple(profile["latent"].max)) == ((1, 4, 16, 16), (8, 4, 16, 16), (32, 4, 16, 16))
    assert loader.timing_cache_path == str(cache) and config.timing_cache_path is None  # no cache yet: none loaded


def test_an_existing_timing_cache_is_loaded(tmp_path):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"cache")
    loader = polygraphy_loaders(pg, _graph(tmp_path / "m.onnx"), BuildConfig(), TrtVersion.parse("10.3.0"), "fp16", cache, WORKSPACE)
    assert loader._config.timing_cache_path == str(cache) and loader._config.fp16 is True


def test_a_dynamic_dimension_other_than_batch_is_refused(tmp_path):
    with pytest.raises(GencompressError, match=r"input 'latent' has a dynamic dimension 1 \(C\); only the batch axis \(0\) may be dynamic"):
        onnx_inputs(_graph(tmp_path / "m.onnx", channels="C"))


class _FakeTrt:
    """Stands for the `tensorrt` module where the wrapper needs it (no engine is built)."""

    __version__ = "10.3.0"

    class MemoryPoolType:
        WORKSPACE = WORKSPACE


def test_polygraphy_logging_stays_off_stdout_and_failures_are_one_line(tmp_path, capsys, monkeypatch):
    """`build --json` keeps stdout for its JSON: Polygraphy's log lines (printed to stdout) go to
    stderr; a Polygraphy failure becomes one GencompressError line."""
    from gencompress.export.tensorrt import builder

    class Loader:
        def __init__(self, fail):
            self.fail = fail

        def __call__(self):
            print("[I] Building engine with configuration: ...")
            if self.fail:
                raise RuntimeError("PolygraphyException: failed to parse ONNX model\nmore detail")
            return b"plan"

    for fail in (False, True):
        monkeypatch.setattr(builder, "polygraphy_loaders", lambda *a, fail=fail: Loader(fail))
        args = (pg, _FakeTrt, tmp_path / "m.onnx", BuildConfig(), TrtVersion.parse("10.3.0"), "int8", tmp_path / "t.cache")
        if fail:
            with pytest.raises(GencompressError, match=r"through Polygraphy\) failed .*: PolygraphyException: failed to parse ONNX model$"):
                builder._plan_with_polygraphy(*args)
        else:
            assert builder._plan_with_polygraphy(*args) == b"plan"
        out, err = capsys.readouterr()
        assert out == "" and "Building engine" in err

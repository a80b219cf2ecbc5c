"""Graph checks: ops a target cannot run, dynamic non-batch dims, Q/DQ-safe onnxslim."""
from __future__ import annotations

import onnx
import pytest

from gencompress.errors import GencompressError
from gencompress.export import checks

from .qdq_graphs import plain_conv, qdq_conv


def test_unsupported_ops_are_named():
    model = plain_conv(("com.microsoft", "QLinearSigmoid"))
    with pytest.raises(GencompressError, match=r"com\.microsoft\.QLinearSigmoid.*\(first node: .*odd\)") as info:
        checks.check_target_ops(model, "jetson-orin-nano")
    assert "\n" not in str(info.value)
    assert checks.unsupported_ops(model, "cpu") == []  # ONNX Runtime judges its own graphs


def test_integer_ops_unsupported_by_tensorrt():
    model = plain_conv(("", "Unique"))
    assert checks.unsupported_ops(model, "gpu") == ["Unique (odd)"]
    assert checks.unsupported_ops(plain_conv(), "gpu") == []


def test_dynamic_non_batch_dimension_refused():
    checks.check_static_except_batch(plain_conv())
    with pytest.raises(GencompressError, match=r"input 'x' has a dynamic dimension 2 \(h\); only the batch axis"):
        checks.check_static_except_batch(plain_conv(dynamic_hw=True))


def test_io_spec():
    spec = checks.io_spec(plain_conv())
    assert spec["inputs"] == [{"name": "x", "dtype": "float", "shape": ["batch", 4, 8, 8]}]
    assert spec["outputs"][0]["shape"] == ["batch", 8, 8, 8]


def test_slim_keeps_qdq_pairs():
    model = qdq_conv("ConvTranspose", weight_axis=1)
    slimmed, note = checks.slim(model)
    assert checks._qdq_signature(slimmed) == checks._qdq_signature(model)
    assert "Q/DQ pairs intact" in note
    onnx.checker.check_model(slimmed, full_check=True)


def test_slim_result_discarded_when_qdq_changes(monkeypatch):
    import onnxslim

    model = qdq_conv()
    monkeypatch.setattr(onnxslim, "slim", lambda m: plain_conv())  # a slimmer that folded the weight Q/DQ away
    kept, note = checks.slim(model)
    assert kept is model and "changed the Q/DQ structure" in note


def test_slim_leaves_no_graph_cycles_behind(monkeypatch):
    """onnxslim's onnx-graphsurgeon graph is a web of reference cycles holding a copy of every
    weight; left to the cyclic collector it stayed alive through a whole search (1.8 GB of a
    54M-parameter U-Net's build). slim() collects it before returning (for a graph of at least
    memory.RELEASE_ABOVE_BYTES: here the test's small graph counts as big)."""
    import gc

    from onnxslim.third_party.onnx_graphsurgeon.ir.graph import Graph

    from gencompress import memory

    monkeypatch.setattr(memory, "RELEASE_ABOVE_BYTES", 0)

    model = plain_conv()
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # as between two rare automatic collections
    try:
        checks.slim(model)
        alive = [o for o in gc.get_objects() if isinstance(o, Graph)]
    finally:
        if enabled:
            gc.enable()
    assert alive == []

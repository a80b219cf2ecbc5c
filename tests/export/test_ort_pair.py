"""The child-process ONNX Runtime timer: its report's shape and its failure mode (no timing is asserted)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from gencompress.export.ort_pair import time_graphs
from gencompress.errors import GencompressError


def _relu_graph(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_reports_every_graph_with_ratios_to_the_first(tmp_path):
    a, b = _relu_graph(tmp_path / "a.onnx"), _relu_graph(tmp_path / "b.onnx")
    result = time_graphs({"a": a, "b": b}, np.ones((2, 4), np.float32), threads=1, rounds=3, inner=2, warmup=1)
    assert set(result["median_ms"]) == {"a", "b"} and all(v > 0 for v in result["median_ms"].values())
    assert result["ratio_to_first"]["a"] == 1.0
    assert [len(v) for v in result["rounds"].values()] == [3, 3]
    assert "shared 1-thread" in result["method"]


def test_an_unloadable_graph_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(GencompressError, match="timing process failed"):
        time_graphs({"bad": bad}, np.ones((2, 4), np.float32), rounds=1, inner=1, warmup=0)

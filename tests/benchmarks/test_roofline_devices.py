"""Roofline FLOPs and bytes against hand counts on tiny ONNX graphs; the device registry."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gencompress.benchmarks import devices, roofline
from gencompress.errors import GencompressError


def _save(tmp_path, nodes, x_shape, y_shape, inits, name="m.onnx"):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def conv_graph(tmp_path):
    w = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"), helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return _save(tmp_path, nodes, ["N", 3, 8, 8], ["N", 4, 8, 8], [w])


def test_conv_flops_and_bytes_match_hand_count(tmp_path):
    est = roofline.estimate(conv_graph(tmp_path), devices.get("cpu"), batch=2)
    conv, relu = est["layers"]
    assert conv["flops"] == 2 * (2 * 4 * 8 * 8) * 3 * 9  # 2 x outputs x Cin x kernel
    assert conv["bytes"] == 4 * (2 * 3 * 8 * 8 + 4 * 3 * 3 * 3 + 2 * 4 * 8 * 8)  # x + w + y, float32
    assert relu["flops"] == 2 * 4 * 8 * 8 and relu["bytes"] == 4 * 2 * (2 * 4 * 8 * 8)
    assert est["estimated_ms"] == pytest.approx(sum(layer["ms"] for layer in est["layers"]))
    assert "ESTIMATE" in est["label"]


def test_layer_time_is_max_of_compute_and_memory_plus_overhead(tmp_path):
    profile = devices.get("jetson-orin-nano")
    (conv,) = roofline.estimate(conv_graph(tmp_path), profile, batch=1)["layers"]  # Relu fused on a GPU
    compute = conv["flops"] / (profile.fp32_tflops * 1e12) * 1e3
    memory = conv["bytes"] / (profile.mem_bw_gbs * 1e9) * 1e3
    assert conv["ms"] == pytest.approx(max(compute, memory) + profile.op_overhead_us / 1e3)
    assert conv["bound"] == ("compute" if compute >= memory else "memory")


def test_conv_transpose_flops(tmp_path):
    w = numpy_helper.from_array(np.zeros((5, 2, 4, 4), np.float32), "w")  # Cin x Cout x k x k
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])
    path = _save(tmp_path, [node], [1, 5, 3, 3], [1, 2, 6, 6], [w])
    (layer,) = roofline.estimate(path, devices.get("cpu"), batch=1)["layers"]
    assert layer["flops"] == 2 * (5 * 3 * 3) * 2 * 16  # every input pixel scatters Cout x k x k MACs


def test_qdq_weights_count_at_int8_and_qdq_nodes_fold_on_gpu(tmp_path):
    wq = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.int8), "wq")
    scale, zero = numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(0), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]),
    ]
    path = _save(tmp_path, nodes, [1, 3, 8, 8], [1, 4, 8, 8], [wq, scale, zero])
    gpu = roofline.estimate(path, devices.get("jetson-agx-orin"), 1)["layers"]
    assert [(l["op"], l["precision"]) for l in gpu] == [("Conv", "int8")]
    cpu = roofline.estimate(path, devices.get("cpu"), 1)["layers"]
    assert [l["op"] for l in cpu] == ["QuantizeLinear", "DequantizeLinear", "DequantizeLinear", "Conv"]


def test_fixed_batch_graph_refuses_another_batch(tmp_path):
    w = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    path = _save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"])], [1, 3, 8, 8], [1, 4, 6, 6], [w])
    with pytest.raises(GencompressError):
        roofline.estimate(path, devices.get("cpu"), batch=8)


REQUIRED = ("h100", "a100", "rtx-4090", "jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "jetson-thor", "cpu")


def test_required_device_profiles_have_peaks_and_sources():
    for key in REQUIRED:
        p = devices.get(key)
        assert p.int8_tops >= p.fp16_tflops > 0 or p.kind == "cpu"
        assert p.mem_bw_gbs > 0 and len(p.source) > 20
    assert devices.get("cpu").calibrated


def test_unknown_profile_and_duplicate_registration():
    with pytest.raises(GencompressError, match="known:"):
        devices.get("tpu-v9")
    with pytest.raises(ValueError):
        devices.register(devices.get("h100"))


def test_cpu_conv_with_few_output_channels_fills_few_vector_lanes(tmp_path):
    w = numpy_helper.from_array(np.zeros((1, 8, 7, 7), np.float32), "w")  # 8 -> 1 channel: 1 of 16 lanes
    path = _save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], pads=[3, 3, 3, 3])], ["N", 8, 16, 16], ["N", 1, 16, 16], [w])
    cpu, gpu = devices.get("cpu"), devices.get("h100")
    (layer,) = roofline.estimate(path, cpu, 4)["layers"]
    assert layer["compute_ms"] == pytest.approx(layer["flops"] / (cpu.fp32_tflops * 1e12) * 1e3 * roofline.cpu_vector_lanes(cpu))
    (on_gpu,) = roofline.estimate(path, gpu, 4)["layers"]
    assert on_gpu["compute_ms"] == pytest.approx(on_gpu["flops"] / (gpu.fp32_tflops * 1e12) * 1e3)

"""Tiny hand-built ONNX graphs for the Q/DQ lint and the graph checks (built in milliseconds)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def qdq_conv(
    op: str = "Conv",
    weight_axis: int = 0,
    act_zero_point: int = 0,
    zp_dtype=np.int8,
    act_scale_len: int = 1,
    quantise_weight: bool = True,
    drop_weight_zp: bool = False,
    lone_q: bool = False,
    dynamic_hw: bool = False,
) -> onnx.ModelProto:
    """x -> Q/DQ -> Conv|ConvTranspose(W via Q/DQ) -> y, with knobs that break one rule each."""
    cin, cout = 4, 8
    w_shape = (cout, cin, 3, 3) if op == "Conv" else (cin, cout, 3, 3)
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(size=w_shape).astype(np.float32), "W")]
    act_scale = np.full(act_scale_len, 0.05, np.float32) if act_scale_len > 1 else np.array(0.05, np.float32)
    init += [numpy_helper.from_array(act_scale, "x_scale"),
             numpy_helper.from_array(np.array(act_zero_point, zp_dtype), "x_zp")]
    channels = w_shape[weight_axis]
    init += [numpy_helper.from_array(np.full(channels, 0.02, np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros(channels, np.int8), "w_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="x_q"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xdq"], name="x_dq")]
    weight = "W"
    if quantise_weight:
        zp = [] if drop_weight_zp else ["w_zp"]
        nodes += [helper.make_node("QuantizeLinear", ["W", "w_scale", *zp], ["wq"], name="w_q", axis=weight_axis),
                  helper.make_node("DequantizeLinear", ["wq", "w_scale", *zp], ["wdq"], name="w_dq", axis=weight_axis)]
        weight = "wdq"
    nodes.append(helper.make_node(op, ["xdq", weight], ["y"], name="layer", pads=[1, 1, 1, 1]))
    if lone_q:
        nodes.append(helper.make_node("QuantizeLinear", ["y", "x_scale", "x_zp"], ["y_q_alone"], name="lone_q"))
    hw = ["h", "w"] if dynamic_hw else [8, 8]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", cin, *hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", cout, *hw])]
        + ([helper.make_tensor_value_info("y_q_alone", TensorProto.INT8, ["batch", cout, *hw])] if lone_q else []),
        init,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def linear_as_matmul(weight_axis: int) -> onnx.ModelProto:
    """A Linear as the TorchScript exporter writes it: W[out,in] -> Q/DQ -> Transpose -> MatMul."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(size=(6, 5)).astype(np.float32), "W"),
            numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z"),
            numpy_helper.from_array(np.full(6 if weight_axis == 0 else 5, 0.02, np.float32), "ws"),
            numpy_helper.from_array(np.zeros(6 if weight_axis == 0 else 5, np.int8), "wz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="x_q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xdq"], name="x_dq"),
             helper.make_node("QuantizeLinear", ["W", "ws", "wz"], ["wq"], name="w_q", axis=weight_axis),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wdq"], name="w_dq", axis=weight_axis),
             helper.make_node("Transpose", ["wdq"], ["wt"], name="w_t", perm=[1, 0]),
             helper.make_node("MatMul", ["xdq", "wt"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def plain_conv(extra_op: tuple[str, str] | None = None, dynamic_hw: bool = False) -> onnx.ModelProto:
    """A float Conv; `extra_op=(domain, op_type)` appends a node the target may not run."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(size=(8, 4, 3, 3)).astype(np.float32), "W")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["y0"], name="conv", pads=[1, 1, 1, 1])]
    if extra_op:
        domain, op = extra_op
        nodes.append(helper.make_node(op, ["y0"], ["y"], name="odd", domain=domain))
    else:
        nodes.append(helper.make_node("Relu", ["y0"], ["y"], name="relu"))
    hw = ["h", "w"] if dynamic_hw else [8, 8]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, *hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, *hw])], init)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(extra_op[0], 1)] if extra_op and extra_op[0] else [])
    return helper.make_model(graph, opset_imports=opsets)

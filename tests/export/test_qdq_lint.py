"""The Q/DQ lint flags each TensorRT explicit-quantisation rule, by node name."""
from __future__ import annotations

import numpy as np
import onnx

from gencompress.export.qdq_lint import deconv_axis_from_manifest, lint

from .qdq_graphs import linear_as_matmul, plain_conv, qdq_conv


def rules(report):
    return {(v.node, v.rule) for v in report.violations}


def test_valid_graphs_pass():
    onnx.checker.check_model(qdq_conv(), full_check=True)
    report = lint(qdq_conv())
    assert report.passed and report.qdq_pairs == 2 and report.quantised_ops == ["layer"]
    assert lint(qdq_conv("ConvTranspose", weight_axis=1), deconv_weight_axis=1).passed
    assert lint(qdq_conv("ConvTranspose", weight_axis=0), deconv_weight_axis=0).passed


def test_asymmetric_zero_point():
    assert ("x_q", "symmetric") in rules(lint(qdq_conv(act_zero_point=3)))


def test_uint8_zero_point():
    assert ("x_q", "int8-dtype") in rules(lint(qdq_conv(zp_dtype=np.uint8)))


def test_missing_zero_point_means_uint8():
    assert ("w_q", "zero-point") in rules(lint(qdq_conv(drop_weight_zp=True)))


def test_per_channel_activation_scale():
    assert ("x_dq", "per-tensor-activation") in rules(lint(qdq_conv(act_scale_len=4)))


def test_conv_weight_axis_must_be_zero():
    assert ("w_dq", "weight-axis") in rules(lint(qdq_conv(weight_axis=1)))


def test_deconv_axis_follows_recorded_choice():
    graph = qdq_conv("ConvTranspose", weight_axis=0)
    assert ("w_dq", "weight-axis") in rules(lint(graph, deconv_weight_axis=1))
    manifest = {"recipe": [{"step": "quantize", "deconv_weight_axis": 0}]}
    assert lint(graph, deconv_axis_from_manifest(manifest)).passed
    assert deconv_axis_from_manifest({"recipe": []}) == 1


def test_weight_without_qdq():
    report = lint(qdq_conv(quantise_weight=False))
    assert ("layer", "qdq-inputs") in rules(report)
    assert "weight (input 1)" in report.summary()


def test_lone_quantize():
    assert ("lone_q", "qdq-pair") in rules(lint(qdq_conv(lone_q=True)))


def test_linear_exported_as_matmul_through_transpose():
    assert lint(linear_as_matmul(weight_axis=0)).passed  # output features of W[out, in]
    assert ("w_dq", "weight-axis") in rules(lint(linear_as_matmul(weight_axis=1)))


def test_float_graph_passes():
    report = lint(plain_conv())
    assert report.passed and report.qdq_pairs == 0 and report.float_ops == ["conv"] and not report.quantised_ops


def test_dq_behind_a_cast_is_a_violation():
    """An FP16 conversion that keeps Q/DQ in FP32 puts a Cast between each DQ and its layer, which
    TensorRT cannot fuse: the layer would run float. convert_fp16's own form has no such Cast."""
    from onnx import version_converter
    from onnxruntime.transformers.float16 import convert_float_to_float16

    behind_casts = convert_float_to_float16(version_converter.convert_version(qdq_conv(), 19), keep_io_types=True,
                                            op_block_list=["QuantizeLinear", "DequantizeLinear"])
    assert {("x_dq", "dq-cast"), ("w_dq", "dq-cast")} <= rules(lint(behind_casts))

"""The ConvTranspose rewrites are exact in FP32 and the CPU INT8 graph is all integer convs."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from gencompress.compress.rewrite import (
    DECONV_FORMS, StemAsConv, UpsampleConvAsSubPixel, cpu_integer_ready, rewrite_deconvs, rewrite_for,
)
from gencompress.errors import GencompressError
from gencompress.export.onnx_export import OnnxConfig, export_module
from gencompress.export.runners import OrtRunner, SessionFromOnnx
from gencompress.metrics import psnr
from gencompress.model_stats import count_macs
from tests.helpers import cpu_int8_graph


@pytest.mark.parametrize("form", sorted(DECONV_FORMS))
@pytest.mark.parametrize("bias", [False, True])
def test_stride2_deconv_rewrite_is_exact(form, bias):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(6, 5, 4, 2, 1, bias=bias).eval()
    x = torch.randn(3, 6, 7, 5)  # odd, non-square: phases must not assume symmetry
    with torch.no_grad():
        err = (deconv(x) - rewrite_for(deconv, (7, 5), form)(x)).abs().max().item()
    assert err < 1e-5


@pytest.mark.parametrize("bias", [False, True])
def test_nearest_upsample_conv_as_one_low_resolution_conv_is_exact(bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, 1, 1, bias=bias).eval()
    x = torch.randn(3, 6, 7, 5)  # odd, non-square: the border phases must read the zero padding
    with torch.no_grad():
        reference = conv(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
        err = (reference - UpsampleConvAsSubPixel(conv, (7, 5))(x)).abs().max().item()
    assert err < 1e-5


def test_stem_deconv_is_a_1x1_conv():
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(10, 7, 4, 1, 0, bias=True).eval()
    x = torch.randn(4, 10, 1, 1)
    with torch.no_grad():
        assert (deconv(x) - StemAsConv(deconv)(x)).abs().max().item() < 1e-5


def test_four_phase_keeps_the_deconv_macs(tiny_dcgan):
    shape = tiny_dcgan.input_shape
    rewritten, names = rewrite_deconvs(tiny_dcgan.model, shape, form="four-phase")
    assert names == ["0", "3", "6", "9"]
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in rewritten.modules())
    assert count_macs(rewritten, shape) == count_macs(tiny_dcgan.model, shape)


@pytest.mark.parametrize("kernel, padding, output_padding", [(3, 1, 1), (2, 0, 0), (6, 2, 0), (5, 2, 1)])
@pytest.mark.parametrize("cout", [3, 16])  # both shuffles: NCHW PixelShuffle and channels-last
def test_other_doubling_deconvs_take_the_sub_pixel_form_exactly(kernel, padding, output_padding, cout):
    """CycleGAN's kernel 3 / padding 1 / output_padding 1 and the other stride-2 deconvolutions
    whose output is exactly twice the input."""
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(6, cout, kernel, 2, padding, output_padding=output_padding).eval()
    x = torch.randn(3, 6, 7, 5)
    with torch.no_grad():
        err = (deconv(x) - rewrite_for(deconv, (7, 5))(x)).abs().max().item()
    assert err < 1e-5


@pytest.mark.parametrize("deconv", [
    nn.ConvTranspose2d(4, 4, 3, 2, 0),  # 2H + 1 rows: not a depth-to-space
    nn.ConvTranspose2d(4, 4, 8, 2, 3),  # taps reach two rows away: no 3x3 conv holds them
    nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2),
    nn.ConvTranspose2d(4, 4, 3, 3, 0),
])
def test_unsupported_deconv_is_left_alone(deconv):
    rewritten, names = rewrite_deconvs(nn.Sequential(deconv).eval(), (4, 5, 5))
    assert names == [] and isinstance(rewritten[0], nn.ConvTranspose2d)


def test_unknown_form_is_an_error(tiny_dcgan):
    with pytest.raises(GencompressError, match="unknown deconvolution rewrite"):
        rewrite_deconvs(tiny_dcgan.model, tiny_dcgan.input_shape, form="magic")


def test_cpu_ready_model_matches_with_folded_norms(tiny_dcgan):
    ready, info = cpu_integer_ready(tiny_dcgan.model, tiny_dcgan.input_shape)
    assert info["batchnorms_folded"] == 3 and len(info["deconvs_rewritten"]) == 4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ready.modules())
    x = torch.randn(5, *tiny_dcgan.input_shape)
    with torch.no_grad():
        assert (ready(x) - tiny_dcgan.model(x)).abs().max().item() < 1e-5


def test_cpu_int8_graph_is_integer_convs(tiny_dcgan, tmp_path):
    shape = tiny_dcgan.input_shape
    fp32 = export_module(tiny_dcgan.model, shape, tmp_path / "fp32.onnx", OnnxConfig())
    path, step = cpu_int8_graph(tiny_dcgan, tmp_path, samples=64)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "ConvTranspose" not in ops and "Conv" not in ops
    assert ops.count("QLinearConv") == 4
    x = np.random.default_rng(0).standard_normal((16, *shape)).astype(np.float32)
    reference = OrtRunner(SessionFromOnnx(fp32, 2)).infer(x)
    assert psnr(reference, OrtRunner(SessionFromOnnx(path, 2)).infer(x)) >= 30.0
    assert "U8 asymmetric activations" in step["form"] and "per-channel S8 weights" in step["form"]


def _ort_optimised_ops(path, tmp_path) -> list[str]:
    """The operators ONNX Runtime's CPU provider actually runs, after its graph passes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "ort-optimised.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]


@pytest.mark.parametrize("fixture", ["tiny_dcgan", "tiny_upsample"])
def test_cpu_int8_runs_channels_last_between_integer_convs(fixture, tmp_path, request):
    """ONNX Runtime runs QLinearConv in NHWC. With the channels-last depth-to-space, the
    only layout Transposes left next to an integer conv are at the graph's input and its
    last (narrow) layer, and no Resize stays in the graph."""
    bundle = request.getfixturevalue(fixture)
    path, step = cpu_int8_graph(bundle, tmp_path, samples=32)
    ops = _ort_optimised_ops(path, tmp_path)
    assert "Resize" not in ops and "Upsample" not in ops
    convs = [i for i, op in enumerate(ops) if op == "QLinearConv"]
    assert len(convs) == 4
    before_conv = [ops[i - 1] for i in convs[1:]]  # the first conv reads the transposed input
    assert "Transpose" not in before_conv, ops
    if fixture == "tiny_upsample":
        assert step["upsample_convs_rewritten"] == ["body.1", "body.5", "body.9"]


def test_cyclegan_style_deconv_before_instancenorm_quantises_to_integer_convs(tmp_path):
    """kernel 3 / output_padding 1 deconvolutions followed by an affine-free InstanceNorm
    (the ResNet generator's up-sampling): rewritten, exported (the norm needs the channel
    count through the shuffle) and every conv integer."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, 1, 1), nn.InstanceNorm2d(16), nn.ReLU(),
        nn.ConvTranspose2d(16, 16, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(16), nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 3, 3, 1, 1), nn.Tanh(),
    ).eval()
    shape = (3, 8, 8)
    fp32 = export_module(model, shape, tmp_path / "fp32.onnx", OnnxConfig())
    path, step = cpu_int8_graph(model, tmp_path, shape, "uniform", samples=32)
    assert step["deconvs_rewritten"] == ["3", "6"]
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "ConvTranspose" not in ops and ops.count("QLinearConv") == 4
    x = np.random.default_rng(0).uniform(-1, 1, (8, *shape)).astype(np.float32)
    assert psnr(OrtRunner(SessionFromOnnx(fp32, 2)).infer(x), OrtRunner(SessionFromOnnx(path, 2)).infer(x)) >= 30.0


@pytest.mark.parametrize("form", ["four-phase", "sub-pixel"])
def test_layers_with_equal_biases_keep_their_own_int8_bias(form, tmp_path):
    """The ONNX exporter merges equal initializers; the four phases of a deconvolution share
    its bias. Each must still get an int32 bias on its own scale (was 20 dB lost on the DCGAN)."""
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(16, 16, 4, 2, 1)
    deconv.bias.data.uniform_(0.5, 1.5)  # large next to the weights: a wrong scale shows
    model = nn.Sequential(nn.Conv2d(4, 16, 3, 1, 1), nn.ReLU(), deconv, nn.ReLU(), nn.Conv2d(16, 2, 3, 1, 1)).eval()
    shape = (4, 6, 6)
    fp32 = export_module(model, shape, tmp_path / "fp32.onnx", OnnxConfig())
    path, _ = cpu_int8_graph(model, tmp_path, shape, "normal", samples=64, deconv_form=form)
    graph = onnx.load(str(path)).graph
    biases = [n.input[8] for n in graph.node if n.op_type == "QLinearConv" and len(n.input) > 8]
    assert len(biases) == len(set(biases))
    x = np.random.default_rng(1).standard_normal((32, *shape)).astype(np.float32)
    assert psnr(OrtRunner(SessionFromOnnx(fp32, 2)).infer(x), OrtRunner(SessionFromOnnx(path, 2)).infer(x)) >= 35.0


def test_unshare_biases_copies_only_shared_ones(tmp_path):
    from onnx import helper, numpy_helper

    from gencompress.export.onnx_quant import unshare_biases

    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    b = numpy_helper.from_array(np.full(2, 0.5, np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y1"], name="c1"), helper.make_node("Conv", ["y1", "w", "b"], ["y2"], name="c2")]
    value = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "g", [value("x", onnx.TensorProto.FLOAT, [1, 2, 3, 3])],
                              [value("y2", onnx.TensorProto.FLOAT, [1, 2, 3, 3])], [w, b])
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    assert unshare_biases(tmp_path / "m.onnx") == 1
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert [n.input[2] for n in model.graph.node] == ["b", "b__c2"] and [n.input[1] for n in model.graph.node] == ["w", "w"]
    copies = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(copies["b__c2"], copies["b"])
    assert unshare_biases(tmp_path / "m.onnx") == 0

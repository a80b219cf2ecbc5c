"""build's target estimate: the profile `--device` names (refused where it contradicts the target),
INT8 against the FP16 engine a GPU user would run, and a first line that leads with it."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from gencompress.benchmarks import devices, roofline
from gencompress.benchmarks.build_speed import engine_float_precision, estimate_profile, target_estimate
from gencompress.cli.build_cmd import headline
from gencompress.errors import GencompressError
from tests.helpers import run_cli


def _graph(path, int8: bool):
    """Conv 64->64 (3x3) then a float Conv 64->3: with int8, the first Conv's weight comes through Q/DQ."""
    import onnx

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((64, 64, 3, 3)).astype(np.float32) * 0.05
    w2 = rng.standard_normal((3, 64, 3, 3)).astype(np.float32) * 0.05
    inits = [numpy_helper.from_array(w2, "w2")]
    nodes = []
    if int8:
        inits += [numpy_helper.from_array(np.clip(np.round(w1 / 0.002), -127, 127).astype(np.int8), "w1q"),
                  numpy_helper.from_array(np.float32(0.002), "ws"), numpy_helper.from_array(np.float32(0.05), "s"),
                  numpy_helper.from_array(np.int8(0), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
                  helper.make_node("DequantizeLinear", ["w1q", "ws", "z"], ["w1"])]
        first_in = "xd"
    else:
        inits.append(numpy_helper.from_array(w1, "w1"))
        first_in = "x"
    nodes += [helper.make_node("Conv", [first_in, "w1"], ["h"], pads=[1, 1, 1, 1], name="conv1"),
              helper.make_node("Conv", ["h", "w2"], ["y"], pads=[1, 1, 1, 1], name="conv2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 64, 64])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graphs")
    return _graph(folder / "fp32.onnx", False), _graph(folder / "int8.onnx", True)


@pytest.mark.parametrize("target,device,expected", [
    ("gpu", None, "h100"), ("gpu", "a100", "a100"), ("gpu", "rtx-4090", "rtx-4090"),
    ("jetson-orin-nx", None, "jetson-orin-nx"), ("jetson-orin-nx", "jetson-orin-nx", "jetson-orin-nx"), ("cpu", None, None)])
def test_the_estimate_profile_follows_device_and_target(target, device, expected):
    assert estimate_profile(target, device) == expected


@pytest.mark.parametrize("target,device,message", [
    ("jetson-agx-orin", "jetson-orin-nano", "contradicts --target jetson-agx-orin"),
    ("jetson-thor", "h100", "contradicts --target jetson-thor"),
    ("gpu", "jetson-orin-nano", "build with --target jetson-orin-nano"),
    ("gpu", "no-such-gpu", "unknown device profile 'no-such-gpu'"),
    ("cpu", "h100", "--target cpu measures on this CPU"),
])
def test_a_device_that_does_not_fit_the_target_is_refused(target, device, message):
    with pytest.raises(GencompressError, match=message.replace("(", r"\(").replace(")", r"\)")):
        estimate_profile(target, device)


def test_build_refuses_a_contradicting_device_in_one_line_before_any_work(tmp_path):
    out = tmp_path / "never"
    result = run_cli("build", "--target", "jetson-orin-nx", "--device", "jetson-orin-nano", "--out", out)
    assert result.exit_code == 2, result.output
    assert "--device jetson-orin-nano contradicts --target jetson-orin-nx" in result.output
    assert "Traceback" not in result.output and not out.exists() and list(tmp_path.iterdir()) == []


def test_the_fp16_engine_is_the_baseline_and_the_device_is_the_one_named(graphs):
    fp32, int8 = graphs
    est = target_estimate(fp32, int8, "gpu", 8, device="a100")
    profile = devices.get("a100")
    assert est["profile"] == "a100" and est["device"] == profile.name and est["device_named"] is True
    assert est["fp16_ms"] == pytest.approx(roofline.estimate(fp32, profile, 8, float_precision="fp16")["estimated_ms"], rel=1e-12)
    assert est["fp32_ms"] == pytest.approx(roofline.estimate(fp32, profile, 8, float_precision="fp32")["estimated_ms"], rel=1e-12)
    assert est["speedup_vs_fp16"] == pytest.approx(est["fp16_ms"] / est["compressed_ms"], rel=1e-12)
    assert est["speedup_vs_fp32"] == pytest.approx(est["fp32_ms"] / est["compressed_ms"], rel=1e-12)
    # the FP16 engine is faster than FP32 (16x the tensor-core peak on an A100), so INT8 gains less against it
    assert est["fp16_ms"] < est["fp32_ms"] and est["speedup_vs_fp16"] < est["speedup_vs_fp32"]
    assert est["compressed_float_layers"] == "fp16"
    (conv1, conv2) = roofline.estimate(int8, profile, 8, float_precision="fp16")["layers"]
    assert (conv1["precision"], conv2["precision"]) == ("int8", "fp16")  # the float layer runs FP16 beside INT8


def test_fp16_layers_count_half_the_bytes_of_an_fp32_graph(graphs):
    fp32, _ = graphs
    profile = devices.get("h100")
    as32 = roofline.estimate(fp32, profile, 1, float_precision="fp32")["layers"]
    as16 = roofline.estimate(fp32, profile, 1, float_precision="fp16")["layers"]
    for a, b in zip(as32, as16):
        assert b["bytes"] == pytest.approx(a["bytes"] / 2, rel=1e-12) and b["flops"] == a["flops"]
        assert b["compute_ms"] == pytest.approx(a["compute_ms"] * profile.fp32_tflops / profile.fp16_tflops, rel=1e-9)


def test_strongly_typed_jetson_keeps_the_graphs_own_float_layers():
    assert engine_float_precision("jetson-orin-nano") == "fp16"  # TensorRT 10.3: --int8 --fp16
    assert engine_float_precision("jetson-thor") == "fp32"  # TensorRT 10.13 strongly typed: the graph's own
    assert engine_float_precision("jetson-thor", "fp16") == "fp16"  # a build that wrote its float layers in FP16


def _summary(est, target="gpu"):
    return {"out": "b", "precision": "int8", "target": target, "target_estimate": est,
            "quality": {"psnr_db": 41.0, "reference": "FP32 PyTorch"},
            "paired_speedup": {"batch": 8, "speedup_vs_fp32_onnx": 0.78}}


def test_the_first_line_leads_with_the_fp16_estimate_not_the_cpu_stand_in(graphs):
    fp32, int8 = graphs
    est = target_estimate(fp32, int8, "gpu", 8)
    line = headline(_summary(est))
    first = line.splitlines()[0]
    assert first.startswith(f"wrote b: on {devices.get('h100').name} (standing in for your GPU: name it with --device")
    assert f"expect int8 at about {est['speedup_vs_fp16']:.2f}x the FP16 engine's speed" in first and "ESTIMATE" in first
    assert first.index("ESTIMATE") < first.index("PSNR") < first.index("0.78x")
    assert "ONNX Runtime on this CPU (a stand-in, not the target): 0.78x" in first
    named = headline(_summary(target_estimate(fp32, int8, "gpu", 8, device="rtx-4090")))
    assert "standing in" not in named and devices.get("rtx-4090").name in named


def test_estimate_and_build_share_one_device_option():
    """--device is one option definition with one meaning in build and estimate."""
    from gencompress.cli.build_cmd import build
    from gencompress.cli.estimate_cmd import estimate

    def device(command):
        (opt,) = [p for p in command.params if p.name == "device"]
        return opt

    assert device(build).opts == device(estimate).opts == ["--device"]
    assert device(build).metavar == device(estimate).metavar == "PROFILE"
    assert device(build).default is None and device(estimate).default == "jetson-orin-nano"

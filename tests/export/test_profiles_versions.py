"""Pure logic that must hold everywhere: batch profiles, TensorRT version switches, trtexec lines."""
from __future__ import annotations

import pytest

from gencompress.errors import GencompressError
from gencompress.export.profiles import BatchProfile
from gencompress.export.tensorrt.versions import (
    TrtVersion,
    builder_flag_names,
    network_flag_names,
    trtexec_bench_args,
    trtexec_build_args,
    typing_mode,
)


@pytest.mark.parametrize("text,expected", [("1:8:32", (1, 8, 32)), ("4", (4, 4, 4)), (" 2:2:16 ", (2, 2, 16))])
def test_profile_parses(text, expected):
    p = BatchProfile.parse(text)
    assert (p.min, p.opt, p.max) == expected
    assert p.is_static == (expected[0] == expected[2])


@pytest.mark.parametrize("text", ["8:1:32", "0:1:2", "1:8", "a:b:c", "1:2:100000", ""])
def test_profile_rejects(text):
    with pytest.raises(GencompressError):
        BatchProfile.parse(text)


def test_profile_shapes():
    assert BatchProfile(1, 8, 32).shapes((100, 1, 1)) == ((1, 100, 1, 1), (8, 100, 1, 1), (32, 100, 1, 1))


@pytest.mark.parametrize("text,expected", [("10.3.0.30", TrtVersion(10, 3, 0)), ("10.13.3", TrtVersion(10, 13, 3)), ("11.0", TrtVersion(11, 0, 0))])
def test_version_parse(text, expected):
    assert TrtVersion.parse(text) == expected


def test_version_too_old_or_garbage():
    for text in ("8.6.2", "garbage"):
        with pytest.raises(GencompressError):
            TrtVersion.parse(text)


@pytest.mark.parametrize(
    "version,mode,net,int8,fp16",
    [
        ("10.3.0", "weak", (), ("INT8", "FP16"), ("FP16",)),
        ("10.11.0", "weak", (), ("INT8", "FP16"), ("FP16",)),
        ("10.12.0", "strong-optin", ("STRONGLY_TYPED",), (), ()),
        ("10.13.3", "strong-optin", ("STRONGLY_TYPED",), (), ()),
        ("11.0.0", "strong-always", (), (), ()),
        ("11.4.1", "strong-always", (), (), ()),
    ],
)
def test_version_switches(version, mode, net, int8, fp16):
    v = TrtVersion.parse(version)
    assert typing_mode(v) == mode
    assert network_flag_names(v) == net  # EXPLICIT_BATCH is never passed (deprecated in 10.x)
    assert builder_flag_names(v, "int8") == int8
    assert builder_flag_names(v, "fp16") == fp16
    assert builder_flag_names(v, "fp32") == ()


def _build(version, precision="int8"):
    return trtexec_build_args(TrtVersion.parse(version), precision, "model.onnx", "engine.plan", "latent", (100, 1, 1),
                              BatchProfile(1, 8, 32), 2048, "timing.cache")


def test_trtexec_build_jetpack6_weak_typing():
    args = _build("10.3.0")
    assert args[:2] == ["--onnx=model.onnx", "--saveEngine=engine.plan"]
    assert "--minShapes=latent:1x100x1x1" in args and "--optShapes=latent:8x100x1x1" in args and "--maxShapes=latent:32x100x1x1" in args
    assert "--int8" in args and "--fp16" in args and "--stronglyTyped" not in args  # float layers in FP16
    assert "--memPoolSize=workspace:2048M" in args and "--timingCacheFile=timing.cache" in args
    assert not any(a.startswith("--workspace") or a.startswith("--explicitBatch") for a in args)  # removed in 10.0
    assert "--fp16" in _build("10.3.0", "fp16") and "--int8" not in _build("10.3.0", "fp32")


def test_trtexec_build_strong_typing():
    thor = _build("10.13.3")
    assert "--stronglyTyped" in thor and "--int8" not in thor and "--fp16" not in thor
    trt11 = _build("11.0.0")
    # 11.x removed --int8/--fp16/--best; --stronglyTyped is the default there
    assert not {"--int8", "--fp16", "--best", "--stronglyTyped"} & set(trt11)


def test_trtexec_bench():
    args = trtexec_bench_args("engine.plan", "latent", (100, 1, 1), 8)
    assert args[0] == "--loadEngine=engine.plan" and "--shapes=latent:8x100x1x1" in args
    assert "--useCudaGraph" in args and "--noDataTransfers" in args
    assert "--useCudaGraph" not in trtexec_bench_args("engine.plan", "latent", (100, 1, 1), 8, cuda_graph=False)

"""OpenVINO as a CPU runtime: loader, runner, and INT8 through NNCF.

OpenVINO's CPU plugin runs the same ONNX graphs ONNX Runtime runs, from FP32 and from
Q/DQ INT8 (its low-precision transformations turn each DequantizeLinear -> Conv into an
integer convolution), and NNCF quantises an OpenVINO model post-training from the same
calibration inputs. On some generators (InstanceNorm ResNets, wide decoders) it is faster
than ONNX Runtime's integer kernels at equal quality, on others slower, so `build --int8
--target cpu` measures both (export/cpu_runtime.py).

`openvino` and `nncf` are optional (the `dev` extra), imported only when used: a missing
one says what to install and breaks nothing else. A bundle built for OpenVINO carries the
IR (`model.xml` + `model.bin`, no pickle); the loader also reads ONNX directly.
"""
from __future__ import annotations

import contextlib
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gencompress.errors import GencompressError, MissingDependencyError, first_line, import_optional

from .runner_base import Loader, Runner

IR_XML = "model.xml"
IR_BIN = "model.bin"
# Where a bundle built for OpenVINO keeps its IR (model.onnx stays ONNX Runtime's form).
BUNDLE_XML, BUNDLE_BIN = f"openvino/{IR_XML}", f"openvino/{IR_BIN}"
# "f32": every float op in FP32 (the exact peer of ONNX Runtime FP32). "bf16": float ops in
# bf16 (CPUs with AVX512-BF16 or AMX run it at full speed). "default": what the plugin picks by
# itself (bf16 on those CPUs, f32 elsewhere): a user's first try.
PRECISIONS = ("f32", "bf16", "default")
# NNCF's own default calibration size (nncf.quantize's subset_size): its candidates get as many.
NNCF_SUBSET_SIZE = 300
# CPU flags (gencompress.conditions.cpu_flags) of integer dot-product instructions: with them the
# 8-bit saturation that NNCF's overflow fix works around does not occur, so the fix (7-bit
# weights in the first layer) only costs accuracy.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def import_openvino():
    """Return the `openvino` module, or explain what to install."""
    return import_optional("openvino", "OpenVINO", 'install it with `pip install openvino` (CPU wheel, no CUDA), or `pip install -e ".[cpu]"`')


def import_nncf():
    """Return the `nncf` module, or explain what to install. NNCF logs to stdout, where
    `--json -` writes the build's summary: its log goes to stderr instead."""
    nncf = import_optional("nncf", "NNCF", 'install it with `pip install nncf openvino`, or `pip install -e ".[cpu]"`')
    for handler in logging.getLogger("nncf").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
            handler.setStream(sys.stderr)
    return nncf


def available() -> bool:
    try:
        import_openvino()
        import_nncf()
    except MissingDependencyError:
        return False
    return True


def read_model(path: str | Path):
    """An OpenVINO model from an ONNX file or an IR (.xml beside its .bin)."""
    ov = import_openvino()
    try:
        return ov.Core().read_model(str(path))
    except Exception as exc:
        raise GencompressError(f"OpenVINO cannot read {path}: {first_line(exc)[:300]}") from None


def save_ir(model, xml: Path) -> Path:
    """Write `model` as IR. compress_to_fp16=False: keep FP32 weights as they are (the
    default halves them, which changes an FP32 or NNCF model's numbers)."""
    ov = import_openvino()
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def compile_config(threads: int, precision: str) -> dict:
    """The CPU plugin's settings for one latency-oriented stream on `threads` cores."""
    if precision not in PRECISIONS:
        raise GencompressError(f"unknown OpenVINO precision {precision!r}; known: {', '.join(PRECISIONS)}")
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    if precision != "default":
        config["INFERENCE_PRECISION_HINT"] = precision
    return config


def fastest_float_precision(capabilities: list[str] | None = None) -> str:
    """The fastest float precision OpenVINO's CPU plugin offers here: "bf16" where it reports
    BF16 (AVX512-BF16, AMX: what it picks by itself there), else "f32". `capabilities`: the
    plugin's OPTIMIZATION_CAPABILITIES (None: asked)."""
    if capabilities is None:
        capabilities = list(import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return "bf16" if "BF16" in capabilities else "f32"


def cpu_has_vnni(flags: list[str] | None = None) -> bool:
    """Whether this CPU has an integer dot-product instruction (VNNI_FLAGS; `flags`: None reads them)."""
    from gencompress.conditions import cpu_flags

    return any(f in VNNI_FLAGS for f in (cpu_flags() if flags is None else flags))


def nncf_overflow_fix() -> bool | None:
    """nncf_int8's `overflow_fix` for this CPU: NNCF's fix (7-bit first-layer weights) works around
    a saturation that VNNI does not have, so False (off) with VNNI, None (NNCF's default) without."""
    return False if cpu_has_vnni() else None


@dataclass
class OpenVinoModel:
    """What OpenVinoRunner runs: a read (not yet compiled) model and the CPU plugin settings it
    is compiled with, once per batch size. `label` names it in error messages."""

    model: object  # openvino.Model
    config: dict
    label: str = "model"


class OpenVinoModelFromFile(Loader):
    """An OpenVINO model read from an ONNX file or an IR .xml, to run on `threads` CPU cores at
    float precision `precision` (one of PRECISIONS; checked here, before any work)."""

    def __init__(self, path: str | Path, threads: int = 2, precision: str = "f32"):
        self.config = compile_config(threads, precision)
        self.path, self.threads, self.precision = Path(path), threads, precision

    def __call__(self) -> OpenVinoModel:
        return OpenVinoModel(read_model(self.path), dict(self.config), self.path.name)

    def conditions(self) -> dict:
        return dict(self.config)


class OpenVinoRunner(Runner):
    """OpenVINO on the CPU, one compiled model per batch size.

    The graph's batch axis is dynamic; the CPU plugin runs a static shape faster, so the
    model is reshaped and compiled for each batch size it meets (once, then cached).
    """

    name = "openvino"

    def __init__(self, load: OpenVinoModelFromFile | OpenVinoModel, name: str | None = None):
        built = self._load(load, name)
        if not isinstance(built, OpenVinoModel):
            raise TypeError(f"OpenVinoRunner runs an OpenVinoModel (or its loader), not {type(built).__name__}")
        self.ov = import_openvino()
        self.core = self.ov.Core()
        self.model, self.config, self.label = built.model, built.config, built.label
        self._compiled: dict[int, object] = {}

    def _request(self, batch: int):
        if batch not in self._compiled:
            model = self.model.clone()
            shape = list(model.input(0).get_partial_shape())
            shape[0] = batch
            try:
                model.reshape({model.input(0).get_any_name(): self.ov.PartialShape(shape)})
                compiled = self.core.compile_model(model, "CPU", self.config)
            except Exception as exc:
                raise GencompressError(f"OpenVINO cannot compile {self.label}: {first_line(exc)[:300]}") from None
            self._compiled[batch] = compiled.create_infer_request()
        return self._compiled[batch]

    def conditions(self) -> dict:
        """What a timing taken with this runner depends on (the settings come with the model it runs)."""
        return {"backend": "openvino", "version": self.ov.get_version(), "device": "CPU", **self.config}

    def execution_precision(self, batch: int = 1) -> str:
        """The float precision the plugin really runs (bf16 where the CPU has it and no hint forbids it)."""
        compiled = self._request(batch).get_compiled_model()
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: "f32", "bf16", "f16"
        return hint.to_string() if hasattr(hint, "to_string") else str(hint)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        request = self._request(len(batch))
        try:
            request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        except Exception as exc:
            raise GencompressError(f"OpenVINO failed to run the model: {first_line(exc)[:300]}") from None
        return request.get_output_tensor(0).data.copy()

    def close(self) -> None:
        self._compiled.clear()


def nncf_int8(onnx_path: Path, calibration: np.ndarray, batch: int = 8, preset: str = "mixed", fast_bias_correction: bool = True,
              overflow_fix: bool | None = None, keep_float=(), int8_types=None):
    """NNCF post-training INT8 of the FP32 ONNX, read by OpenVINO, calibrated on `calibration`
    (all of it, in mini-batches of `batch`: NNCF's subset_size counts dataset items, here
    batches). Returns the quantised OpenVINO model.

    `preset`: "performance" (symmetric activations, NNCF's default) or "mixed" (asymmetric
    activations: a generator's activations are rarely centred on zero). Weights per channel.
    `overflow_fix`: None keeps NNCF's default (first layer); False disables it, as on CPUs with
    VNNI (nncf_overflow_fix).
    `keep_float`: ONNX node names NNCF leaves float (its ignored scope); `int8_types`: the
    OpenVINO op types it may quantise (None: all it would).
    """
    nncf = import_nncf()
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    if preset not in presets:
        raise GencompressError(f"unknown NNCF preset {preset!r}; known: {', '.join(presets)}")
    model = read_model(onnx_path)
    batches = [np.ascontiguousarray(calibration[i : i + batch], dtype=np.float32) for i in range(0, len(calibration), batch)]
    advanced = None
    if overflow_fix is False:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

        advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix.DISABLE)
    try:
        # NNCF draws its progress bars on stdout, where `--json` writes the results: send them to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            return nncf.quantize(model, nncf.Dataset(batches), preset=presets[preset], subset_size=len(batches),
                                 fast_bias_correction=fast_bias_correction, advanced_parameters=advanced,
                                 ignored_scope=ignored_scope(model, keep_float, int8_types) if keep_float or int8_types else None)
    except Exception as exc:
        raise GencompressError(f"NNCF INT8 quantisation of {Path(onnx_path).name} failed: {first_line(exc)[:300]}") from None


# What the toolkit's ONNX Runtime search quantises (int8_cpu.QUANTIZED_OPS), as OpenVINO's op types
SEARCHED_TYPES = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")


def ignored_scope(model, onnx_names=(), int8_types=None):
    """NNCF's ignored scope for `model`: its ONNX nodes `onnx_names` and, with `int8_types`, every
    op type of `model` not in it. OpenVINO's ONNX reader names a convolution with a bias
    `NAME/WithoutBiases` (the bias its own Add, named NAME), and other ops NAME. Not validated name
    by name (a layer's data movement and fused activation need not survive as ops), but names
    that match no op of `model` are an error, not an all-INT8 graph."""
    nncf = import_nncf()
    patterns = [f"^{re.escape(name)}(/WithoutBiases)?$" for name in onnx_names]
    if patterns and not any(re.match(p, op.get_friendly_name()) for op in model.get_ops() for p in patterns):
        raise GencompressError(f"none of the {len(onnx_names)} layers to keep float is an op of the OpenVINO model (first: {onnx_names[0]})")
    types = sorted({op.get_type_name() for op in model.get_ops()} - set(int8_types)) if int8_types else []
    return nncf.IgnoredScope(patterns=patterns, types=types, validate=False)

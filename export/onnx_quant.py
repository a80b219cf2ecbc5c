"""INT8 on an ONNX graph, for models we only have as ONNX (or TorchScript, exported first).

This uses ONNX Runtime's static quantisation. `qdq_symmetric` writes TensorRT's explicit
form (symmetric INT8 activations and weights, zero-point 0, per-channel weights), the
same contract as modelopt's export. `quantize_prepared` writes the form ONNX Runtime's CPU
provider runs as integer kernels (`--target cpu`): unsigned asymmetric activations,
per-channel signed weights, only Conv/Gemm/MatMul quantised, so every Conv becomes a
QLinearConv (symmetric Q/DQ graphs ran slower than FP32 there).

These are the quantisation engine's forms, not entry points: `build`, `sweep` and the scripts
all go through export.precision.apply_precision, whose `--target cpu` search (int8_cpu.py)
is the only caller of `quantize_prepared`.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from gencompress.data import draw_inputs
from gencompress.errors import GencompressError, first_line
from gencompress.memory import release
from gencompress.onnx_utils import opset_of


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over drawn inputs, in batches, read one
    batch per `collect_data` call (see STRIDED: the calibrator then holds one batch's
    activations, not every batch's)."""

    def __init__(self, input_name: str, inputs: np.ndarray, batch: int):
        from gencompress.progress import bar

        self.batches = [{input_name: inputs[i : i + batch]} for i in range(0, len(inputs), batch)]
        self.progress = bar(None, "calibrate", total=len(self.batches), leave=False)
        self.chunks = iter(self.batches)  # all of them, unless quantize_static strides with set_range
        self.read = 0  # batches handed out

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.chunks = iter(self.batches[start_index:end_index])

    def get_next(self):
        chunk = next(self.chunks, None)
        if chunk is not None:
            self.read += 1
            self.progress.update(1)
            if self.read == len(self.batches):
                self.progress.close()
        return chunk


# quantize_static's calibrators keep every batch's intermediate outputs until the reader is
# drained (the histogram ones for the whole pass), then reduce them: a 256x256 decoder on 56
# inputs asked for tens of GB. With a stride of one batch, quantize_static calls collect_data
# once per batch, and each call reduces its batch into the running min/max or histogram.
STRIDED = {"CalibStridedMinMax": 1}


def quantize_qdq_symmetric(src: Path, dst: Path, input_shape, distribution: str, samples: int = 256, seed: int = 1234,
                           inputs: np.ndarray | None = None, batch: int = 32) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    options = dict(
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["Conv", "ConvTranspose", "Gemm", "MatMul"],
        calibrate_method=CalibrationMethod.MinMax,
        # biases stay float: TensorRT's explicit quantisation takes INT8 Q/DQ only (an INT32 bias
        # DequantizeLinear fails the Q/DQ lint, export/qdq_lint.py)
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False, **STRIDED},
    )
    return _quantize_static(src, dst, input_shape, distribution, samples, seed, options, inputs, batch)


CPU_FORMATS = ("qdq", "qoperator")
# QuantizeLinear/DequantizeLinear take FP16 scales from opset 19 (convert_fp16)
FP16_QDQ_OPSET = 19
# Pure data movement: run on uint8 between integer convolutions instead of paying a
# Dequantize/Quantize pair around each (exact: the same scale passes through).
MOVE_OPS = ("DepthToSpace", "Reshape", "Transpose")
# Removed by folding into the preceding convolution's output range (unsigned, from 0).
FUSED_ACTIVATIONS = ("Relu", "Clip")


def _register_move_ops() -> None:
    """ONNX Runtime's quantiser lists Reshape and Transpose as 8-bit pass-through ops but not
    DepthToSpace (whose CPU kernel takes uint8); register it the same way."""
    from onnxruntime.quantization import registry
    from onnxruntime.quantization.operators.direct_q8 import Direct8BitOp, QDQDirect8BitOp

    registry.QDQRegistry.setdefault("DepthToSpace", QDQDirect8BitOp)
    registry.QLinearOpsRegistry.setdefault("DepthToSpace", Direct8BitOp)
CPU_CALIBRATORS = {"max": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
CPU_FORM = ("ONNX Runtime CPU integer form (quantize_static {fmt}): U8 asymmetric activations, per-channel S8 weights in 7 bits; "
            "Conv/Gemm/MatMul integer, ReLU fused into them, DepthToSpace/Reshape/Transpose on uint8")


def cpu_options(fmt: str = "qdq", calibrator: str = "max") -> dict:
    """quantize_static's options for the CPU integer form.

    Weights are 7-bit (reduce_range): on x86 CPUs without VNNI (AVX2, as on this AMD EPYC)
    ONNX Runtime's U8S8 kernels add pairs of u8 x s8 products in int16 (vpmaddubsw), which
    saturates for 8-bit weights; that alone cost the CycleGAN-style generator 29.7 dB against
    43.7 dB with 7-bit weights, and 24.9 against 35.6 dB on a TAESD-like decoder. A bundle is
    built once and run on CPUs with and without VNNI, so the safe form is the only form; the
    bit it costs is per channel and was worth < 1 dB wherever 8 bits did not saturate.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    if fmt not in CPU_FORMATS:
        raise GencompressError(f"unknown CPU INT8 format {fmt!r}; known: {', '.join(CPU_FORMATS)}")
    if calibrator not in CPU_CALIBRATORS:
        raise GencompressError(f"calibrator {calibrator!r} is not available for ONNX quantisation; known: {', '.join(CPU_CALIBRATORS)}")
    return dict(
        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        op_types_to_quantize=["Conv", "Gemm", "MatMul", *MOVE_OPS, *FUSED_ACTIVATIONS],
        calibrate_method=getattr(CalibrationMethod, CPU_CALIBRATORS[calibrator]),
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, **STRIDED},
    )


def activation_bytes_per_sample(path: Path) -> int:
    """Bytes of every float tensor one input sample makes flow through the graph (shapes from
    ONNX shape inference, the batch axis excluded; tensors of unknown shape not counted)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    total = 0
    # by name: infer_shapes repeats what the graph already annotated
    for info in {i.name: i for i in [*model.graph.value_info, *model.graph.output]}.values():
        t = info.type.tensor_type
        if t.elem_type != onnx.TensorProto.FLOAT or not t.HasField("shape"):
            continue
        dims = [d.dim_value for d in t.shape.dim[1:]]
        if dims and all(d > 0 for d in dims):
            total += 4 * int(np.prod(dims))
    return total


def calibration_batch(path: Path, batch: int) -> int:
    """quantize_static's calibrators make every activation a graph output and hold a batch's
    worth at once: `batch`, or fewer so that one batch's activations stay under
    batching.CALIBRATION_BUDGET_MB (a 256-px decoder holds ~0.5 GB per sample)."""
    from gencompress.batching import CALIBRATION_BUDGET_MB, batch_for

    return min(batch, batch_for(activation_bytes_per_sample(path), CALIBRATION_BUDGET_MB))


def prepare_for_quantization(src: Path, dst: Path) -> Path:
    """quantize_static's pre-processing (shape inference, ORT's basic graph optimisations),
    then one bias initializer per layer: the graph whose node names a search excludes."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger().setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    except Exception as exc:
        raise GencompressError(f"ONNX INT8 pre-processing of {src.name} failed: {first_line(exc)[:300]}") from None
    finally:
        release(src.stat().st_size)  # its shape inference and optimisation sessions
    unshare_biases(dst)
    return dst


def quantize_prepared(prepared: Path, dst: Path, inputs: np.ndarray | None, fmt: str = "qoperator", calibrator: str = "max",
                      nodes_to_exclude=(), nodes_to_quantize=None, cache: Path | None = None, batch: int = 32) -> Path:
    """The CPU integer form of a prepared graph, some nodes left float. With `cache`, the
    calibrator's tensor ranges are computed on the first call and read back on later ones
    (`inputs` may then be None)."""
    from onnxruntime.quantization import quantize_static

    import onnxruntime as ort

    options = cpu_options(fmt, calibrator)
    _register_move_ops()
    reader = None
    if inputs is not None and not (cache is not None and cache.is_file()):  # a cache hit reads no inputs
        input_name = ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).get_inputs()[0].name
        reader = _Reader(input_name, inputs, calibration_batch(prepared, batch))
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(prepared), str(dst), reader, nodes_to_exclude=list(nodes_to_exclude),
                            nodes_to_quantize=nodes_to_quantize, calibration_cache_path=cache, **options)
    except Exception as exc:
        raise GencompressError(f"ONNX INT8 quantisation of {prepared.name} failed: {first_line(exc)[:300]}") from None
    finally:
        release(prepared.stat().st_size)  # its models and calibration session, freed before a search's next candidate
    return dst


def _quantize_static(src: Path, dst: Path, input_shape, distribution: str, samples: int, seed: int, options: dict,
                     inputs: np.ndarray | None = None, batch: int = 32) -> Path:
    """quantize_static over `inputs` in batches of `batch` (ONNX Runtime's arena holds one batch's
    activations: a batch of 32 at 256x256 is gigabytes)."""
    from onnxruntime.quantization import quantize_static

    import onnxruntime as ort

    input_name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    if inputs is None:
        inputs = draw_inputs(tuple(input_shape), samples, distribution, seed).numpy()
    prepped = prepare_for_quantization(src, dst.with_name(dst.stem + ".prep.onnx"))
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(prepped), str(dst), _Reader(input_name, inputs, calibration_batch(prepped, batch)), **options)
    except Exception as exc:
        first = first_line(exc)
        raise GencompressError(f"ONNX INT8 quantisation of {src.name} failed: {first[:300]}") from None
    finally:
        prepped.unlink(missing_ok=True)
    return dst


def unshare_biases(path: Path) -> int:
    """Give every Conv/ConvTranspose/Gemm its own bias initializer (in place); returns how many
    were copied.

    The ONNX exporter merges initializers of equal value, so layers with equal biases (the
    four phases of a rewritten deconvolution all carry the deconvolution's bias) share one.
    quantize_static then quantises that bias once, with the first layer's input and weight
    scales, and gives every other layer an int32 bias on the wrong scale (the four-phase
    DCGAN lost 20 dB to it).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    seen: set[str] = set()
    copied = 0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm") or len(node.input) < 3 or node.input[2] not in inits:
            continue
        name = node.input[2]
        if node.op_type == "Gemm" and len(inits[name].dims) == 2 and inits[name].dims[0] == 1:
            # a 1 x N bias (NVlabs' FullyConnectedLayer: addmm(b.unsqueeze(0), ...)) as the N-vector it
            # broadcasts as: quantize_static's int32 bias scaling fails on a 2-D one
            flat = f"{name}__flat_{node.name or copied}"
            model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[name]).reshape(-1).copy(), flat))
            inits[flat], node.input[2], name = model.graph.initializer[-1], flat, flat
            copied += 1
        if name in seen:
            copy_name = f"{name}__{node.name or copied}"
            model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[name]).copy(), copy_name))
            node.input[2] = copy_name
            copied += 1
        seen.add(name)
    if copied:
        onnx.save(model, str(path))
    return copied


def convert_fp16(src: Path, dst: Path) -> Path:
    """FP16 weights and compute, FP32 inputs and outputs (keep_io_types).

    A Q/DQ graph keeps its INT8 layers INT8 and computes everything else in FP16: TensorRT's
    strongly typed mixed INT8/FP16 form (10.12+ and 11.x take precision from the graph; weakly
    typed 10.x builds it the same with --int8 --fp16). Its opset is raised to 19 first, where
    QuantizeLinear/DequantizeLinear take FP16 scales: each DequantizeLinear then feeds its INT8
    layer FP16 directly, as TensorRT needs to fuse the pair (a Cast between them would leave the
    layer in float; the Q/DQ lint catches that)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node) and opset_of(model) < FP16_QDQ_OPSET:
        model = onnx.version_converter.convert_version(model, FP16_QDQ_OPSET)
    model = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(model, str(dst))
    return dst


def fp16_emulation(src: Path, dst: Path) -> Path:
    """The FP32 graph `src` computing as convert_fp16's graph stores: every float initializer
    rounded to FP16 as the converter writes it, and every float tensor a node writes (and the
    graph input) passed through Cast(FP16) -> Cast(FP32). That is FP16 storage, with its rounding
    and its overflow past 65504, and FP32 arithmetic within each op, as TensorRT accumulates.

    ONNX Runtime's CPU provider cannot show this on the converted graph itself: it runs most FP16
    ops in FP32 behind Casts it inserts and keeps the values between them in FP32, so a sum that
    cancels in FP16 (x + 2000 - 2000) measured near-lossless there and all-zero in true FP16.
    Run with optimisations off (the Cast pairs are the point)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.transformers.float16 import convert_np_to_float16

    from .checks import topological_sort

    model = onnx.shape_inference.infer_shapes(onnx.load(str(src)))
    graph = model.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            value = numpy_helper.to_array(init)  # as the converter writes it (flat: it cannot take a 0-d scale)
            init.CopyFrom(numpy_helper.from_array(convert_np_to_float16(value.reshape(-1)).astype(np.float32).reshape(value.shape), init.name))
    floats = {v.name for v in (*graph.value_info, *graph.output) if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    inputs = {i.name for i in graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}

    def rounded(raw: str, name: str) -> list:
        return [helper.make_node("Cast", [raw], [f"{raw}__fp16"], to=TensorProto.FLOAT16),
                helper.make_node("Cast", [f"{raw}__fp16"], [name], to=TensorProto.FLOAT)]

    casts = []
    for node in graph.node:
        for k, name in enumerate(node.output):
            if name in floats:  # the node writes the raw value; the rounded one takes its name
                node.output[k] = f"{name}__raw"
                casts += rounded(node.output[k], name)
        node.input[:] = [f"{t}__rounded" if t in inputs else t for t in node.input]
    casts += [c for name in inputs for c in rounded(name, f"{name}__rounded")]
    graph.node.extend(casts)
    del graph.value_info[:]  # stale after the renames; ONNX Runtime infers the types again
    onnx.save(topological_sort(model), str(dst))
    return dst


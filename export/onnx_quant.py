"""INT8 on an ONNX graph, for models we only have as ONNX (or TorchScript, exported first).

This uses ONNX Runtime's static quantisation. `qdq_symmetric` writes TensorRT's explicit
form (symmetric INT8 activations and weights, zero-point 0, per-channel weights), the
same contract as modelopt's export; the CPU-oriented form belongs to `--target cpu`.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from gencompress.data import draw_inputs
from gencompress.errors import GencompressError


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over drawn inputs, in batches."""

    def __init__(self, input_name: str, inputs: np.ndarray, batch: int):
        self.chunks = iter([{input_name: inputs[i : i + batch]} for i in range(0, len(inputs), batch)])

    def get_next(self):
        return next(self.chunks, None)


def quantize_qdq_symmetric(src: Path, dst: Path, input_shape, distribution: str, samples: int = 256, seed: int = 1234) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import onnxruntime as ort

    input_name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    inputs = draw_inputs(tuple(input_shape), samples, distribution, seed).numpy()
    prepped = dst.with_name(dst.stem + ".prep.onnx")
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(src), str(prepped), skip_symbolic_shape=True)
            quantize_static(
                str(prepped),
                str(dst),
                _Reader(input_name, inputs, 32),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["Conv", "ConvTranspose", "Gemm", "MatMul"],
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GencompressError(f"ONNX INT8 quantisation of {src.name} failed: {first[:300]}") from None
    finally:
        prepped.unlink(missing_ok=True)
    return dst


def convert_fp16(src: Path, dst: Path) -> Path:
    """FP16 weights and compute, FP32 inputs and outputs (keep_io_types)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return dst

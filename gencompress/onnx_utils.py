"""Small ONNX helpers the core needs (reading shapes, validating files)."""
from __future__ import annotations

from pathlib import Path

from .errors import GencompressError, first_line


def load_onnx(path: str | Path, check: bool = True):
    """Load and (optionally) fully check an ONNX file, with a one-line error if it is broken."""
    import onnx

    # protobuf caps a model at 2 GiB; external data files beside it are checked by onnx
    # itself (a location outside the model's folder is refused).
    size = Path(path).stat().st_size if Path(path).is_file() else -1
    if size <= 0:
        raise GencompressError(f"{path} is not a valid ONNX model: {'empty file' if size == 0 else 'no such file'}")
    try:
        model = onnx.load(str(path))
        if check:
            onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # protobuf DecodeError, ValidationError, OSError ...
        first = first_line(exc)
        raise GencompressError(f"{path} is not a valid ONNX model: {first[:200]}") from None
    return model


def onnx_input_shape(path: str | Path) -> tuple[int, ...]:
    """The first input's shape with the batch axis set to 1; other dims must be fixed."""
    model = load_onnx(path)
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise GencompressError(f"{path} has {len(inputs)} inputs; a generator takes exactly one")
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims:
        raise GencompressError(f"{path}: the input has no shape; a generator takes N x ... inputs")
    if dims[0].HasField("dim_value") and dims[0].dim_value != 0:
        # every stage runs batches (calibration, evaluation, latency at several sizes)
        raise GencompressError(
            f"{path}: the batch axis is fixed at {dims[0].dim_value}; export it with a dynamic batch axis "
            "(torch.onnx.export(..., dynamic_axes={'input': {0: 'batch'}}))"
        )
    shape = [1]
    for i, dim in enumerate(dims[1:], start=1):
        if not dim.HasField("dim_value"):
            raise GencompressError(f"{path}: input dimension {i} ({dim.dim_param or '?'}) is dynamic; only the batch axis may be")
        shape.append(dim.dim_value)
    return tuple(shape)


def _model(model_or_path):
    """An onnx.ModelProto as it is, or the one at a path (without its external weights)."""
    import onnx

    return model_or_path if isinstance(model_or_path, onnx.ModelProto) else onnx.load(str(model_or_path), load_external_data=False)


def float_compute(model_or_path) -> str:
    """The float type a graph (a ModelProto, or its path) computes in outside its INT8 layers:
    "fp16" where it holds FP16 weights or scales (export/onnx_quant.convert_fp16), else "fp32"."""
    import onnx

    return "fp16" if any(t.data_type == onnx.TensorProto.FLOAT16 for t in _model(model_or_path).graph.initializer) else "fp32"


def opset_of(model_or_path) -> int:
    """The default-domain opset a graph (a ModelProto, or its path) imports."""
    return next(o.version for o in _model(model_or_path).opset_import if o.domain in ("", "ai.onnx"))

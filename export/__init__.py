"""Stage 2: ONNX (FP32 or Q/DQ INT8), graph-level quantisation, runners (ORT, TensorRT)."""
from .onnx_export import OnnxConfig, to_onnx  # noqa: F401

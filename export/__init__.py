"""Stage 2: ONNX (FP32, FP16 or Q/DQ INT8), checks and verification, runners (ORT, TensorRT),
Jetson deployment bundles."""
from .onnx_export import OnnxConfig, to_onnx  # noqa: F401
from .profiles import BatchProfile  # noqa: F401
from .stage import ExportConfig, export  # noqa: F401

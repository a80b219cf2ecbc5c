"""Stage 2: ONNX (FP32, FP16 or Q/DQ INT8), checks and verification, runners (ORT, TensorRT),
Jetson deployment bundles.

The stage API that `build` (gencompress/cli/pipeline.py) chains: `with_fp32_onnx` (the source
bundle holding its FP32 graph), `apply_precision` (the precision x target form; for --target cpu
also the runtime measured), `check_export`, then `deploy`'s deployment runner and engine; the
runners (loader + runner pairs) run graphs and modules.
"""
from gencompress.lazy import lazy_exports

# Imported on first use (gencompress/lazy.py): the CPU timing child imports runners and
# openvino from this package and must not pay for PyTorch, onnx and modelopt first.
__getattr__, __dir__ = lazy_exports(__name__, {
    "deployment_runner": "deploy", "engine_for_target": "deploy",
    "OnnxConfig": "onnx_export", "export_module": "onnx_export", "to_onnx": "onnx_export",
    "OPENVINO_XML": "openvino:BUNDLE_XML",
    "PRECISIONS": "precision", "CPU_RUNTIME_CHOICES": "precision", "PrecisionConfig": "precision", "apply_precision": "precision",
    "with_fp32_onnx": "precision", "extend_float_layers": "precision", "fp16_float_layers": "precision",
    "BatchProfile": "profiles",
    "OrtRunner": "runners", "SessionFromOnnx": "runners", "TorchRunner": "runners", "run_batches": "runners", "run_and_close": "runners",
    "ExportConfig": "stage", "check_export": "stage", "export": "stage",
})

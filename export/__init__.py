"""Stage 2: ONNX (FP32, FP16 or Q/DQ INT8), checks and verification, runners (ORT, TensorRT),
Jetson deployment bundles.

The stage API that `build` (gencompress/cli/pipeline.py) chains: `export_module` (FP32 ONNX),
`apply_precision` (the precision x target form), `check_export`, then `deploy`'s runtime choice,
deployment runner and engine; the runners (loader + runner pairs) run graphs and modules.
"""
from .deploy import choose_cpu_runtime, deployment_runner, engine_for_target  # noqa: F401
from .onnx_export import OnnxConfig, export_module, to_onnx  # noqa: F401
from .openvino import BUNDLE_XML as OPENVINO_XML  # noqa: F401
from .precision import PRECISIONS, PrecisionConfig, apply_precision  # noqa: F401
from .profiles import BatchProfile  # noqa: F401
from .runners import OrtRunner, SessionFromOnnx, TorchRunner, run_batches  # noqa: F401
from .stage import ExportConfig, check_export, export  # noqa: F401

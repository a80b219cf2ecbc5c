"""What a built bundle runs on: the runner of the runtime it was built for, and the TensorRT
engine where TensorRT imports.

The build (gencompress/cli/pipeline.py) calls these after the precision stage, which records a
--target cpu runtime choice in the bundle (its `runtime` step, its openvino/ files;
export/precision.py), so export, bench and the report find the choice in one place.
"""
from __future__ import annotations

from pathlib import Path

from gencompress import defaults
from gencompress.bundle import ONNX, Bundle
from gencompress.errors import MissingDependencyError
from gencompress.progress import log

from . import tensorrt as trt_backend
from .openvino import BUNDLE_XML as OPENVINO_XML
from .runners import OrtRunner, Runner, SessionFromOnnx


def deployment_runner(bundle: Bundle, threads: int, optimization: str = "all") -> Runner:
    """The runner of the runtime the bundle was built for: OpenVINO's IR where it won the CPU
    runtime choice, else ONNX Runtime on model.onnx at `optimization`."""
    step = bundle.last_step("runtime")
    if step and step["runtime"] == "openvino":
        from .openvino import OpenVinoModelFromFile, OpenVinoRunner

        # compiled as the choice measured it: its float layers (all, for the float model) in bf16 where that won
        return OpenVinoRunner(OpenVinoModelFromFile(bundle.file(OPENVINO_XML), threads, step.get("inference_precision", "f32")))
    return OrtRunner(SessionFromOnnx(bundle.file(ONNX), threads, optimization))


def engine_for_target(onnx_path: Path, plan_path: Path, target: str) -> dict:
    """Build a TensorRT engine from `onnx_path` into `plan_path` where TensorRT imports; say
    plainly why not where it does not (cpu target, Jetson target, no TensorRT)."""
    if target == "cpu":
        return {"built": False, "message": "no TensorRT engine for --target cpu (ONNX Runtime runs the ONNX)"}
    if target in defaults.JETSON_TARGETS:
        msg = f"engine not built here: run build_engine.sh on the {target} (engines are specific to its GPU and TensorRT)"
        log(msg)
        return {"built": False, "message": msg}
    try:
        trt_backend.import_tensorrt()
    except MissingDependencyError as exc:
        msg = f"TensorRT engine not built: {exc}. The Q/DQ ONNX in this bundle is what TensorRT builds from."
        log(msg)
        return {"built": False, "message": msg}
    from .tensorrt.builder import build_engine_file

    info = build_engine_file(onnx_path, plan_path)
    return {"built": True, "message": f"TensorRT {info['tensorrt_version']} engine built on {info['gpu']}", **info}

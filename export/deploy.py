"""What a built bundle runs on: the CPU runtime chosen by measurement, the runner of that
runtime, and the TensorRT engine where TensorRT imports.

The build (gencompress/cli/pipeline.py) calls these three after the precision stage; each one
reads and records what it needs in the bundle (its `runtime` step, its openvino/ files), so
export, bench and the report find the choice in one place.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from gencompress import defaults
from gencompress.bundle import ONNX, Bundle
from gencompress.errors import MissingDependencyError
from gencompress.inputs import UserData

from . import tensorrt as trt_backend
from .openvino import BUNDLE_BIN as OPENVINO_BIN, BUNDLE_XML as OPENVINO_XML
from .runners import OrtRunner, Runner, SessionFromOnnx


def log(msg: str) -> None:
    print(f"gencompress: {msg}", file=sys.stderr)


def choose_cpu_runtime(final: Bundle, fp32_onnx: Path, reference: np.ndarray, inputs: np.ndarray, work: Path, *, threads: int,
                       batch: int, calib_samples: int, calib_from: str = "auto", min_psnr: float | None = None,
                       data: UserData | None = None) -> dict | None:
    """`--target cpu` INT8: measure ONNX Runtime's integer form against OpenVINO's INT8 forms
    (export/cpu_runtime.py) and record the winner in the bundle: the runtime in a recipe step,
    and, where OpenVINO won, its IR under openvino/ (model.onnx stays ONNX Runtime's form).
    None where OpenVINO is not installed (said on stderr)."""
    from gencompress.compress.calibration import calibration_inputs

    from . import cpu_runtime, openvino
    from .precision import CALIB_SEED, int8_cpu_as_qdq

    if not openvino.available():
        log("CPU runtime: ONNX Runtime (OpenVINO and NNCF are not installed, so not measured: pip install openvino nncf)")
        return None
    calib, _ = calibration_inputs(final, calib_samples, CALIB_SEED, calib_from, data)
    qdq_dir = work / "openvino-qdq"
    qdq_dir.mkdir()
    qdq = int8_cpu_as_qdq(final.last_step("quantize"), work, qdq_dir / ONNX)
    choice = cpu_runtime.choose_cpu_runtime(fp32_onnx, final.file(ONNX), qdq, calib.numpy(), inputs, reference, work / "runtime",
                                            threads, batch, min_psnr)
    log(f"CPU runtime: {cpu_runtime.summary_line(choice)}")
    step = {"step": "runtime", "target": "cpu", "runtime": choice["runtime"], "candidate": choice["candidate"],
            "psnr_db": choice["psnr_db"], "speedup_vs_fp32_ort": choice["speedup_vs_fp32_ort"]}
    if choice["runtime"] == "openvino":
        winner = next(c for c in choice["candidates"] if c["name"] == choice["candidate"])
        src = qdq if winner["graph"]["file"].endswith(".onnx") else work / "runtime" / winner["name"] / openvino.IR_XML
        xml = openvino.save_ir(openvino.read_model(src), work / "openvino" / openvino.IR_XML)
        final.files[OPENVINO_XML], final.files[OPENVINO_BIN] = xml, xml.with_suffix(".bin")
        step["files"] = [OPENVINO_XML, OPENVINO_BIN]
    final.record(step)
    return choice


def deployment_runner(bundle: Bundle, threads: int, optimization: str = "all") -> Runner:
    """The runner of the runtime the bundle was built for: OpenVINO's IR where it won the CPU
    runtime choice, else ONNX Runtime on model.onnx at `optimization`."""
    step = bundle.last_step("runtime")
    if step and step["runtime"] == "openvino":
        from .openvino import OpenVinoModelFromFile, OpenVinoRunner

        return OpenVinoRunner(OpenVinoModelFromFile(bundle.file(OPENVINO_XML), threads))
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

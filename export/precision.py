"""The precision stage of `build`: a bundle holding its FP32 graph (SOURCE_ONNX, see
`with_fp32_onnx`) -> a bundle holding model.onnx in the precision and form its target runs,
under the quality floor.

One function per (precision, target) form, chosen by `apply_precision`:
- INT8, --target cpu: ONNX Runtime's integer form, searched under the floor (int8_cpu.py),
  then measured against OpenVINO's INT8 forms (cpu_runtime.py), the winner recorded in the
  bundle's `runtime` step;
- INT8, GPU/Jetson, PyTorch modules: modelopt fake-quant under the floor, exported to
  TensorRT's explicit Q/DQ (compress.quantize);
- INT8, GPU/Jetson, a TorchScript or ONNX model: symmetric Q/DQ on the graph (onnx_quant);
- FP16: FP16 weights and compute, FP32 I/O; FP32: the exported graph as it is.
The build (gencompress/cli/pipeline.py) only chains this with export, checks and measures.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gencompress import defaults
from gencompress.bundle import ONNX, SOURCE_ONNX, Bundle
from gencompress.compress import QuantConfig, quantize
from gencompress.compress.calibration import calibration_inputs
from gencompress.inputs import UserData
from gencompress.compress.quantize import CALIBRATOR_CHOICES
from gencompress.data import draw_inputs
from gencompress.errors import GencompressError
from gencompress.floor import QualityFloor, quality_floor
from gencompress.progress import log

from .int8_cpu import float_reference, requantize, search_cpu_int8
from .onnx_export import OnnxConfig, export_module, to_onnx
from .onnx_quant import CPU_CALIBRATORS, CPU_FORM, convert_fp16, prepare_for_quantization, quantize_qdq_symmetric

PRECISIONS = defaults.PRECISIONS
CPU_RUNTIME_CHOICES = ("auto", "onnxruntime")  # --cpu-runtime: measure ONNX Runtime against OpenVINO, or keep ONNX Runtime
CALIB_SEED = 1234  # the calibration draw; held-out search inputs use CALIB_SEED + 1, the build's evaluation seed 0


CPU_PREPARED = "fp32-prepared.onnx"  # int8_cpu's pre-processed float graph, in the build's work folder

# A build's float-layer search aims this far above its floor (see QuantConfig.search_margin_db).
SEARCH_MARGIN_DB = 0.3


@dataclass
class PrecisionConfig:
    precision: str = "int8"
    target: str = "gpu"
    calibrator: str = "auto"  # auto: the best on held-out inputs (see compress/quantize.py, int8_cpu.py)
    calib_samples: int = defaults.CALIB_SAMPLES
    calib_batch: int = 32  # mini-batches: ONNX Runtime's arena holds one batch's activations
    calib_from: str = "auto"
    deconv_weight_axis: int = 1
    min_psnr: float | None = None  # None: the default floor (gencompress/floor.py)
    no_floor: bool = False
    qat_steps: int = 0
    bias_correction: bool = False  # --bias-correction (gpu/Jetson targets: modelopt)
    eval_samples: int = defaults.EVAL_SAMPLES
    threads: int = 2
    deconv_form: str = "sub-pixel"  # how --target cpu rewrites ConvTranspose (compress/rewrite.py)
    speed_aware: bool = True  # --target cpu: layers not faster in INT8 (ONNX Runtime's profile) stay float
    histogram_samples: int | None = None  # --target cpu: entropy/percentile calibrate on the first N inputs (None: all)
    cpu_runtime: str = "auto"  # --target cpu: auto measures ONNX Runtime against OpenVINO (CPU_RUNTIME_CHOICES)
    timing_batch: int = 8  # --target cpu: the batch the runtime choice times

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise GencompressError(f"unknown precision {self.precision!r}")
        if self.target == "cpu" and self.calibrator not in ("auto", *CPU_CALIBRATORS):
            raise GencompressError(f"calibrator {self.calibrator!r} is not available for --target cpu (ONNX Runtime); "
                                   f"known: auto, {', '.join(CPU_CALIBRATORS)}")
        if self.target == "cpu" and self.bias_correction:
            raise GencompressError("--bias-correction corrects modelopt's fake-quant model (gpu/Jetson targets); --target cpu has none "
                                   "(its NNCF candidates on OpenVINO apply NNCF's own bias correction)")
        if self.cpu_runtime not in CPU_RUNTIME_CHOICES:
            raise GencompressError(f"unknown CPU runtime {self.cpu_runtime!r}; known: {', '.join(CPU_RUNTIME_CHOICES)}")
        if self.target == "cpu" and self.qat_steps:
            raise GencompressError("--qat-steps fine-tunes modelopt's fake-quant model (gpu/Jetson targets); --target cpu has none")
        self.quant_config().validate()

    def floor(self) -> QualityFloor | None:
        return quality_floor(self.min_psnr, self.no_floor)

    def quant_config(self) -> QuantConfig:
        return QuantConfig(calibrator=self.calibrator if self.calibrator in CALIBRATOR_CHOICES else "auto", calib_samples=self.calib_samples,
                           calib_batch=self.calib_batch, calib_from=self.calib_from, deconv_weight_axis=self.deconv_weight_axis, min_psnr=self.min_psnr,
                           no_floor=self.no_floor, qat_steps=self.qat_steps, bias_correction=self.bias_correction, eval_samples=self.eval_samples, seed=CALIB_SEED,
                           search_margin_db=SEARCH_MARGIN_DB)


def with_fp32_onnx(source: Bundle, work: Path) -> Bundle:
    """The source bundle holding its FP32 graph as SOURCE_ONNX (exported into `work` from its
    PyTorch model; an imported ONNX model holds it already): what the precision stage
    quantises or converts, and what the build times and judges the result against."""
    if SOURCE_ONNX in source.files:
        return source
    if source.model is None:
        raise GencompressError("the bundle has neither a PyTorch model nor an FP32 ONNX graph to compress")
    # the same bundle, one more file: the graph is the source's own form, not a step of its recipe
    fp32 = export_module(source.model, source.input_shape, Path(work) / "fp32.onnx", OnnxConfig())
    return replace(source, files={**source.files, SOURCE_ONNX: fp32})


def apply_precision(source: Bundle, cfg: PrecisionConfig, work: Path, progress: bool = True,
                    data: UserData | None = None) -> tuple[Bundle, str]:
    """The bundle with model.onnx in cfg's precision and target form (and, for --target cpu,
    the measured runtime), and that form in words. `source` holds its FP32 graph (with_fp32_onnx)."""
    cfg.validate()
    fp32_onnx = source.file(SOURCE_ONNX)
    graph_only = source.model is None or source.manifest["architecture"]["kind"] == "torchscript"
    if cfg.precision == "int8" and cfg.target == "cpu":
        return int8_cpu(source, cfg, fp32_onnx, work, progress, data)
    if cfg.precision == "int8" and not graph_only:
        quantized = quantize(source, cfg.quant_config(), progress=progress, data=data)
        out = to_onnx(quantized, OnnxConfig(), work)
        out.files.pop(SOURCE_ONNX)  # the bundle carries its Q/DQ graph, not the FP32 one
        return out, "TensorRT explicit Q/DQ (modelopt): symmetric INT8, per-channel weights"
    if cfg.precision == "int8":
        # TorchScript and ONNX models have no modules to fake-quantise: quantise the graph.
        inputs, how = calibration_inputs(source, cfg.calib_samples, CALIB_SEED, cfg.calib_from, data)
        path = quantize_qdq_symmetric(fp32_onnx, work / ONNX, source.input_shape, source.manifest["input"], cfg.calib_samples,
                                      inputs=inputs.numpy(), batch=cfg.calib_batch)
        out = source.derive({"step": "quantize", "tool": "onnxruntime.quantize_static", "format": "qdq-symmetric-int8",
                             "calibration_data": how})
        return _holding(out, source, path), "TensorRT explicit Q/DQ (ONNX Runtime quantize_static): symmetric INT8, per-channel weights"
    if cfg.precision == "fp16":
        out = source.derive({"step": "convert", "precision": "fp16"})
        return _holding(out, source, convert_fp16(fp32_onnx, work / ONNX)), "FP16 weights and compute, FP32 I/O"
    out = source.derive({"step": "export", "format": "onnx", "precision": "fp32"})
    return _holding(out, source, Path(shutil.copyfile(fp32_onnx, work / ONNX))), "none (FP32)"


def int8_cpu(source: Bundle, cfg: PrecisionConfig, fp32_onnx: Path, work: Path, progress: bool = True,
             data: UserData | None = None) -> tuple[Bundle, str]:
    """`--target cpu` INT8: BatchNorm folded and ConvTranspose/upsampling rewritten into plain
    convolutions (exact, verified), so every layer can be a QLinearConv; then the calibrator
    and the float nodes searched under the floor (export/int8_cpu.py)."""
    from gencompress.compress.rewrite import cpu_integer_ready

    inputs, how = calibration_inputs(source, cfg.calib_samples, CALIB_SEED, cfg.calib_from, data)
    held = (data.evaluation[: cfg.eval_samples] if data is not None
            else draw_inputs(tuple(source.input_shape), cfg.eval_samples, source.manifest["input"], CALIB_SEED + 1)).numpy()
    step = {"step": "quantize", "tool": "onnxruntime.quantize_static", "format": "cpu-u8s8-qoperator",
            "form": CPU_FORM.format(fmt="qoperator"), "calibration_data": how}
    src = fp32_onnx
    if not (source.model is None or source.manifest["architecture"]["kind"] == "torchscript"):
        rewritten, info = cpu_integer_ready(source.model, source.input_shape, form=cfg.deconv_form)
        src = export_module(rewritten, source.input_shape, work / "fp32-rewritten.onnx", OnnxConfig())
        step.update(info)
    prepared = prepare_for_quantization(src, work / CPU_PREPARED)
    reference = float_reference(prepared, held, cfg.threads, cfg.calib_batch)  # judges the search and the runtime choice alike
    path, record = search_cpu_int8(prepared, work, inputs.numpy(), held, cfg.floor(), cfg.calibrator, "qoperator", cfg.threads, progress,
                                   speed_aware=cfg.speed_aware, batch=cfg.calib_batch, histogram_samples=cfg.histogram_samples,
                                   margin_db=SEARCH_MARGIN_DB, reference=reference)
    step["calibrator"] = record["calibrators"]["chosen"]
    step["calibrators"] = record.pop("calibrators")
    step["floor"] = record["floor"]
    step["float_nodes"] = record["float_nodes"]
    if "layer_psnr_db" in record:
        step["sensitivity"] = {"budget_db": cfg.floor().min_psnr, **record}
    out = _holding(source.derive(step), source, Path(shutil.move(path, work / ONNX)))
    keep = set(record["keep_float"])
    out.manifest["precision"] = {n: "fp32" if n in keep else "int8" for n in record.get("layer_psnr_db", {})}
    if cfg.cpu_runtime == "onnxruntime":
        return out, step["form"]
    choice = choose_cpu_runtime(out, fp32_onnx, inputs.numpy(), held, reference, work, cfg)
    if choice and choice["runtime"] == "openvino":
        return out, f"{choice['candidate']} on OpenVINO's CPU plugin (chosen by measurement; model.onnx keeps {step['form']})"
    return out, step["form"]


def choose_cpu_runtime(out: Bundle, fp32_onnx: Path, calibration: np.ndarray, held: np.ndarray, reference: np.ndarray, work: Path,
                       cfg: PrecisionConfig) -> dict | None:
    """Measure ONNX Runtime's integer form (`out`'s model.onnx) against OpenVINO's INT8 forms
    (export/cpu_runtime.py) on the search's own calibration and held-out inputs, and record the
    winner in `out`: a `runtime` step holding the whole choice, and, where OpenVINO won, its IR
    under openvino/ (model.onnx stays ONNX Runtime's form). None where OpenVINO is not
    installed (said on stderr)."""
    from . import cpu_runtime, openvino

    if not openvino.available():
        log("CPU runtime: ONNX Runtime (OpenVINO and NNCF are not installed, so not measured: pip install openvino nncf)")
        return None
    qdq_dir = work / "openvino-qdq"
    qdq_dir.mkdir()
    qdq = int8_cpu_as_qdq(out.last_step("quantize"), work, qdq_dir / ONNX)
    floor = cfg.floor()
    choice = cpu_runtime.choose_cpu_runtime(fp32_onnx, out.file(ONNX), qdq, calibration, held, reference, work / "runtime",
                                            cfg.threads, cfg.timing_batch, floor.min_psnr if floor else None)
    log(f"CPU runtime: {cpu_runtime.summary_line(choice)}")
    step = {"step": "runtime", "target": "cpu", "runtime": choice["runtime"], "candidate": choice["candidate"],
            "psnr_db": choice["psnr_db"], "speedup_vs_fp32_ort": choice["speedup_vs_fp32_ort"]}
    if choice["runtime"] == "openvino":
        winner = next(c for c in choice["candidates"] if c["name"] == choice["candidate"])
        src = qdq if winner["graph"]["file"].endswith(".onnx") else work / "runtime" / winner["name"] / openvino.IR_XML
        xml = openvino.save_ir(openvino.read_model(src), work / "openvino" / openvino.IR_XML)
        out.files[openvino.BUNDLE_XML], out.files[openvino.BUNDLE_BIN] = xml, xml.with_suffix(".bin")
        step["files"] = [openvino.BUNDLE_XML, openvino.BUNDLE_BIN]
    out.record({**step, "choice": choice})
    return choice


def int8_cpu_as_qdq(step: dict, work: Path, dst: Path) -> Path:
    """The quantisation `int8_cpu` searched (its calibrator's cached ranges, its float nodes),
    written again as Q/DQ for another runtime to compile (OpenVINO): no second calibration."""
    return requantize(work / CPU_PREPARED, work, step["calibrator"], step["float_nodes"], dst, "qdq")


def _holding(out: Bundle, source: Bundle, path: Path) -> Bundle:
    if source.manifest["architecture"]["kind"] in ("torchscript", "onnx"):
        out.model = None  # the bundle carries the graph, not PyTorch weights
    out.files.pop(SOURCE_ONNX, None)
    out.files[ONNX] = path
    return out

"""The precision stage of `build`: a bundle holding its FP32 graph (SOURCE_ONNX, see
`with_fp32_onnx`) -> a bundle holding model.onnx in the precision and form its target runs,
under the quality floor.

One function per (precision, target) form, chosen by `apply_precision`:
- INT8, --target cpu: ONNX Runtime's integer form, searched under the floor (int8_cpu.py),
  then measured against OpenVINO's INT8 forms and the float model (cpu_runtime.py), the winner
  recorded in the bundle's `runtime` step; where no INT8 form beat the float model, the FP32
  graph ships (ship_float);
- INT8, GPU/Jetson, PyTorch modules: modelopt fake-quant under the floor, exported to
  TensorRT's explicit Q/DQ (compress.quantize);
- INT8, GPU/Jetson, a TorchScript or ONNX model: symmetric Q/DQ on the graph (onnx_quant);
- FP16: FP16 weights and compute, FP32 I/O; FP32: the exported graph as it is.
The build (gencompress/cli/pipeline.py) only chains this with export, checks and measures.
"""
from __future__ import annotations

import copy
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
from gencompress.floor import QualityFloor, fewest_passing, not_met, quality_floor
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

    from . import openvino

    # one draw serves both: NNCF's candidates take as many inputs as nncf.quantize does by default, the search the first calib_samples
    with_nncf = cfg.cpu_runtime == "auto" and openvino.available()
    drawn, how = calibration_inputs(source, max(cfg.calib_samples, openvino.NNCF_SUBSET_SIZE) if with_nncf else cfg.calib_samples,
                                    CALIB_SEED, cfg.calib_from, data)
    inputs = drawn[: cfg.calib_samples]
    held = (data.evaluation[: cfg.eval_samples] if data is not None
            else draw_inputs(tuple(source.input_shape), cfg.eval_samples, source.manifest["input"], CALIB_SEED + 1)).numpy()
    step = {"step": "quantize", "tool": "onnxruntime.quantize_static", "format": "cpu-u8s8-qoperator",
            "form": CPU_FORM.format(fmt="qoperator"), "calibration_data": how if len(drawn) == len(inputs) else f"the first {len(inputs)} of {how}"}
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
    choice = choose_cpu_runtime(out, fp32_onnx, drawn.numpy(), held, reference, work, cfg)
    if not choice:
        return out, step["form"]
    if choice["why_float"]:
        return out, f"none: the float model, {choice['candidate']} ({choice['why_float']})"
    if choice["runtime"] == "openvino":
        return out, (f"{choice['candidate']} on OpenVINO's CPU plugin, float layers in {choice['float_precision']} "
                     f"(chosen by measurement; model.onnx keeps {step['form']})")
    return out, step["form"]


def choose_cpu_runtime(out: Bundle, fp32_onnx: Path, calibration: np.ndarray, held: np.ndarray, reference: np.ndarray, work: Path,
                       cfg: PrecisionConfig) -> dict:
    """Measure ONNX Runtime's integer form (`out`'s model.onnx) against OpenVINO's INT8 forms
    and the float model (export/cpu_runtime.py) on the search's calibration (NNCF: all of
    `calibration`) and held-out inputs, and record the winner in `out`: a `runtime` step holding
    the whole choice; where OpenVINO won, its IR under openvino/ (model.onnx stays ONNX
    Runtime's form); where a float form won, model.onnx the FP32 graph (ship_float). Without
    OpenVINO and NNCF (said on stderr) the float model on ONNX Runtime is the only other candidate."""
    from . import cpu_runtime, openvino

    with_openvino = openvino.available()
    qdq = None
    if with_openvino:
        qdq_dir = work / "openvino-qdq"
        qdq_dir.mkdir()
        qdq = int8_cpu_as_qdq(out.last_step("quantize"), work, qdq_dir / ONNX)
    else:
        log("CPU runtime: OpenVINO and NNCF are not installed, so not measured (pip install openvino nncf); "
            "ONNX Runtime's integer form against its float model only")
    floor = cfg.floor()
    quantize = out.last_step("quantize")
    searched = cpu_runtime.SearchedFloat(work / CPU_PREPARED, quantize["float_nodes"], len(quantize.get("sensitivity", {}).get("keep_float", [])))
    choice = cpu_runtime.choose_cpu_runtime(fp32_onnx, out.file(ONNX), qdq, calibration, held, reference, work / "runtime",
                                            cfg.threads, cfg.timing_batch, floor.min_psnr if floor else None, openvino=with_openvino,
                                            margin_db=SEARCH_MARGIN_DB, searched=searched)
    log(f"CPU runtime: {cpu_runtime.summary_line(choice)}")
    step = {"step": "runtime", "target": "cpu", "runtime": choice["runtime"], "candidate": choice["candidate"],
            "precision": choice["precision"], "float_precision": choice["float_precision"],
            "inference_precision": choice["inference_precision"], "psnr_db": choice["psnr_db"],
            "speedup_vs_fp32_ort": choice["speedup_vs_fp32_ort"]}
    if choice["why_float"]:
        ship_float(out, fp32_onnx, choice, work)
        step["why_float"] = choice["why_float"]
    elif choice["float_precision"] != "fp32":  # OpenVINO's INT8 form runs the layers it keeps float in bf16
        out.manifest["precision"] = {n: choice["float_precision"] if p == "fp32" else p for n, p in out.manifest["precision"].items()}
    if choice["runtime"] == "openvino":
        winner = next(c for c in choice["candidates"] if c["name"] == choice["candidate"])
        src = (fp32_onnx if choice["why_float"] else qdq if winner["graph"]["file"].endswith(".onnx")
               else work / "runtime" / winner["name"] / openvino.IR_XML)
        xml = openvino.save_ir(openvino.read_model(src), work / "openvino" / openvino.IR_XML)
        out.files[openvino.BUNDLE_XML], out.files[openvino.BUNDLE_BIN] = xml, xml.with_suffix(".bin")
        step["files"] = [openvino.BUNDLE_XML, openvino.BUNDLE_BIN]
    out.record({**step, "choice": choice})
    return choice


def ship_float(out: Bundle, fp32_onnx: Path, choice: dict, work: Path) -> None:
    """No INT8 form beat the float model (cpu_runtime.why_float): `out` carries the FP32 graph as
    model.onnx, a `convert` step that says why, and every layer in the winner's float precision."""
    dst = work / "float" / ONNX
    dst.parent.mkdir()
    out.files[ONNX] = Path(shutil.copyfile(fp32_onnx, dst))
    out.record({"step": "convert", "precision": "fp32", "target": "cpu", "why": choice["why_float"],
                "runtime": choice["candidate"], "inference_precision": choice["float_precision"]})
    out.manifest["precision"] = dict.fromkeys(out.manifest["precision"], choice["float_precision"])


def int8_cpu_as_qdq(step: dict, work: Path, dst: Path) -> Path:
    """The quantisation `int8_cpu` searched (its calibrator's cached ranges, its float nodes),
    written again as Q/DQ for another runtime to compile (OpenVINO): no second calibration."""
    return requantize(work / CPU_PREPARED, work, step["calibrator"], step["float_nodes"], dst, "qdq")


def extend_float_layers(final: Bundle, floor: QualityFloor, judge, work: Path, gate: tuple[dict, np.ndarray]) -> tuple[Bundle, np.ndarray, dict] | None:
    """The float-layer search continued on the build gate's verdict.

    The search judges its mixes on a few held-out inputs (judge_samples: 8 for a big model) and
    the gate measures the build's evaluation inputs; where they disagree (an SD-VAE-layout
    decoder met the floor on 8, measured 34.77 dB on 51) the mix was thrown away although more
    float layers would pass. Here more layers go float, in the sensitivity order the search
    measured, each mix judged by `judge` (bundle -> (scores, outputs): the gate's own runtime on
    its own inputs), the fewest first by doubling then bisection (floor.fewest_passing: about
    2 log2(layers) passes), at least one layer staying INT8. `gate`: the gate's scores and
    outputs of `final`. Returns the bundle, its outputs and the record (also kept in the
    quantize step's sensitivity); None for a form with no search to continue (a graph quantised
    without one); raises the floor's one-line error, with the best reached, where no mix meets it.
    --target cpu continues on ONNX Runtime's integer form: a runtime choice made on the judge
    inputs (OpenVINO) is not re-measured, and ONNX Runtime runs the bundle."""
    step = final.last_step("quantize") or {}
    sens = step.get("sensitivity") or {}
    if "layer_psnr_db" not in sens or not final.form.is_int8:  # the float model shipped (ship_float): no INT8 mix to continue
        return None
    already = list(sens["keep_float"])
    rest = [n for n in sorted(sens["layer_psnr_db"], key=sens["layer_psnr_db"].get) if n not in already]  # most sensitive first
    from_openvino = (final.last_step("runtime") or {}).get("runtime") == "openvino"
    make = _ModeloptMixes(final, rest, work) if step.get("tool") == "nvidia-modelopt" else _OrtIntegerMixes(final, step, rest, work)
    tried = {} if from_openvino else {0: (final, *gate)}  # j = 0 is the mix the gate measured, unless the runtime changes

    def passes(j: int) -> bool:
        if j not in tried:
            bundle = make(j)
            tried[j] = (bundle, *judge(bundle))
        return tried[j][1]["meets_floor"]

    j = fewest_passing(len(rest) - 1, passes)
    record = {"judged_on": "the build's evaluation inputs", "search_float_layers": len(already),
              "tried": [{"float_layers_added": i, **{k: tried[i][1][k] for k in ("psnr_db", "ssim", "meets_floor")}} for i in sorted(tried)]}
    if j is None:
        best = max(record["tried"], key=lambda t: t["psnr_db"])
        raise not_met(floor, best, f"on the build's evaluation inputs, {len(already) + best['float_layers_added']} of "
                                   f"{len(already) + len(rest)} layers float, the most sensitive first")
    bundle, scores, outputs = tried[j]
    make.settle(j)
    record.update(layers_added=j, added=rest[:j], psnr_db=scores["psnr_db"], ssim=scores["ssim"])
    qstep = bundle.last_step("quantize")
    qstep["sensitivity"]["keep_float"] = [*already, *rest[:j]]
    qstep["sensitivity"]["gate_extension"] = record
    if "keep_float" in qstep:  # modelopt: the patterns restore_quantized keeps float
        qstep["keep_float"] = [*qstep["keep_float"], *rest[:j]]
    if "float_nodes" in qstep:  # ONNX Runtime's integer form: the nodes left float
        qstep["float_nodes"] = make.float_nodes(j)
    bundle.manifest["precision"].update({n: "fp32" for n in rest[:j] if n in bundle.manifest["precision"]})
    log(f"gate: {j} more layer(s) float met {floor.describe()} on the evaluation inputs ({scores['psnr_db']:.2f} dB)")
    return bundle, outputs, record


class _ModeloptMixes:
    """modelopt's fake-quant model with the first `j` of `rest` float too, exported as the build's Q/DQ graph."""

    def __init__(self, final: Bundle, rest: list[str], work: Path):
        from gencompress.compress.sensitivity import int8_layers

        self.final, self.rest, self.work = final, rest, work
        self.layers = int8_layers(final.model)  # the layers INT8 now; the search's float ones stay float

    def settle(self, j: int) -> None:
        from gencompress.compress.sensitivity import set_int8

        set_int8(self.layers, set(self.layers) - set(self.rest[:j]))

    def __call__(self, j: int) -> Bundle:
        self.settle(j)
        path = export_module(self.final.model, self.final.input_shape, self.work / f"gate-extension-{j}.onnx", OnnxConfig())
        return replace(self.final, files={**self.final.files, ONNX: path})


class _OrtIntegerMixes:
    """ONNX Runtime's integer graph with the first `j` of `rest` float too: requantised from the
    search's cached ranges (no calibration pass), run by ONNX Runtime."""

    def __init__(self, final: Bundle, step: dict, rest: list[str], work: Path):
        from .int8_cpu import layer_groups

        self.final, self.step, self.rest, self.work = final, step, rest, work
        self.groups = layer_groups(work / CPU_PREPARED)

    def float_nodes(self, j: int) -> list[str]:
        return [*self.step["float_nodes"], *(m for n in self.rest[:j] for m in self.groups[n])]

    def settle(self, j: int) -> None:
        """Nothing to set: each mix is its own graph."""

    def __call__(self, j: int) -> Bundle:
        from . import openvino

        path = requantize(self.work / CPU_PREPARED, self.work, self.step["calibrator"], self.float_nodes(j),
                          self.work / f"gate-extension-{j}.onnx", "qoperator")
        files = {k: v for k, v in self.final.files.items() if k not in (openvino.BUNDLE_XML, openvino.BUNDLE_BIN)}
        bundle = replace(self.final, manifest=copy.deepcopy(self.final.manifest), files={**files, ONNX: path})
        if (bundle.last_step("runtime") or {}).get("runtime") == "openvino":
            bundle.record({"step": "runtime", "target": "cpu", "runtime": "onnxruntime", "choice": None,
                           "note": "the gate extended the float layers of ONNX Runtime's integer form; the OpenVINO form, "
                                   "chosen on the judge inputs, was not measured again"})
            # ONNX Runtime runs the float layers in FP32, not in the OpenVINO form's float precision
            bundle.manifest["precision"] = {n: p if p == "int8" else "fp32" for n, p in bundle.manifest["precision"].items()}
        return bundle


def _holding(out: Bundle, source: Bundle, path: Path) -> Bundle:
    if source.manifest["architecture"]["kind"] in ("torchscript", "onnx"):
        out.model = None  # the bundle carries the graph, not PyTorch weights
    out.files.pop(SOURCE_ONNX, None)
    out.files[ONNX] = path
    return out


FP16_FLOAT_TOOL = "onnxruntime.transformers.float16 (opset 19 Q/DQ with FP16 scales)"
NO_FLOOR_FP16_COST_DB = 0.5  # without a floor, FP16 float layers may cost this much against FP32 ones (the front's "as good")


def fp16_float_layers(final: Bundle, floor: QualityFloor | None, judge, work: Path,
                      fp32_scores: dict) -> tuple[Bundle | None, np.ndarray | None, dict]:
    """gpu/Jetson INT8: the Q/DQ graph computing everything outside its INT8 layers in FP16
    (onnx_quant.convert_fp16), which is what TensorRT runs where its own flags would not make the
    float layers FP16 (strongly typed 10.12+ and 11.x builds take precision from the graph).

    Judged like the gate, by `judge` (bundle -> (scores, outputs): the build's evaluation inputs on
    ONNX Runtime, against the FP32 reference), twice: the converted graph as ONNX Runtime runs it,
    and its FP16 storage emulated (onnx_quant.fp16_emulation: what ONNX Runtime's FP32 fallbacks
    hide). Shipped where both meet `floor`; with no floor, where both are finite and the emulation
    costs at most NO_FLOOR_FP16_COST_DB against `fp32_scores` (the FP32-float graph's). A graph
    that cannot be converted or run keeps FP32 float layers: this is an optimisation, not a
    requirement. Returns (the bundle or None, its outputs or None, the record); None means the
    FP32-float graph stays, for the reason in the record."""
    from gencompress.errors import first_line

    from .onnx_quant import fp16_emulation

    folder = work / "fp16-float"
    folder.mkdir(exist_ok=True)
    candidate = replace(final, manifest=copy.deepcopy(final.manifest), files=dict(final.files))
    record = {"precision": "fp16", "tool": FP16_FLOAT_TOOL, "judged_on": "the build's evaluation inputs",
              "fp32_float_psnr_db": fp32_scores["psnr_db"]}
    try:
        candidate.files[ONNX] = convert_fp16(final.file(ONNX), folder / ONNX)
        emulated = fp16_emulation(final.file(ONNX), folder / "emulated.onnx")
        scores, outputs = judge(candidate)
        storage, storage_out = judge(replace(candidate, files={**candidate.files, ONNX: emulated}))
    except Exception as exc:  # noqa: BLE001 - any failure of the conversion or its runtime leaves the FP32-float graph shipping
        return None, None, {**record, "precision": "fp32",
                            "why": f"the layers kept float stay FP32: the FP16 graph could not be made or run ({first_line(exc)[:200]})"}
    record.update(psnr_db=scores["psnr_db"], ssim=scores.get("ssim"), meets_floor=scores.get("meets_floor"),
                  fp16_storage={k: storage.get(k) for k in ("psnr_db", "ssim", "meets_floor")})
    why = _fp16_refused(floor, (scores, outputs), (storage, storage_out), fp32_scores)
    if why:
        return None, None, {**record, "precision": "fp32", "why": f"the layers kept float stay FP32: {why}"}
    candidate.record({"step": "convert", "float_layers": "fp16", "tool": FP16_FLOAT_TOOL, "psnr_db": scores["psnr_db"],
                      "ssim": scores.get("ssim"), "fp16_storage_psnr_db": storage["psnr_db"], "judged_on": record["judged_on"]})
    candidate.manifest["precision"] = {n: "fp16" if p == "fp32" else p for n, p in candidate.manifest["precision"].items()}
    return candidate, outputs, record


def _fp16_refused(floor: QualityFloor | None, run: tuple[dict, np.ndarray], storage: tuple[dict, np.ndarray], fp32_scores: dict) -> str | None:
    """Why the FP16-float graph does not ship (None: it ships); see fp16_float_layers."""
    for what, (scores, outputs) in (("the FP16 graph", run), ("with FP16 storage emulated, the FP16 graph", storage)):
        if not np.isfinite(outputs).all():
            return f"{what} gave outputs that are not finite (FP16 overflowed)"
        if floor is not None and not scores["meets_floor"]:
            return f"{what} measured {scores['psnr_db']:.2f} dB, SSIM {scores['ssim']:.4f}, under {floor.describe()}"
    cost = fp32_scores["psnr_db"] - storage[0]["psnr_db"]
    if floor is None and cost > NO_FLOOR_FP16_COST_DB:
        return f"FP16 cost {cost:.2f} dB against FP32 float layers (no floor: at most {NO_FLOOR_FP16_COST_DB:g} dB)"
    return None

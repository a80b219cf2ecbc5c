"""`gencompress build`: the stages chained end to end, as a plain Python function.

load -> (prune) -> ONNX -> precision stage (export/precision.py: INT8 for the target under
the quality floor, FP16 or FP32) -> checks -> ONNX Runtime -> measure -> quality gate ->
bundle + report. This is the only module besides the CLI that knows every stage.
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from gencompress import defaults, zoo
from gencompress.atomic import check_output_dir
from gencompress.batching import mini_batch
from gencompress.bundle import ONNX, Bundle
from gencompress.conditional import check_classes
from gencompress.conditions import describe
from gencompress.errors import GencompressError, MissingDependencyError
from gencompress.inputs import UserData, evaluation_inputs, input_range, output_range, peak, prepare_inputs, settle_output_range
from gencompress.floor import quality_floor
from gencompress.loading import RANDOM_WEIGHTS, check_generator, load_spec, weight_warnings
from gencompress.metrics import fidelity
from gencompress.model_stats import count_macs, count_params
from gencompress.progress import StageTimer
from gencompress.compress import PruneConfig, prune
from gencompress.export import OnnxConfig
from gencompress.export.onnx_export import export_module
from gencompress.export.precision import CALIB_SEED, PRECISIONS, PrecisionConfig, apply_precision, int8_cpu_as_qdq
from gencompress.export.stage import check_export
from gencompress.export.openvino import BUNDLE_BIN as OPENVINO_BIN, BUNDLE_XML as OPENVINO_XML
from gencompress.export.runners import OrtRunner, SessionFromOnnx, TorchRunner, run_batches
from gencompress.export import tensorrt as trt_backend
from gencompress.benchmarks.latency import measure
from gencompress.benchmarks.ort_pair import time_graphs
from gencompress.benchmarks.report import build_report_markdown, sample_grid

DEFAULT_MODEL = "dcgan"
TARGETS = defaults.TARGETS
CPU_RUNTIME_CHOICES = ("auto", "onnxruntime")


@dataclass
class BuildConfig:
    model: str | None = None  # None: the zoo DCGAN trained on digits
    out: str = "gencompress-build"
    input_shape: tuple[int, ...] | None = None
    checkpoint: str | None = None
    trust_pickle: bool = False
    precision: str = "int8"
    target: str = "gpu"
    calib_samples: int | None = None  # None: sized by the model's MACs (sample_counts)
    calib_from: str = "auto"  # auto | latents | encoder: see compress/calibration.py
    deconv_weight_axis: int = 1
    random_init: bool = False  # zoo names: skip training on digits
    classes: int | None = None  # --classes: a (z, y) model behind one packed input (gencompress/conditional.py)
    eval_samples: int | None = None  # None: sized by the model's MACs (sample_counts)
    judge_samples: int | None = None  # held-out inputs that choose calibrator and float layers; set by sample_counts
    histogram_samples: int | None = None  # --target cpu's histogram calibrators: the first N calibration inputs; set by sample_counts
    eval_seed: int = 0
    threads: int = 2
    latency_batches: tuple[int, ...] = (1, 8)
    latency_iters: int = 30
    latency_warmup: int = 5
    bench_seconds: float = 3.0  # time cap of each latency row (the paired ratio gets PAIRED_SECONDS_FACTOR x this)
    progress: bool = True
    prune: float | None = None  # channel ratio pruned (Torch-Pruning), then distilled
    distill_steps: int = defaults.DISTILL_STEPS
    min_psnr: float | None = None  # quality floor vs FP32 (None: the default, gencompress/floor.py)
    no_floor: bool = False  # --no-quality-floor
    calibrator: str = defaults.DEFAULT_CALIBRATOR  # auto: the best on held-out inputs
    qat_steps: int = 0
    bias_correction: bool = False  # --bias-correction: empirical bias correction after calibration (modelopt)
    cpu_runtime: str = "auto"  # --target cpu INT8: auto (measure ONNX Runtime vs OpenVINO) | onnxruntime
    data: str | None = None  # --data SPEC (gencompress/inputs.py); None: inputs drawn from the input spec
    io_spec: dict = field(default_factory=dict)  # apply_io_spec's keywords: input_kind, input_range, input_std, output_range

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise GencompressError(f"unknown precision {self.precision!r}")
        if self.target not in TARGETS:
            raise GencompressError(f"unknown target {self.target!r}; known: {', '.join(TARGETS)}")
        if any(n is not None and n < 1 for n in (self.calib_samples, self.eval_samples)):
            raise GencompressError("--calib-samples and --eval-samples must be at least 1")
        if not self.bench_seconds > 0:
            raise GencompressError(f"--bench-seconds must be positive (got {self.bench_seconds})")
        if self.prune is not None and not 0.0 < self.prune < 1.0:  # before any model is trained or loaded
            raise GencompressError(f"--prune {self.prune:g} is not a fraction in (0, 1); 0.5 removes half of each layer's channels")
        if self.prune is not None:
            PruneConfig(ratio=self.prune, distill_steps=self.distill_steps).validate()
        self.precision_config().validate()
        if self.classes is not None:
            check_classes(self.classes)
        if self.cpu_runtime not in CPU_RUNTIME_CHOICES:
            raise GencompressError(f"unknown CPU runtime {self.cpu_runtime!r}; known: {', '.join(CPU_RUNTIME_CHOICES)}")

    def precision_config(self, calib_batch: int = 32) -> PrecisionConfig:
        return PrecisionConfig(precision=self.precision, target=self.target, calibrator=self.calibrator,
                               calib_samples=self.calib_samples or defaults.CALIB_SAMPLES, calib_batch=calib_batch,
                               calib_from=self.calib_from, deconv_weight_axis=self.deconv_weight_axis, min_psnr=self.min_psnr,
                               no_floor=self.no_floor, qat_steps=self.qat_steps, bias_correction=self.bias_correction,
                               eval_samples=self.judge_samples or self.eval_samples or defaults.EVAL_SAMPLES, threads=self.threads,
                               histogram_samples=self.histogram_samples)


def sample_counts(cfg: BuildConfig, gmac_per_sample: float | None) -> BuildConfig:
    """`cfg` with every sample count set: what the user gave, else the defaults scaled to the
    model's cost (gencompress/defaults.py): a 17.7-GMAC decoder calibrates on 56, not 256."""
    calib = cfg.calib_samples or defaults.scaled_samples(defaults.CALIB_SAMPLES, gmac_per_sample, defaults.CALIB_BUDGET_GMAC,
                                                         defaults.CALIB_MIN_SAMPLES)
    evaluation = cfg.eval_samples or defaults.scaled_samples(defaults.EVAL_SAMPLES, gmac_per_sample, defaults.EVAL_BUDGET_GMAC,
                                                             defaults.EVAL_MIN_SAMPLES)
    judge = defaults.scaled_samples(evaluation, gmac_per_sample, defaults.JUDGE_BUDGET_GMAC, defaults.JUDGE_MIN_SAMPLES)
    histogram = defaults.scaled_samples(calib, gmac_per_sample, defaults.HISTOGRAM_BUDGET_GMAC, defaults.HISTOGRAM_MIN_SAMPLES)
    return replace(cfg, calib_samples=calib, eval_samples=evaluation, judge_samples=judge, histogram_samples=histogram)


def log(msg: str) -> None:
    print(f"gencompress: {msg}", file=sys.stderr)


def resolve_model(cfg: BuildConfig) -> tuple[Bundle, str]:
    """The SPEC of --model as an in-memory bundle, and a name for reports."""
    spec = cfg.model or DEFAULT_MODEL
    if spec in zoo.names() and not Path(spec).exists():
        if cfg.classes is not None:
            raise GencompressError(f"--classes applies to a package.module:callable model whose forward takes (z, y), not zoo model {spec!r}")
        if cfg.input_shape is not None and tuple(cfg.input_shape[1:]) != zoo.input_shape(spec):
            raise GencompressError(
                f"input shape {'x'.join(map(str, cfg.input_shape))} does not fit zoo model {spec!r} "
                f"(it takes Nx{'x'.join(map(str, zoo.input_shape(spec)))})"
            )
        if cfg.random_init:
            from gencompress.train.pretrained import zoo_bundle

            torch.manual_seed(0)
            bundle = zoo_bundle(spec, zoo.build(spec))
            bundle.record({"step": "load", "weights": RANDOM_WEIGHTS})
            return bundle, f"{spec} (random init)"
        from gencompress.train.pretrained import get_or_train

        bundle = get_or_train(spec, progress=cfg.progress)
        return load_spec(str(bundle.path)), f"{spec} (trained on digits)"
    return load_spec(spec, cfg.input_shape, cfg.checkpoint, cfg.trust_pickle, classes=cfg.classes), spec


def _user_batch(cfg: BuildConfig) -> int:
    """The batch of --input-shape: errors quote the shape the user gave."""
    return cfg.input_shape[0] if cfg.input_shape else 1


def build(cfg: BuildConfig) -> dict:
    """Run the whole pipeline; write the bundle to cfg.out; return the summary."""
    cfg.validate()
    check_output_dir(cfg.out)
    # The work folder goes however the build ends: success, error, SIGINT or SIGTERM.
    with tempfile.TemporaryDirectory(prefix="gencompress-build-") as work:
        return _build_in(cfg, Path(work))


def _build_in(cfg: BuildConfig, work: Path) -> dict:
    given = cfg
    torch.set_num_threads(cfg.threads)
    timer = StageTimer(cfg.progress)
    with timer.stage("load"):
        source, name = resolve_model(cfg)
        if source.model is not None:  # a wrong input shape or NaN output is named here, before MACs are counted
            source.manifest["output"]["shape"] = list(check_generator(source.model, source.input_shape, _user_batch(cfg)))
        macs = count_macs(source.model, source.input_shape) if source.model is not None else None
        cfg = sample_counts(cfg, macs / 1e9 if macs else None)
        data = prepare_inputs(source.manifest, cfg.data, cfg.io_spec, cfg.eval_samples)
    if cfg.prune is not None:  # everything after compares against the pruned FP32 model
        with timer.stage("prune + distill", f"{cfg.distill_steps} steps"):
            source = prune(source, PruneConfig(ratio=cfg.prune, distill_steps=cfg.distill_steps), progress=cfg.progress, data=data)
    inputs, inputs_record = evaluation_inputs(data, source.manifest["input"], cfg.eval_samples, cfg.eval_seed)

    with timer.stage("reference"):
        if source.model is not None and cfg.prune is not None:  # the pruned model: checked again
            source.manifest["output"]["shape"] = list(check_generator(source.model, source.input_shape, _user_batch(cfg)))
        batch = mini_batch(source.model, source.input_shape, source.manifest["output"].get("shape"))
        timing_batch = _timing_batch(cfg, batch)  # the interleaved timings' batch (runtime choice, paired speed)
        if source.model is not None:
            reference = run_batches(TorchRunner(source.model), inputs, batch, _label(cfg, "FP32 reference"))
            fp32_onnx = export_module(source.model, source.input_shape, work / "fp32.onnx", OnnxConfig())
            reference_name = "FP32 PyTorch"
        else:
            fp32_onnx = source.file("source.onnx")
            reference = run_batches(OrtRunner(SessionFromOnnx(fp32_onnx, cfg.threads)), inputs, batch, _label(cfg, "FP32 reference"))
            reference_name = "FP32 ONNX (ONNX Runtime)"
    _check_finite(reference)
    settle_output_range(source.manifest, reference)
    floor = quality_floor(cfg.min_psnr, cfg.no_floor)
    if floor is not None and cfg.precision == "int8":
        _check_reachable(floor, reference, fp32_onnx, inputs, cfg.threads, batch)

    with timer.stage(f"compress ({cfg.precision})", f"{cfg.calib_samples} calibration inputs in batches of {batch}"):
        final, quant_form = apply_precision(source, cfg.precision_config(batch), fp32_onnx, work, cfg.progress, data)
    final_onnx = final.file(ONNX)
    with timer.stage("export checks"):
        # checker (full), target ops, Q/DQ lint, ORT vs PyTorch; Jetson targets get device scripts
        export_checks = check_export(final, cfg.target, work, inputs=inputs if data is not None else None)
    with timer.stage("cpu runtime choice"):
        runtime = _choose_runtime(final, cfg, fp32_onnx, reference, inputs, work, timing_batch, data)
    if runtime and runtime["runtime"] == "openvino":
        quant_form = f"{runtime['candidate']} on OpenVINO's CPU plugin (chosen by measurement; model.onnx keeps {quant_form})"
    with timer.stage("evaluate"):
        # --target cpu: ONNX Runtime is the deployment runtime, fusions and all. Other targets: the
        # graph's own arithmetic (optimisations off), as TensorRT's explicit Q/DQ runs it; ORT's CPU
        # integer fusions lost 8 dB on the SD-VAE layout (export/verify.py).
        optimization = "all" if cfg.target == "cpu" else "disable"
        compressed = run_batches(_final_runner(final, cfg, optimization), inputs, batch, _label(cfg, "evaluate"))
        quality = {**fidelity(reference, compressed, peak(source.manifest)), "psnr_peak": peak(source.manifest),
                   "output_range": list(output_range(source.manifest)), "samples": len(inputs), "seed": cfg.eval_seed,
                   "reference": reference_name, "inputs": inputs_record,
                   "runtime": (f"OpenVINO CPU ({runtime['candidate']})" if runtime and runtime["runtime"] == "openvino"
                               else f"ONNX Runtime CPU, graph optimisation {optimization}")}
    if floor is not None:  # the gate: no bundle below its floor, whatever the search saw
        quality.update(floor.measure(reference, compressed, peak(source.manifest)), floor=floor.describe())
        if not quality["meets_floor"]:
            raise GencompressError(f"the {cfg.precision} model measured {quality['psnr_db']:.2f} dB, SSIM {quality['ssim']:.4f} on the "
                                   f"{cfg.eval_samples} evaluation inputs, under {floor.describe()}; nothing written")
    quant_step = final.last_step("quantize") or {}

    with timer.stage("latency table", f"up to {cfg.bench_seconds:g} s per row"):
        latency = _latencies(source, fp32_onnx, final_onnx, cfg, inputs, final)
    with timer.stage("paired speed"):
        paired = _runtime_speedup(runtime) or _paired_speedup(fp32_onnx, final_onnx, cfg, inputs, timing_batch)
    with timer.stage("model stats"):
        params = count_params(source.model) if source.model is not None else None
        if cfg.prune is not None:  # pruning changed the count
            macs = count_macs(source.model, source.input_shape) if source.model is not None else None
    with timer.stage("engine"):
        engine = _engine(final_onnx, cfg)
    summary = {
        "model": name,
        "precision": cfg.precision,
        "target": cfg.target,
        "quant_form": quant_form,
        "quality": quality,
        "latency": latency,
        "paired_speedup": paired,
        "cpu_runtime": runtime,
        "target_estimate": _target_estimate(fp32_onnx, final_onnx, cfg),
        "latency_iters": cfg.latency_iters,
        "latency_warmup": cfg.latency_warmup,
        "bench_seconds": cfg.bench_seconds,
        "mini_batch": batch,
        "samples": {"calibration": cfg.calib_samples, "evaluation": cfg.eval_samples, "judging": cfg.judge_samples,
                    "histogram_calibration": cfg.histogram_samples if cfg.target == "cpu" else None,
                    "given": [k for k, v in (("calibration", given.calib_samples), ("evaluation", given.eval_samples)) if v]},
        "params": params,
        "macs": macs,
        "layer_precision": final.manifest.get("precision", {}),
        "sensitivity": quant_step.get("sensitivity"),
        "calibrators": quant_step.get("calibrators"),
        "conditions": describe(cfg.threads),
        "engine": engine,
        "export_checks": export_checks,
        "prune": source.manifest["metrics"].get("prune"),
        "warnings": weight_warnings(source.manifest),  # random weights: said in the CLI line and the report
    }
    with timer.stage("report + save"):
        summary["time"] = timer.as_dict()  # the report's copy: everything up to the report
        _write_report(summary, reference, compressed, final, work, inputs)
        final.manifest["metrics"]["build"] = {k: v for k, v in summary.items() if k not in ("layer_precision",)}
        saved = final.save(cfg.out)
    summary["time"] = timer.as_dict()
    summary["out"] = str(saved.path)
    return summary


def _label(cfg: BuildConfig, what: str) -> str:
    return what if cfg.progress else ""


def _check_finite(reference: np.ndarray) -> None:
    if not np.isfinite(reference).all():
        raise GencompressError("model output contains NaN or Inf")


def _check_reachable(floor, reference: np.ndarray, fp32_onnx: Path, inputs: np.ndarray, threads: int, batch: int = 32) -> None:
    """A floor above what the FP32 graph itself reaches (ONNX Runtime against PyTorch) cannot
    be met by any INT8 mix: say so before any calibration."""
    ceiling = floor.measure(reference, run_batches(OrtRunner(SessionFromOnnx(fp32_onnx, threads)), inputs, batch))
    if not ceiling["meets_floor"]:
        raise GencompressError(f"{floor.describe()} is above what the FP32 model itself reaches on ONNX Runtime "
                               f"({ceiling['psnr_db']:.2f} dB, SSIM {ceiling['ssim']:.4f}): no INT8 mix can meet it")


def _choose_runtime(final: Bundle, cfg: BuildConfig, fp32_onnx: Path, reference: np.ndarray, inputs: np.ndarray,
                    work: Path, timing_batch: int, data: UserData | None = None) -> dict | None:
    """`--target cpu` INT8: measure ONNX Runtime's integer form against OpenVINO's INT8 forms
    (export/cpu_runtime.py) and record the winner in the bundle: the runtime in a recipe step,
    and, where OpenVINO won, its IR under openvino/ (model.onnx stays ONNX Runtime's form)."""
    if cfg.precision != "int8" or cfg.target != "cpu" or cfg.cpu_runtime == "onnxruntime":
        return None
    floor = quality_floor(cfg.min_psnr, cfg.no_floor)
    from gencompress.compress.calibration import calibration_inputs
    from gencompress.export import cpu_runtime, openvino

    if not openvino.available():
        log("CPU runtime: ONNX Runtime (OpenVINO and NNCF are not installed, so not measured: pip install openvino nncf)")
        return None
    calib, _ = calibration_inputs(final, cfg.calib_samples, CALIB_SEED, cfg.calib_from, data)
    calib = calib.numpy()
    qdq_dir = work / "openvino-qdq"
    qdq_dir.mkdir()
    qdq = int8_cpu_as_qdq(final.last_step("quantize"), work, qdq_dir / ONNX)
    choice = cpu_runtime.choose_cpu_runtime(fp32_onnx, final.file(ONNX), qdq, calib, inputs, reference, work / "runtime",
                                            cfg.threads, timing_batch, floor.min_psnr if floor else None)
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


def _final_runner(final: Bundle, cfg: BuildConfig, optimization: str = "all"):
    """The runner of the runtime the bundle was built for (OpenVINO's IR where it won)."""
    step = final.last_step("runtime")
    if step and step["runtime"] == "openvino":
        from gencompress.export.openvino import OpenVinoModelFromFile, OpenVinoRunner

        return OpenVinoRunner(OpenVinoModelFromFile(final.file(OPENVINO_XML), cfg.threads))
    return OrtRunner(SessionFromOnnx(final.file(ONNX), cfg.threads, optimization))


def _runtime_speedup(choice: dict | None) -> dict | None:
    """The winner's paired speed against FP32 ONNX Runtime, where a runtime was chosen."""
    if not choice:
        return None
    winner = next(c for c in choice["candidates"] if c["name"] == choice["candidate"])
    return {"batch": choice["batch"], "speedup_vs_fp32_onnx": choice["speedup_vs_fp32_ort"], "runtime": choice["candidate"],
            "median_ms": {"fp32": choice["fp32_ms"], "int8": winner["median_ms"]}, "method": choice["method"]}


def _latencies(source: Bundle, fp32_onnx: Path, final_onnx: Path, cfg: BuildConfig, inputs: np.ndarray,
               final: Bundle | None = None) -> list[dict]:
    runners = []
    if source.model is not None:
        runners.append(("torch eager", "fp32", TorchRunner(source.model)))
    runners.append(("onnxruntime", "fp32", OrtRunner(SessionFromOnnx(fp32_onnx, cfg.threads))))
    if final_onnx != fp32_onnx:
        runners.append(("onnxruntime", cfg.precision, OrtRunner(SessionFromOnnx(final_onnx, cfg.threads))))
    if final is not None and OPENVINO_XML in final.files:  # the runtime the build chose
        runners.append(("openvino", cfg.precision, _final_runner(final, cfg)))
    rows = []
    for backend, precision, runner in runners:
        for batch in cfg.latency_batches:
            x = np.resize(inputs, (batch, *inputs.shape[1:])).astype(np.float32)
            stats = measure(runner, x, cfg.latency_iters, cfg.latency_warmup, label=f"{backend} {precision} b{batch}" if cfg.progress else "",
                            seconds=cfg.bench_seconds)
            rows.append({"backend": backend, "precision": precision, **stats.as_dict()})
        runner.close()
    return with_speedups(rows)


def with_speedups(rows: list[dict]) -> list[dict]:
    """Each row gains `speedup_vs_fp32_onnx`: the FP32 ONNX median at the same batch over its own."""
    fp32 = {r["batch"]: r["median_ms"] for r in rows if r["backend"] == "onnxruntime" and r["precision"] == "fp32"}
    for r in rows:
        base = fp32.get(r["batch"])
        r["speedup_vs_fp32_onnx"] = base / r["median_ms"] if base and r["median_ms"] > 0 else None
    return rows


PAIRED_ROUNDS = 9
PAIRED_SECONDS_FACTOR = 4  # the quoted ratio gets more time than one table row


def _timing_batch(cfg: BuildConfig, mini_batch: int) -> int:
    """The batch of the interleaved timings: the largest latency batch, but no more than the
    mini-batch, because every graph timed side by side holds its own batch of activations (five
    at once in the CPU runtime choice: 2.8 GB for a 256-px decoder at batch 8)."""
    return max(1, min(max(cfg.latency_batches), mini_batch))


def _paired_speedup(fp32_onnx: Path, final_onnx: Path, cfg: BuildConfig, inputs: np.ndarray, batch: int) -> dict | None:
    """The compressed ONNX against the FP32 ONNX at the largest batch, timed in interleaved
    rounds in a clean child process (benchmarks/ort_pair.py): the table's rows are timed one
    after the other, which a drifting or shared CPU distorts; this ratio is the one to quote."""
    if final_onnx == fp32_onnx:
        return None
    x = np.resize(inputs, (batch, *inputs.shape[1:])).astype(np.float32)
    timing = time_graphs({"fp32": fp32_onnx, cfg.precision: final_onnx}, x, cfg.threads, rounds=PAIRED_ROUNDS, inner=10, warmup=5,
                         seconds=PAIRED_SECONDS_FACTOR * cfg.bench_seconds)
    return {"batch": batch, "speedup_vs_fp32_onnx": timing["ratio_to_first"][cfg.precision], "median_ms": timing["median_ms"],
            "method": timing["method"]}




# The roofline profile that stands for each TensorRT target (`--target gpu` names no GPU:
# an H100 stands for it, and the line says so).
ESTIMATE_PROFILES = {"gpu": "h100", **{t: t for t in defaults.JETSON_TARGETS}}


def _target_estimate(fp32_onnx: Path, final_onnx: Path, cfg: BuildConfig) -> dict | None:
    """What a user deploying to a GPU or Jetson should expect: the roofline ESTIMATE of the
    compressed graph against the FP32 graph on the target's profile (this machine's CPU
    cannot time a TensorRT engine, and ONNX Runtime's CPU speed of a Q/DQ graph says little
    about TensorRT's)."""
    profile_name = ESTIMATE_PROFILES.get(cfg.target)
    if profile_name is None or final_onnx == fp32_onnx:
        return None
    from gencompress.benchmarks import devices, roofline

    profile, batch = devices.get(profile_name), max(cfg.latency_batches)
    fp32_ms = roofline.estimate(fp32_onnx, profile, batch)["estimated_ms"]
    ms = roofline.estimate(final_onnx, profile, batch)["estimated_ms"]
    return {"label": "ESTIMATE (roofline), not a measurement", "profile": profile.key, "device": profile.name,
            "batch": batch, "fp32_ms": fp32_ms, "compressed_ms": ms, "speedup_vs_fp32": fp32_ms / ms if ms > 0 else None}


def _engine(onnx_path: Path, cfg: BuildConfig) -> dict:
    """Build a TensorRT engine where TensorRT imports; say so plainly where it does not."""
    if cfg.target == "cpu":
        return {"built": False, "message": "no TensorRT engine for --target cpu (ONNX Runtime runs the ONNX)"}
    if cfg.target in defaults.JETSON_TARGETS:
        msg = f"engine not built here: run build_engine.sh on the {cfg.target} (engines are specific to its GPU and TensorRT)"
        log(msg)
        return {"built": False, "message": msg}
    try:
        trt_backend.import_tensorrt()
    except MissingDependencyError as exc:
        msg = f"TensorRT engine not built: {exc}. The Q/DQ ONNX in this bundle is what TensorRT builds from."
        log(msg)
        return {"built": False, "message": msg}
    from gencompress.export.tensorrt.builder import build_engine_file

    info = build_engine_file(onnx_path, onnx_path.with_name("engine.plan"))
    return {"built": True, "message": f"TensorRT {info['tensorrt_version']} engine built on {info['gpu']}", **info}


def _write_report(summary: dict, reference: np.ndarray, compressed: np.ndarray, bundle: Bundle, work: Path,
                  inputs: np.ndarray) -> None:
    report = work / "report"
    report.mkdir(exist_ok=True)
    q = summary["quality"]
    spec = bundle.manifest["input"]
    shown = inputs if spec.get("kind") == "image" else None  # an image input is worth seeing beside its output
    sample_grid(reference, compressed, report / "samples.png", title=f"{summary['model']}: {summary['precision']} vs FP32, PSNR {q['psnr_db']:.2f} dB",
                inputs=shown, input_range=input_range(bundle.manifest), output_range=output_range(bundle.manifest))
    (report / "report.md").write_text(build_report_markdown(summary))
    bundle.files["report/report.md"] = report / "report.md"
    bundle.files["report/samples.png"] = report / "samples.png"
    engine = work / "engine.plan"
    if engine.exists():
        bundle.files["engine.plan"] = engine

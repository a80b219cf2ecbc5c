"""`gencompress build`: the stages chained end to end, as a plain Python function.

load -> (prune) -> ONNX -> precision stage (export/precision.py: INT8 for the target under
the quality floor, FP16 or FP32) -> checks -> ONNX Runtime -> measure -> quality gate ->
(gpu/Jetson INT8: float layers in FP16 where the gate's floor holds) -> bundle + report. This is the only module besides the CLI that knows every stage.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from gencompress import defaults, zoo
from gencompress.atomic import check_output_dir
from gencompress.batching import mini_batch
from gencompress.bundle import ENGINE, ONNX, SOURCE_ONNX, Bundle
from gencompress.conditional import check_classes
from gencompress.conditions import describe
from gencompress.errors import GencompressError
from gencompress.inputs import (evaluation_inputs, input_range, output_range, output_range_warnings, peak, prepare_inputs,
                                settle_output_range)
from gencompress.floor import quality_floor
from gencompress.loading import RANDOM_WEIGHTS, check_generator, load_checkpoint_into, load_spec, weight_warnings
from gencompress.metrics import fidelity
from gencompress.model_stats import count_macs, count_params
from gencompress.progress import StageTimer, log
from gencompress.compress import PruneConfig, prune
from gencompress.export import (OPENVINO_XML, PRECISIONS, OrtRunner, PrecisionConfig, SessionFromOnnx, TorchRunner,
                                apply_precision, check_export, deployment_runner, engine_for_target, extend_float_layers,
                                fp16_float_layers, run_and_close, run_batches, with_fp32_onnx)
from gencompress.cli.models import is_zoo_name, load_model
from gencompress.benchmarks import (Timing, latency_table, onnx_runners, ort_runtime_text, paired_speedup, runtime_speedup,
                                    estimate_profile, target_estimate, timing_batch, write_build_report)

DEFAULT_MODEL = "dcgan"
TARGETS = defaults.TARGETS


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
    device: str | None = None  # --device: the GPU/Jetson profile of a TensorRT target's estimate (None: the target's own)
    data: str | None = None  # --data SPEC (gencompress/inputs.py); None: inputs drawn from the input spec
    io_spec: dict = field(default_factory=dict)  # apply_io_spec's keywords: input_kind, input_range, input_std, output_range

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise GencompressError(f"unknown precision {self.precision!r}")
        if self.target not in TARGETS:
            raise GencompressError(f"unknown target {self.target!r}; known: {', '.join(TARGETS)}")
        estimate_profile(self.target, self.device)  # an unknown or contradicting --device: refused before any work
        if any(n is not None and n < 1 for n in (self.calib_samples, self.eval_samples)):
            raise GencompressError("--calib-samples and --eval-samples must be at least 1")
        if not self.bench_seconds > 0:
            raise GencompressError(f"--bench-seconds must be positive (got {self.bench_seconds})")
        if self.prune is not None and not 0.0 < self.prune < 1.0:  # before any model is trained or loaded
            raise GencompressError(f"--prune {self.prune:g} is not a fraction in (0, 1); 0.5 removes half of each layer's channels")
        if self.prune is not None:
            PruneConfig(ratio=self.prune, distill_steps=self.distill_steps).validate()
        self.precision_config().validate()
        self.refuse_inapplicable()
        if self.classes is not None:
            check_classes(self.classes)

    def refuse_inapplicable(self) -> None:
        """An option that does not apply to this precision or target is an error, never a no-op."""
        if self.prune is None and self.distill_steps != defaults.DISTILL_STEPS:
            raise GencompressError("--distill-steps distils after pruning; it needs --prune")
        if self.precision != "int8":
            int8_only = {"--calib-samples": self.calib_samples is not None, "--calib-from": self.calib_from != "auto",
                         "--calibrator": self.calibrator != defaults.DEFAULT_CALIBRATOR, "--deconv-weight-axis": self.deconv_weight_axis != 1,
                         "--min-psnr": self.min_psnr is not None, "--no-quality-floor": self.no_floor,
                         "--bias-correction": self.bias_correction, "--qat-steps": self.qat_steps != 0, "--cpu-runtime": self.cpu_runtime != "auto"}
            given = [name for name, is_given in int8_only.items() if is_given]
            if given:
                raise GencompressError(f"{given[0]} applies to --precision int8, not {self.precision}")
        if self.target != "cpu" and self.cpu_runtime != "auto":
            raise GencompressError(f"--cpu-runtime chooses the runtime of --target cpu; --target {self.target} runs TensorRT")
        if self.data is not None and self.calib_from != "auto":
            raise GencompressError(f"--calib-from {self.calib_from} does not apply with --data: your data calibrates")
        if self.target == "cpu" and self.deconv_weight_axis != 1:
            raise GencompressError("--deconv-weight-axis sets TensorRT's Q/DQ form; --target cpu rewrites every ConvTranspose into a convolution")

    def refuse_inapplicable_to(self, source: Bundle) -> None:
        """Options that only modelopt's fake-quant PyTorch model takes, refused for a model that is a graph
        (ONNX, TorchScript): on a gpu target it is quantised as ONNX (export/precision.py), which has none."""
        graph_only = source.model is None or source.manifest["architecture"]["kind"] == "torchscript"
        if not graph_only or self.precision != "int8" or self.target == "cpu":
            return
        modelopt_only = {"--calibrator": self.calibrator != defaults.DEFAULT_CALIBRATOR, "--bias-correction": self.bias_correction,
                         "--qat-steps": self.qat_steps != 0, "--deconv-weight-axis": self.deconv_weight_axis != 1}
        given = [name for name, is_given in modelopt_only.items() if is_given]
        if given:
            arch = source.manifest["architecture"]
            raise GencompressError(f"{given[0]} applies to a PyTorch model (modelopt); {arch.get('name', 'the model')} is a "
                                   f"{arch['kind']} graph, quantised as ONNX with max calibration")

    def timing(self) -> Timing:
        """How the latency table and the paired ratio time things (benchmarks/build_speed.py)."""
        return Timing(batches=self.latency_batches, iters=self.latency_iters, warmup=self.latency_warmup, seconds=self.bench_seconds,
                      threads=self.threads, progress=self.progress)

    def precision_config(self, calib_batch: int = 32, timing_batch: int = 8) -> PrecisionConfig:
        return PrecisionConfig(precision=self.precision, target=self.target, calibrator=self.calibrator,
                               calib_samples=self.calib_samples or defaults.CALIB_SAMPLES, calib_batch=calib_batch,
                               calib_from=self.calib_from, deconv_weight_axis=self.deconv_weight_axis, min_psnr=self.min_psnr,
                               no_floor=self.no_floor, qat_steps=self.qat_steps, bias_correction=self.bias_correction,
                               eval_samples=self.judge_samples or self.eval_samples or defaults.EVAL_SAMPLES, threads=self.threads,
                               histogram_samples=self.histogram_samples, cpu_runtime=self.cpu_runtime, timing_batch=timing_batch)


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


def resolve_model(cfg: BuildConfig) -> tuple[Bundle, str]:
    """The SPEC of --model as an in-memory bundle, and a name for reports."""
    spec = cfg.model or DEFAULT_MODEL
    if is_zoo_name(spec):
        if cfg.classes is not None:
            raise GencompressError(f"--classes applies to a package.module:callable model whose forward takes (z, y), not zoo model {spec!r}")
        if cfg.input_shape is not None and tuple(cfg.input_shape[1:]) != zoo.input_shape(spec):
            raise GencompressError(
                f"input shape {'x'.join(map(str, cfg.input_shape))} does not fit zoo model {spec!r} "
                f"(it takes Nx{'x'.join(map(str, zoo.input_shape(spec)))})"
            )
        if cfg.trust_pickle and not cfg.checkpoint:
            raise GencompressError("--trust-pickle applies only to a --checkpoint (it allows unpickling that file); none was given")
        if cfg.random_init and cfg.checkpoint:
            raise GencompressError("--random-init and --checkpoint contradict each other: give the weights, or ask for random ones")
        if cfg.random_init or cfg.checkpoint:
            from gencompress.train import zoo_bundle

            torch.manual_seed(0)
            bundle = zoo_bundle(spec, zoo.build(spec))
            if cfg.checkpoint:  # strict: a missing, extra or mis-shaped layer is refused by name
                bundle.record(load_checkpoint_into(bundle.model, cfg.checkpoint, cfg.trust_pickle))
                return bundle, f"{spec} ({Path(cfg.checkpoint).name})"
            bundle.record({"step": "load", "weights": RANDOM_WEIGHTS})
            return bundle, f"{spec} (random init)"
        return load_model(spec, cfg.progress), f"{spec} (trained on digits)"
    if cfg.random_init:
        raise GencompressError(f"--random-init applies to a zoo name ({', '.join(zoo.names())}), not {spec}")
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
        cfg.refuse_inapplicable_to(source)
        if source.model is not None:  # a wrong input shape or NaN output is named here, before MACs are counted
            source.manifest["output"]["shape"] = list(check_generator(source.model, source.input_shape, _user_batch(cfg)))
            _shared_weight_modconvs(source)
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
        paired_batch = timing_batch(cfg.latency_batches, batch)  # the interleaved timings' batch (runtime choice, paired speed)
        source = with_fp32_onnx(source, work)
        fp32_onnx = source.file(SOURCE_ONNX)  # what the compressed graph is timed and judged against
        if source.model is not None:
            reference = run_batches(TorchRunner(source.model), inputs, batch, _label(cfg, "FP32 reference"))
            reference_name = "FP32 PyTorch"
        else:
            reference = run_and_close(OrtRunner(SessionFromOnnx(fp32_onnx, cfg.threads)), inputs, batch, _label(cfg, "FP32 reference"))
            reference_name = "FP32 ONNX (ONNX Runtime)"
    _check_finite(reference)
    settle_output_range(source.manifest, reference)
    floor = quality_floor(cfg.min_psnr, cfg.no_floor)
    if floor is not None and cfg.precision == "int8":
        _check_reachable(floor, reference, fp32_onnx, inputs, cfg.threads, batch)

    with timer.stage(f"compress ({cfg.precision})", f"{cfg.calib_samples} calibration inputs in batches of {batch}"):
        final, quant_form = apply_precision(source, cfg.precision_config(batch, paired_batch), work, cfg.progress, data)
    final_onnx = final.file(ONNX)
    runtime_step = final.last_step("runtime")  # --target cpu: the runtime the precision stage measured and chose
    runtime = runtime_step["choice"] if runtime_step else None
    with timer.stage("export checks"):
        # checker (full), target ops, Q/DQ lint, ORT vs PyTorch; Jetson targets get device scripts
        export_checks = check_export(final, cfg.target, work, inputs=inputs if data is not None else None)
    with timer.stage("evaluate"):
        # --target cpu: ONNX Runtime is the deployment runtime, fusions and all. Other targets: the
        # graph's own arithmetic (optimisations off), as TensorRT's explicit Q/DQ runs it; ORT's CPU
        # integer fusions lost 8 dB on the SD-VAE layout (export/verify.py).
        optimization = "all" if cfg.target == "cpu" else "disable"
        compressed = run_and_close(deployment_runner(final, cfg.threads, optimization), inputs, batch, _label(cfg, "evaluate"))
        quality = {**fidelity(reference, compressed, peak(source.manifest)), "psnr_peak": peak(source.manifest),
                   "output_range": list(output_range(source.manifest)), "samples": len(inputs), "seed": cfg.eval_seed,
                   "reference": reference_name, "inputs": inputs_record,
                   "runtime": (f"OpenVINO CPU ({runtime['candidate']})" if runtime and runtime["runtime"] == "openvino"
                               else ort_runtime_text(optimization))}
    def judge(bundle: Bundle) -> tuple[dict, np.ndarray]:
        """A graph's scores on the evaluation inputs, run as the gate runs the bundle, and its outputs."""
        out = run_and_close(deployment_runner(bundle, cfg.threads, optimization), inputs, batch, _label(cfg, "gate"))
        scores = floor.measure(reference, out, peak(source.manifest)) if floor else fidelity(reference, out, peak(source.manifest))
        return scores, out

    gate_extension = None
    if floor is not None:  # the gate: no bundle below its floor, whatever the search saw
        quality.update(floor.measure(reference, compressed, peak(source.manifest)), floor=floor.describe())
        if not quality["meets_floor"] and cfg.precision == "int8":  # the search's judge inputs disagreed: continue it on the gate's
            with timer.stage("gate: more float layers", f"judged on the {len(inputs)} evaluation inputs"):
                extended = extend_float_layers(final, floor, judge, work, (quality, compressed))
            if extended is not None:
                final, compressed, gate_extension = extended
                final_onnx = final.file(ONNX)
                runtime_step = final.last_step("runtime")
                runtime = runtime_step["choice"] if runtime_step else None
                quality.update(fidelity(reference, compressed, peak(source.manifest)), **floor.measure(reference, compressed, peak(source.manifest)))
                if not runtime:
                    quality["runtime"] = ort_runtime_text(optimization)
                export_checks = check_export(final, cfg.target, work, inputs=inputs if data is not None else None)
        if not quality["meets_floor"]:
            raise GencompressError(f"the {cfg.precision} model measured {quality['psnr_db']:.2f} dB, SSIM {quality['ssim']:.4f} on the "
                                   f"{cfg.eval_samples} evaluation inputs, under {floor.describe()}; nothing written")
    float_layers = None
    if cfg.precision == "int8" and final.form.tensorrt_qdq:  # gpu/Jetson: the layers kept float in FP16 where the floor holds
        with timer.stage("float layers in FP16", f"judged on the {len(inputs)} evaluation inputs"):
            converted, outputs, float_layers = fp16_float_layers(final, floor, judge, work, quality)
        log(f"float layers: {float_layers.get('why') or 'FP16 (%.2f dB)' % float_layers['psnr_db']}")
        if converted is not None:
            final, compressed, final_onnx = converted, outputs, converted.file(ONNX)
            quality.update(fidelity(reference, compressed, peak(source.manifest)))
            if floor is not None:  # the judge's own scores of this graph, measured once
                quality.update({k: float_layers[k] for k in ("psnr_db", "ssim", "meets_floor")})
            # the export was verified against its fake-quant twin before the conversion; the gate judged this graph
            export_checks = {**check_export(final, cfg.target, work, inputs=inputs if data is not None else None, verify_twin=False),
                             "verification": export_checks.get("verification")}
            quant_form += ", everything outside the INT8 layers in FP16"
    quant_step = final.last_step("quantize") or {}

    with timer.stage("latency table", f"up to {cfg.bench_seconds:g} s per row"):
        latency = latency_table(_latency_runners(source, fp32_onnx, final, cfg), inputs, cfg.timing())
    with timer.stage("paired speed"):
        paired = runtime_speedup(runtime) or paired_speedup(fp32_onnx, final_onnx, cfg.precision, inputs, paired_batch, cfg.timing())
    with timer.stage("model stats"):
        params = count_params(source.model) if source.model is not None else None
        if cfg.prune is not None:  # pruning changed the count
            macs = count_macs(source.model, source.input_shape) if source.model is not None else None
    with timer.stage("engine"):
        engine = engine_for_target(final_onnx, work / ENGINE, cfg.target)
        if engine["built"]:
            final.files[ENGINE] = work / ENGINE
    summary = {
        "model": name,
        "precision": final.form.precision,  # what shipped: --target cpu INT8 ships the float model where no INT8 form beat it
        "float_shipped": runtime.get("why_float") if runtime else None,  # why, in one line
        "target": cfg.target,
        "quant_form": quant_form,
        "quality": quality,
        "latency": latency,
        "paired_speedup": paired,
        "cpu_runtime": runtime,
        "gate_extension": gate_extension,  # the float layers the gate added to the search's, judged on the evaluation inputs
        "float_layers": float_layers,  # gpu/Jetson INT8: the precision of the layers kept float, and why
        "target_estimate": target_estimate(fp32_onnx, final_onnx, cfg.target, max(cfg.latency_batches), cfg.device),
        "latency_iters": cfg.latency_iters,
        "latency_warmup": cfg.latency_warmup,
        "bench_seconds": cfg.bench_seconds,
        "mini_batch": batch,
        "samples": {"calibration": cfg.calib_samples, "evaluation": cfg.eval_samples, "judging": cfg.judge_samples,
                    "histogram_calibration": cfg.histogram_samples if cfg.target == "cpu" else None,
                    "given": [k for k, v in (("calibration", given.calib_samples), ("evaluation", given.eval_samples)) if v]},
        "params": params,
        "macs": macs,
        "file_bytes": {"fp32_onnx": fp32_onnx.stat().st_size, "compressed_onnx": final_onnx.stat().st_size},  # the report's size table
        "layer_precision": final.manifest.get("precision", {}),
        "sensitivity": quant_step.get("sensitivity"),
        "calibrators": quant_step.get("calibrators"),
        "conditions": describe(cfg.threads),
        "engine": engine,
        "export_checks": export_checks,
        "prune": source.manifest["metrics"].get("prune"),
        # said in the CLI line and the report: random weights, else FP32 outputs that do not fit the output range
        # (an untrained model's outputs say nothing about the trained one's range)
        "warnings": weight_warnings(source.manifest) or output_range_warnings(source.manifest, reference),
    }
    with timer.stage("report + save"):
        summary["time"] = timer.as_dict()  # the report's copy: everything up to the report
        _write_report(summary, reference, compressed, final, work, inputs)
        # the manifest holds these once already: the per-layer precision map, and the runtime step's choice
        final.manifest["metrics"]["build"] = {k: v for k, v in summary.items() if k not in ("layer_precision", "cpu_runtime")}
        saved = final.save(cfg.out)
    summary["time"] = timer.as_dict()
    summary["out"] = str(saved.path)
    return summary


def _shared_weight_modconvs(source: Bundle) -> None:
    """StyleGAN2's fused modulated convolutions (per-sample weights) in their shared-weight form,
    checked in float64 (compress/modconv.py): everything after exports, quantises and prunes that;
    the recipe names each module rewritten."""
    from gencompress.compress import shared_weight_form
    from gencompress.data import draw_inputs

    example = draw_inputs(tuple(source.input_shape), 2, source.manifest["input"], 0)  # two samples: per-sample weights show
    records = shared_weight_form(source.model, example)
    if records:
        source.record({"step": "rewrite", "what": "modulated convolutions: per-sample weights -> shared weight", "modules": records})


def _label(cfg: BuildConfig, what: str) -> str:
    return what if cfg.progress else ""


def _check_finite(reference: np.ndarray) -> None:
    if not np.isfinite(reference).all():
        raise GencompressError("model output contains NaN or Inf")


def _check_reachable(floor, reference: np.ndarray, fp32_onnx: Path, inputs: np.ndarray, threads: int, batch: int = 32) -> None:
    """A floor above what the FP32 graph itself reaches (ONNX Runtime against PyTorch) cannot
    be met by any INT8 mix: say so before any calibration."""
    ceiling = floor.measure(reference, run_and_close(OrtRunner(SessionFromOnnx(fp32_onnx, threads)), inputs, batch))
    if not ceiling["meets_floor"]:
        raise GencompressError(f"{floor.describe()} is above what the FP32 model itself reaches on ONNX Runtime "
                               f"({ceiling['psnr_db']:.2f} dB, SSIM {ceiling['ssim']:.4f}): no INT8 mix can meet it")


def _latency_runners(source: Bundle, fp32_onnx: Path, final: Bundle, cfg: BuildConfig) -> list:
    """The table's rows: eager PyTorch (where there is a module), FP32 and compressed ONNX
    Runtime, and OpenVINO where the build chose it."""
    runners = [("torch eager", "fp32", TorchRunner(source.model))] if source.model is not None else []
    shipped = final.form.precision  # fp32 where a --target cpu build shipped the float model: one FP32 ONNX Runtime row, not two
    runners += onnx_runners(fp32_onnx, fp32_onnx if shipped == "fp32" else final.file(ONNX), shipped, cfg.threads)
    if OPENVINO_XML in final.files:
        runners.append(("openvino", (final.last_step("runtime") or {}).get("precision", shipped), deployment_runner(final, cfg.threads)))
    return runners


def _write_report(summary: dict, reference: np.ndarray, compressed: np.ndarray, bundle: Bundle, work: Path,
                  inputs: np.ndarray) -> None:
    shown = inputs if bundle.manifest["input"].get("kind") == "image" else None  # an image input is worth seeing beside its output
    bundle.files.update(write_build_report(summary, reference, compressed, work / "report", shown,
                                           input_range(bundle.manifest), output_range(bundle.manifest)))

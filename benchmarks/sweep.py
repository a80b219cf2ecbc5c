"""`gencompress sweep BUNDLE`: every (pruning ratio x precision) variant, built, measured, compared.

Each variant is judged against the *original* FP32 model on the same latents (not
against its own pruned FP32 self), timed on one backend, and placed on the
latency-vs-quality plane; the Pareto front at the scatter batch is marked. The best
PyTorch configurations (eager, channels_last, torch.compile) of the original are timed
too, so an INT8 gain is never quoted against eager alone. Roofline estimates for the
named device profiles are added as rows labelled `estimated`, and set beside the
measurement where the profile is this machine's.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gencompress.bundle import ONNX, Bundle
from gencompress.errors import GencompressError
from gencompress.progress import bar

from . import devices, roofline
from .bench import ROW_KEYS, BenchConfig, conditions, run
from .pareto import pareto_front
from .plots import quality_value
from .realtime import verdict

PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")
BASELINES = ("torch", "torch-channels-last", "torch-compile")


@dataclass
class SweepConfig:
    prune: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    backend: str = "ort"
    batches: tuple[int, ...] = (1, 8, 32)
    iters: int = 50
    warmup: int = 10
    seconds: float = 10.0  # time cap per latency row (--bench-seconds)
    threads: int = 2
    quality_samples: int = 64
    distill_steps: int = 300
    baselines: tuple[str, ...] = BASELINES
    compile_backend: str = "inductor"
    estimate_profiles: tuple[str, ...] = ("cpu-epyc-2c", "jetson-orin-nano")
    measured_profile: str = "cpu-epyc-2c"  # the profile describing the machine the sweep runs on
    fps: float | None = None
    budget_ms: float | None = None
    data_samples: int = 0
    progress: bool = True

    def validate(self) -> None:
        if any(not 0.0 <= r < 1.0 for r in self.prune):
            raise GencompressError("--prune ratios must be in [0, 1)")
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown:
            raise GencompressError(f"unknown precision(s) {', '.join(unknown)}; known: {', '.join(PRECISIONS)}")
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise GencompressError(f"unknown baseline(s) {', '.join(bad)}; known: {', '.join(BASELINES)}")
        for key in self.estimate_profiles:
            devices.get(key)

    def bench_config(self, **overrides) -> BenchConfig:
        return BenchConfig(backends=(self.backend,), batches=self.batches, iters=self.iters, warmup=self.warmup,
                           seconds=self.seconds, threads=self.threads, quality_samples=self.quality_samples, progress=self.progress,
                           compile_backend=self.compile_backend, **overrides)


def pruned(original: Bundle, ratio: float, cfg: SweepConfig) -> Bundle:
    if ratio == 0.0:
        return original
    from gencompress.compress import PruneConfig, prune

    return prune(original, PruneConfig(ratio=ratio, distill_steps=cfg.distill_steps), progress=cfg.progress)


def with_precision(bundle: Bundle, precision: str, work: Path) -> Bundle:
    """The bundle with a model.onnx at `precision` (exported from its PyTorch model)."""
    from gencompress.export import OnnxConfig, to_onnx

    work.mkdir(parents=True, exist_ok=True)
    if precision == "int8":
        from gencompress.compress import QuantConfig, quantize

        return to_onnx(quantize(bundle, QuantConfig(), progress=False), OnnxConfig(), work)
    fp32 = to_onnx(bundle, OnnxConfig(), work)
    if precision == "fp32":
        return fp32
    if precision == "fp16":
        from gencompress.export.onnx_quant import convert_fp16

        path, step = convert_fp16(fp32.file(ONNX), work / "fp16.onnx"), {"step": "convert", "precision": "fp16"}
    else:  # int8-cpu: what `build --target cpu` makes (deconvolutions rewritten, QLinearConv)
        from gencompress.export.onnx_quant import cpu_int8

        (work / "int8cpu").mkdir(exist_ok=True)
        path, _ = cpu_int8(bundle.model, fp32.file(ONNX), work / "int8cpu", bundle.input_shape, bundle.input_distribution)
        # a graph ONNX Runtime quantised nothing in is labelled what it is
        step = {"step": "convert", "precision": "int8" if has_quantized_nodes(path) else "fp32"}
    out = fp32.derive(step)
    out.files[ONNX] = path
    return out


def has_quantized_nodes(path: Path) -> bool:
    import onnx

    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    return bool(ops & {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger"})


def variant_name(ratio: float, precision: str) -> str:
    return f"prune{ratio:.2f}-{precision}"


def measure_variants(original: Bundle, cfg: SweepConfig, work: Path) -> list[dict]:
    runs = []
    jobs = [(r, p) for r in cfg.prune for p in cfg.precisions]
    cache: dict[float, Bundle] = {}
    for ratio, precision in bar(jobs, "sweep", cfg.progress):
        if ratio not in cache:
            cache[ratio] = pruned(original, ratio, cfg)
        variant = with_precision(cache[ratio], precision, work / variant_name(ratio, precision))
        result = run(variant, cfg.bench_config(variant=variant_name(ratio, precision), data_samples=cfg.data_samples), reference=original)
        result["prune_ratio"], result["sweep_precision"] = ratio, precision
        result["estimates"] = estimates(variant.file(ONNX), cfg)
        runs.append(result)
    return runs


def estimates(onnx_path: Path, cfg: SweepConfig) -> list[dict]:
    return [{k: v for k, v in roofline.estimate(onnx_path, devices.get(key), b).items() if k != "layers"}
            for key in cfg.estimate_profiles for b in cfg.batches]


def measure_baselines(original: Bundle, cfg: SweepConfig) -> list[dict]:
    """The original model on the best PyTorch configurations of this device."""
    rows = []
    for name in cfg.baselines:
        backend = "torch-compile" if name == "torch-compile" else "torch"
        bcfg = replace(cfg.bench_config(variant=f"original-{name}"), backends=(backend,), channels_last=name == "torch-channels-last")
        rows += run(original, bcfg)["rows"]
    return rows


def estimated_rows(runs: list[dict], cfg: SweepConfig) -> list[dict]:
    """Rows for the profiles not at hand, labelled `estimated`, with the variant's quality."""
    rows = []
    for result in runs:
        quality = {r["batch"]: r for r in result["rows"]}
        for est in result["estimates"]:
            if est["profile"] == cfg.measured_profile:
                continue
            base = quality.get(est["batch"]) or result["rows"][0]
            row = {k: None for k in ROW_KEYS}
            row.update({k: base.get(k) for k in ("model", "variant", "precision", "psnr_db", "ssim", "max_abs_error", "cosine", "quality_samples")})
            ms = est["estimated_ms"]
            row.update({"backend": f"roofline:{est['profile']}", "device": est["profile"], "batch": est["batch"], "median_ms": ms,
                        "min_ms": ms, "mean_ms": ms, "p90_ms": ms, "p99_ms": ms, "std_ms": 0.0, "iters": 0, "warmup": 0,
                        "throughput_ips": est["batch"] * 1000.0 / ms, "source": "estimated"})
            rows.append(row)
    return rows


def estimate_checks(runs: list[dict], cfg: SweepConfig) -> list[dict]:
    """Estimate against measurement on this machine's profile: ratio = measured median / estimate."""
    checks = []
    for result in runs:
        measured = {r["batch"]: r for r in result["rows"]}
        for est in result["estimates"]:
            row = measured.get(est["batch"])
            if est["profile"] == cfg.measured_profile and row:
                checks.append({"variant": row["variant"], "profile": est["profile"], "batch": est["batch"],
                               "estimated_ms": est["estimated_ms"], "measured_ms": row["median_ms"], "measured_min_ms": row["min_ms"],
                               "ratio": row["median_ms"] / est["estimated_ms"], "ratio_min": row["min_ms"] / est["estimated_ms"]})
    return checks


def mark_pareto(rows: list[dict], batch: int) -> list[str]:
    """Set row['pareto'] on the measured rows at `batch`; return the front's labels."""
    chosen = [r for r in rows if r["batch"] == batch and r["source"] == "measured"]
    # PSNR above the cap is FP32 rounding noise: such points count as equally good (as plotted)
    points = [(r["median_ms"], quality_value(r)) for r in chosen]
    front = {id(chosen[i]) for i in pareto_front(points)}
    for r in rows:
        r["pareto"] = id(r) in front
    return [f"{r['variant']} {r['backend']}" for r in chosen if id(r) in front]


def sweep(original: Bundle, cfg: SweepConfig) -> dict:
    """Stage function: build and measure every variant; the result JSON of the sweep."""
    cfg.validate()
    if original.model is None:
        raise GencompressError("sweep needs a bundle with a PyTorch model (a bundle folder or zoo name)")
    work = Path(tempfile.mkdtemp(prefix="gencompress-sweep-"))
    try:
        runs = measure_variants(original, cfg, work)
        rows = [row for result in runs for row in result["rows"]] + measure_baselines(original, cfg)
        rows += estimated_rows(runs, cfg)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    batch = 8 if 8 in cfg.batches else cfg.batches[0]
    return {
        "kind": "gencompress-sweep", "schema_version": 1, "model": runs[0]["model"],
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "conditions": conditions(cfg.bench_config()), "rows": rows, "pareto_batch": batch,
        "pareto_front": mark_pareto(rows, batch),
        "realtime": verdict(rows, cfg.fps, cfg.budget_ms) if cfg.fps or cfg.budget_ms else [],
        "estimate_vs_measured": estimate_checks(runs, cfg),
        "profiles": {key: devices.get(key).as_dict() for key in cfg.estimate_profiles},
        "quality_vs_data": [{"variant": r["rows"][0]["variant"], **r["quality_vs_data"]} for r in runs if r.get("quality_vs_data")],
        "sample_grids": {r["rows"][0]["variant"]: g for r in runs for g in r["sample_grids"].values()},
    }

"""`gencompress sweep BUNDLE`: every (pruning ratio x precision) variant, built, measured, compared.

Each variant is judged against the *original* FP32 model on the same latents (not
against its own pruned FP32 self), timed on one backend, and placed on the
latency-vs-quality plane; the Pareto front at the scatter batch is marked. A variant under
the quality floor that `build` enforces (gencompress/floor.py; against the original, here) is
marked so, in the JSON and the report, and kept off the front: a fast variant nobody could
ship is not a trade-off. Every precision is made by the build's own precision stage
(export.apply_precision: the same INT8 forms, calibration and floor search). The best
PyTorch configurations (eager, channels_last, torch.compile) of the original are timed
too, so an INT8 gain is never quoted against eager alone. Roofline estimates for the
named device profiles are added as rows labelled `estimated`, and set beside the
measurement where the profile is this machine's.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from gencompress.bundle import ONNX, Bundle
from gencompress.errors import GencompressError
from gencompress.floor import FloorNotMet, QualityFloor, quality_floor
from gencompress.inputs import UserData, prepare_inputs
from gencompress.progress import bar

from . import devices, roofline
from .bench import ROW_KEYS, BenchConfig, conditions, run
from .pareto import pareto_rows
from .plots import quality_value
from .realtime import verdict

# sweep precision -> (precision, target) of the build's precision stage (export.apply_precision)
PRECISION_FORMS = {"fp32": ("fp32", "gpu"), "fp16": ("fp16", "gpu"), "int8": ("int8", "gpu"), "int8-cpu": ("int8", "cpu")}
PRECISIONS = tuple(PRECISION_FORMS)
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
    estimate_profiles: tuple[str, ...] = ("cpu", "jetson-orin-nano")
    measured_profile: str = "cpu"  # the profile describing the machine the sweep runs on (its key, whatever alias named it)
    fps: float | None = None
    budget_ms: float | None = None
    data_samples: int = 0
    progress: bool = True
    data: str | None = None  # --data SPEC: distil, calibrate and judge every variant on the user's inputs
    io_spec: dict = field(default_factory=dict)  # --input-kind/--input-range/--input-std/--output-range
    min_psnr: float | None = None  # the quality floor, as build's: None is the default floor (gencompress/floor.py)
    no_floor: bool = False

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
            devices.get(key, self.threads)  # a CPU profile: measured here now (at the sweep's threads), before any work
        self.floor()

    def floor(self) -> QualityFloor | None:
        """The floor INT8 variants are searched under and every variant is judged by (None: lifted)."""
        return quality_floor(self.min_psnr, self.no_floor)

    def precision_config(self, precision: str):
        """The build's precision-stage config for a sweep precision. Its runtime is ONNX Runtime's:
        the sweep times every variant on one backend (--backend), not the runtime `build` would choose."""
        from gencompress.export import PrecisionConfig

        graph_precision, target = PRECISION_FORMS[precision]
        return PrecisionConfig(precision=graph_precision, target=target, min_psnr=self.min_psnr, no_floor=self.no_floor,
                               threads=self.threads, cpu_runtime="onnxruntime")

    def bench_config(self, **overrides) -> BenchConfig:
        return BenchConfig(backends=(self.backend,), batches=self.batches, iters=self.iters, warmup=self.warmup,
                           seconds=self.seconds, threads=self.threads, quality_samples=self.quality_samples, progress=self.progress,
                           compile_backend=self.compile_backend, **overrides)


def pruned(original: Bundle, ratio: float, cfg: SweepConfig, data: UserData | None = None) -> Bundle:
    if ratio == 0.0:
        return original
    from gencompress.compress import PruneConfig, prune

    return prune(original, PruneConfig(ratio=ratio, distill_steps=cfg.distill_steps), progress=cfg.progress, data=data)


def with_precision(bundle: Bundle, precision: str, work: Path, cfg: SweepConfig, data: UserData | None = None) -> Bundle:
    """The bundle with a model.onnx at sweep precision `precision`, made as `build` makes it:
    its FP32 graph, then the precision stage (export.apply_precision)."""
    from gencompress.export import apply_precision, with_fp32_onnx

    work.mkdir(parents=True, exist_ok=True)
    out, _ = apply_precision(with_fp32_onnx(bundle, work), cfg.precision_config(precision), work, progress=cfg.progress, data=data)
    return out


def variant_name(ratio: float, precision: str) -> str:
    return f"prune{ratio:.2f}-{precision}"


def measure_variants(original: Bundle, cfg: SweepConfig, work: Path, data: UserData | None = None) -> tuple[list[dict], list[dict]]:
    """Each variant's bench result, and the variants not built because no INT8 mix of them
    meets the floor (as `build` refuses them): {"variant", "note"}."""
    runs, refused = [], []
    jobs = [(r, p) for r in cfg.prune for p in cfg.precisions]
    cache: dict[float, Bundle] = {}
    for ratio, precision in bar(jobs, "sweep", cfg.progress):
        if ratio not in cache:
            cache[ratio] = pruned(original, ratio, cfg, data)
        try:
            variant = with_precision(cache[ratio], precision, work / variant_name(ratio, precision), cfg, data)
        except FloorNotMet as exc:
            refused.append({"variant": variant_name(ratio, precision), "note": f"not built: {exc}"})
            continue
        result = run(variant, cfg.bench_config(variant=variant_name(ratio, precision), data_samples=cfg.data_samples), reference=original,
                     data=data)
        result["prune_ratio"], result["sweep_precision"] = ratio, precision
        result["estimates"] = estimates(variant.file(ONNX), cfg)
        runs.append(result)
    if not runs:
        raise GencompressError(f"no variant could be built under the floor: {refused[0]['note']}")
    return runs, refused


def estimates(onnx_path: Path, cfg: SweepConfig) -> list[dict]:
    return [{k: v for k, v in roofline.estimate(onnx_path, devices.get(key, cfg.threads), b).items() if k != "layers"}
            for key in cfg.estimate_profiles for b in cfg.batches]


def measure_baselines(original: Bundle, cfg: SweepConfig, data: UserData | None = None) -> list[dict]:
    """The original model on the best PyTorch configurations of this device."""
    rows = []
    for name in cfg.baselines:
        backend = "torch-compile" if name == "torch-compile" else "torch"
        bcfg = replace(cfg.bench_config(variant=f"original-{name}"), backends=(backend,), channels_last=name == "torch-channels-last")
        rows += run(original, bcfg, data=data)["rows"]
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


def floor_note(row: dict, floor: QualityFloor) -> str | None:
    """"under the floor: 18.8 dB < 35 dB, SSIM 0.57 < 0.97" for a row whose quality misses
    `floor`, naming only what misses; None where it holds or the row has no quality."""
    psnr_db, ssim = row.get("psnr_db"), row.get("ssim")
    if psnr_db is None:
        return None
    misses = [f"{psnr_db:.1f} dB < {floor.min_psnr:g} dB"] if psnr_db < floor.min_psnr else []
    if floor.min_ssim is not None and ssim is not None and ssim < floor.min_ssim:
        misses.append(f"SSIM {ssim:.2f} < {floor.min_ssim:g}")
    return f"under the floor: {', '.join(misses)}" if misses else None


def mark_floor(rows: list[dict], floor: QualityFloor | None) -> list[dict]:
    """Set row['meets_floor'] (and row['floor_note'] where it misses) on every row with a
    quality; return one {"variant", "note"} per variant under the floor. No floor: nothing marked."""
    under = {}
    for r in rows:
        if floor is None or r.get("psnr_db") is None:
            continue
        note = floor_note(r, floor)
        r["meets_floor"] = note is None
        if note:
            r["floor_note"] = note
            under.setdefault(r["variant"], note)
    return [{"variant": v, "note": n} for v, n in under.items()]


def mark_pareto(rows: list[dict], batch: int) -> list[str]:
    """Set row['pareto'] on the measured rows at `batch` (a row under the floor never is);
    return the front's labels."""
    chosen = [r for r in rows if r["batch"] == batch and r["source"] == "measured"]
    # PSNR above the cap is FP32 rounding noise: such points count as equally good (as plotted)
    front = {id(r) for r in pareto_rows(chosen, quality_value)}
    for r in rows:
        r["pareto"] = id(r) in front
    return [f"{r['variant']} {r['backend']}" for r in chosen if id(r) in front]


def summary_line(result: dict) -> str:
    """The sweep in one line: rows, the front, and the variants kept off it by the floor."""
    under = "; ".join(f"{u['variant']} ({u['note']})" for u in result["under_floor"])
    return (f"{len(result['rows'])} rows; Pareto front: {'; '.join(result['pareto_front'])}"
            + (f"; off the front, {under}" if under else ""))


def sweep(original: Bundle, cfg: SweepConfig) -> dict:
    """Stage function: build and measure every variant; the result JSON of the sweep."""
    cfg.validate()
    if original.model is None:
        raise GencompressError("sweep needs a bundle with a PyTorch model (a bundle folder or zoo name)")
    data = prepare_inputs(original.manifest, cfg.data, cfg.io_spec, cfg.quality_samples)  # once, before any work
    work = Path(tempfile.mkdtemp(prefix="gencompress-sweep-"))
    try:
        runs, refused = measure_variants(original, cfg, work, data)
        rows = [row for result in runs for row in result["rows"]] + measure_baselines(original, cfg, data)
        rows += estimated_rows(runs, cfg)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    batch = 8 if 8 in cfg.batches else cfg.batches[0]
    floor = cfg.floor()
    under_floor = refused + mark_floor(rows, floor)  # before the front: a row under the floor is kept off it
    return {
        "kind": "gencompress-sweep", "schema_version": 1, "model": runs[0]["model"],
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "quality_inputs": runs[0]["quality_inputs"],
        "conditions": conditions(cfg.bench_config()), "rows": rows, "pareto_batch": batch,
        "pareto_front": mark_pareto(rows, batch),
        "floor": {**floor.as_dict(), "describe": floor.describe()} if floor else None, "under_floor": under_floor,
        "realtime": verdict(rows, cfg.fps, cfg.budget_ms) if cfg.fps or cfg.budget_ms else [],
        "estimate_vs_measured": estimate_checks(runs, cfg),
        "profiles": {key: devices.get(key, cfg.threads).as_dict() for key in cfg.estimate_profiles},
        "quality_vs_data": [{"variant": r["rows"][0]["variant"], **r["quality_vs_data"]} for r in runs if r.get("quality_vs_data")],
        "sample_grids": {r["rows"][0]["variant"]: g for r in runs for g in r["sample_grids"].values()},
    }

"""`benchmarks.run(bundle, cfg)`: latency, memory and quality of one bundle, per backend and batch.

Every row has the same keys whatever the backend (ROW_KEYS), so a report can put
PyTorch, ONNX Runtime and TensorRT side by side. Quality is measured once per backend
on fixed latents against the FP32 PyTorch model (the bundle's own weights, or the
`reference` bundle's), so a compressed variant is judged against its original.
"""
from __future__ import annotations

import datetime as _dt
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from gencompress.bundle import ONNX, SOURCE_ONNX, Bundle
from gencompress.conditions import describe
from gencompress.data import draw_inputs
from gencompress.errors import GencompressError
from gencompress.inputs import UserData, evaluation_inputs, peak, prepare_inputs, settle_output_range
from gencompress.export.runners import BACKENDS, OrtRunner, Runner, SessionFromOnnx, run_batches
from gencompress.metrics import fidelity, ssim

from . import runners_extra, tegrastats  # runners_extra registers torch-compile, cuda-graph, trt
from .latency import UNSTABLE_FACTOR, measure, unstable_note
from .report import format_load
from .memory import device_peak_mb, host_peak_rss_mb, host_rss_mb, reset_device_peak
from .realtime import verdict

SCHEMA_VERSION = 1
TORCH_BACKENDS = ("torch", "torch-compile", "cuda-graph")
ROW_KEYS = (
    "model", "variant", "backend", "precision", "device", "memory_format", "batch", "iters", "warmup",
    "min_ms", "median_ms", "mean_ms", "p90_ms", "p99_ms", "std_ms", "throughput_ips",
    "host_rss_mb", "host_peak_rss_mb", "device_peak_mem_mb", "power_w", "energy_per_image_j",
    "psnr_db", "ssim", "max_abs_error", "cosine", "quality_samples", "source",
    "unstable",  # why the row's calls disagree beyond latency.UNSTABLE_FACTOR (a loaded machine), else None
)


@dataclass
class BenchConfig:
    backends: tuple[str, ...] = ("ort",)
    batches: tuple[int, ...] = (1, 8, 32)
    device: str = "cpu"
    precision: str = "fp32"  # PyTorch backends: dtype; ONNX backends time the bundle's own graph
    channels_last: bool = False
    compile_backend: str = "inductor"
    iters: int = 50
    warmup: int = 10
    seconds: float = 10.0  # time cap per latency row (--bench-seconds; benchmarks/latency.py)
    threads: int = 2
    quality_samples: int = 64
    seed: int = 0
    fps: float | None = None
    budget_ms: float | None = None
    data_samples: int = 0  # > 0: FID/KID/IS against the real data on this many samples
    progress: bool = True
    variant: str = ""  # a label for the row (sweep names its variants)
    estimate_profile: str | None = "cpu"  # roofline beside each ONNX Runtime row on the CPU, on this machine's profile (None: skip)
    data: str | None = None  # --data SPEC: quality on the user's inputs (its first quality_samples)
    ref_data: str | None = None  # --ref-data folder:|npz: FID/KID against the user's domain
    inception_weights: str | None = None  # a local TorchScript Inception for FID/KID
    io_spec: dict = field(default_factory=dict)  # --input-kind/--input-range/--input-std/--output-range

    def validate(self) -> None:
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise GencompressError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(sorted(BACKENDS))}")
        if not self.batches or min(self.batches) < 1:
            raise GencompressError("--batch needs positive batch sizes")
        if self.iters < 1 or self.warmup < 0:
            raise GencompressError("--iters must be at least 1 and --warmup at least 0")
        if not self.seconds > 0:
            raise GencompressError(f"--bench-seconds must be positive (got {self.seconds})")
        if self.fps is not None and self.fps <= 0 or self.budget_ms is not None and self.budget_ms <= 0:
            raise GencompressError("--fps and --budget-ms must be positive")
        if self.quality_samples < 1:
            raise GencompressError("--eval-samples must be at least 1")
        if self.ref_data is not None:
            from .quality import check_ref_data

            check_ref_data(self.ref_data)
            if self.data_samples <= 0:
                raise GencompressError("--ref-data needs --fid-samples N (the generated images compared with it)")


@dataclass
class Target:
    """What a bundle gives the runners: its PyTorch model, its ONNX graph, its name."""

    name: str
    model: torch.nn.Module | None
    onnx: Path | None
    onnx_precision: str
    input_shape: tuple[int, ...]
    distribution: str | dict  # "normal" | "uniform", or the manifest's input spec
    bundle: Bundle | None = None


def bundle_precision(bundle: Bundle) -> str:
    """The precision of the bundle's ONNX graph (the bundle's form)."""
    return bundle.form.precision


def bundle_name(bundle: Bundle) -> str:
    arch = bundle.manifest["architecture"]
    base = arch.get("name") or arch.get("spec") or arch["kind"]
    return f"{base} ({Path(bundle.path).name})" if bundle.path else str(base)


ONNX_BACKENDS = ("ort", "trt", "openvino")


def target_from_bundle(bundle: Bundle, workdir: Path, need_onnx: bool = True) -> Target:
    """Make sure the bundle has both forms a backend may need (ONNX exported if missing and
    an ONNX backend is asked for: PyTorch-only runs need no ONNX stack)."""
    onnx_path = bundle.files.get(ONNX) or bundle.files.get(SOURCE_ONNX)
    if onnx_path is None and bundle.model is not None and need_onnx:
        from gencompress.export.onnx_export import OnnxConfig, export_module

        onnx_path = export_module(bundle.model, bundle.input_shape, workdir / "fp32.onnx", OnnxConfig())
    return Target(bundle_name(bundle), bundle.model, onnx_path, bundle_precision(bundle), bundle.input_shape, bundle.manifest["input"], bundle)


def make_runner(backend: str, target: Target, cfg: BenchConfig) -> tuple[Runner, str, str]:
    """The runner for `backend` (its registry factory builds loader + runner), with the
    precision and memory format it really runs."""
    factory = BACKENDS[backend]
    if backend not in TORCH_BACKENDS:
        if target.onnx is None:
            raise GencompressError(f"backend {backend} needs an ONNX graph and the bundle has none")
        if backend == "ort":
            return factory(target.onnx, cfg.threads), target.onnx_precision, "nchw"
        if backend == "openvino":  # the IR a --target cpu build chose OpenVINO for, else the ONNX
            from gencompress.export.openvino import BUNDLE_XML

            ir = target.bundle.files.get(BUNDLE_XML) if target.bundle is not None else None
            if ir is None and target.bundle is not None and target.bundle.form.quantisation == "ort-qlinear" and not target.bundle.form.has_qdq:
                raise GencompressError("this bundle's model.onnx is ONNX Runtime's integer form (QLinearConv), which OpenVINO cannot "
                                       "read, and its build chose ONNX Runtime (no openvino/ IR in it): use --backend ort")
            # the IR compiled as the build measured it (its float layers in bf16 where that won)
            hint = (target.bundle.last_step("runtime") or {}).get("inference_precision", "f32") if ir is not None else "f32"
            return factory(ir or target.onnx, cfg.threads, hint), target.onnx_precision, "nchw"
        if backend == "trt":  # the engine built from the bundle's ONNX
            return factory(target.bundle), target.onnx_precision, "nchw"
        return factory(target.onnx), target.onnx_precision, "nchw"
    if target.model is None:
        raise GencompressError(f"backend {backend} needs a PyTorch model and the bundle has none")
    kwargs = {"device": cfg.device, "threads": cfg.threads, "precision": cfg.precision, "channels_last": cfg.channels_last}
    if backend == "torch":  # the registry's eager runner, with bench's dtype and memory format
        runner = runners_extra.TorchBestRunner(runners_extra.PreparedModule(target.model, **kwargs))
    elif backend == "torch-compile":
        runner = factory(target.model, compile_backend=cfg.compile_backend, **kwargs)
    else:
        runner = factory(target.model, **kwargs)
    return runner, cfg.precision, "channels_last" if cfg.channels_last else "nchw"


def time_runner(runner: Runner, inputs: np.ndarray, cfg: BenchConfig, label: str) -> list[dict]:
    """One latency row per batch size, with the memory seen while timing it."""
    rows = []
    for batch in cfg.batches:
        x = np.resize(inputs, (batch, *inputs.shape[1:])).astype(np.float32)
        reset_device_peak(cfg.device)
        stats, power = _measure_with_power(runner, x, cfg, f"{label} b{batch}" if cfg.progress else "")
        rows.append({**stats.as_dict(), **power, "host_rss_mb": host_rss_mb(), "host_peak_rss_mb": host_peak_rss_mb(),
                     "device_peak_mem_mb": device_peak_mb(cfg.device)})
    return rows


def _measure_with_power(runner: Runner, x: np.ndarray, cfg: BenchConfig, label: str):
    """measure(), with tegrastats sampling power around it on a Jetson (None elsewhere)."""
    if not tegrastats.available():
        return measure(runner, x, cfg.iters, cfg.warmup, label=label, seconds=cfg.seconds), {"power_w": None, "energy_per_image_j": None}
    with tegrastats.Sampler() as sampler:
        stats = measure(runner, x, cfg.iters, cfg.warmup, label=label, seconds=cfg.seconds)
    images = len(x) * (stats.iters + stats.warmup)
    return stats, {"power_w": tegrastats.mean_power_w(sampler.samples),
                   "energy_per_image_j": tegrastats.energy_per_image_j(sampler.samples, sampler.seconds, images)}


def quality_against(reference: np.ndarray, output: np.ndarray, data_range: float = 2.0) -> dict:
    """PSNR and SSIM with the output range's width as their peak (2 for [-1, 1])."""
    if not np.isfinite(output).all():
        return {"psnr_db": None, "ssim": None, "max_abs_error": None, "cosine": None, "quality_samples": len(output)}
    return {**fidelity(reference, output, data_range), "ssim": ssim(reference, output, data_range), "quality_samples": len(output)}


def reference_outputs(reference: Bundle | None, target: Target, inputs: np.ndarray) -> tuple[np.ndarray, str]:
    """FP32 PyTorch outputs of the original model on `inputs` (ONNX FP32 if there is no model)."""
    model = reference.model if reference is not None else target.model
    if model is not None:
        from gencompress.export.runners import TorchRunner

        return run_batches(TorchRunner(model), inputs), "FP32 PyTorch" + (" (reference bundle)" if reference else "")
    if target.onnx is None:
        raise GencompressError("no PyTorch model and no ONNX graph to take a reference from")
    return run_batches(OrtRunner(SessionFromOnnx(target.onnx)), inputs), "ONNX Runtime on the bundle's graph"


def conditions(cfg: BenchConfig) -> dict:
    """gencompress.conditions.describe() plus what makes timings on a shared machine noisy."""
    info = describe(cfg.threads, cfg.device)
    info["loadavg_1_5_15"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    info["iters"], info["warmup"], info["bench_seconds"] = cfg.iters, cfg.warmup, cfg.seconds
    info["timer"] = "CUDA synchronize + perf_counter_ns" if cfg.device.startswith("cuda") else "perf_counter_ns"
    info["nvpmodel"] = tegrastats.nvpmodel_mode()  # None off a Jetson
    info["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return info


def run(bundle: Bundle, cfg: BenchConfig, reference: Bundle | None = None, data: UserData | None = None) -> dict:
    """Stage function: time and judge `bundle` on every backend and batch in `cfg`
    (quality on `data`'s evaluation part, already loaded by a sweep, or on cfg.data's)."""
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    if data is None:
        data = prepare_inputs(bundle.manifest, cfg.data, cfg.io_spec, cfg.quality_samples)  # before any work
    with tempfile.TemporaryDirectory(prefix="gencompress-bench-") as workdir:
        target = target_from_bundle(bundle, Path(workdir), need_onnx=any(b in ONNX_BACKENDS for b in cfg.backends))
        return _run_target(bundle, target, cfg, reference, data)


def _run_target(bundle: Bundle, target: Target, cfg: BenchConfig, reference: Bundle | None, data: UserData | None = None) -> dict:
    inputs, inputs_record = evaluation_inputs(data, bundle.manifest["input"], cfg.quality_samples, cfg.seed)
    ref, ref_name = reference_outputs(reference, target, inputs)
    settle_output_range(bundle.manifest, ref)  # `measured` takes the range from these; a far-off declared one is refused
    rows, samples = [], {}
    for backend in cfg.backends:
        runner, precision, memory_format = make_runner(backend, target, cfg)
        output = run_batches(runner, inputs, max(cfg.batches))
        quality = quality_against(ref, output, peak(bundle.manifest))
        samples[backend] = output  # the grid picks the worst and typical inputs among all of them
        base = {"model": target.name, "variant": cfg.variant or target.name, "backend": backend, "precision": precision,
                "device": cfg.device, "memory_format": memory_format, **quality, "source": "measured"}
        for timing in time_runner(runner, inputs, cfg, f"{backend} {precision}"):
            rows.append({key: {**base, **timing}.get(key) for key in ROW_KEYS})
        runner.close()
    return {
        "kind": "gencompress-bench", "schema_version": SCHEMA_VERSION, "model": target.name,
        "bundle": str(bundle.path) if bundle.path else None, "reference": ref_name, "quality_inputs": inputs_record,
        "psnr_peak": peak(bundle.manifest),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "conditions": conditions(cfg), "rows": rows,
        "realtime": verdict(rows, cfg.fps, cfg.budget_ms) if cfg.fps or cfg.budget_ms else [],
        "estimate_vs_measured": _estimates(target, rows, cfg),
        "quality_vs_data": _vs_data(bundle, target, cfg, data),
        "sample_grids": _grids(ref, samples, cfg.variant or target.name, bundle),
    }


TABLE_COLUMNS = (("variant", "variant"), ("backend", "backend"), ("precision", "precision"), ("batch", "batch"),
                 ("median ms", "median_ms"), ("min ms", "min_ms"), ("p99 ms", "p99_ms"), ("images/s", "throughput_ips"),
                 ("PSNR dB", "psnr_db"), ("SSIM", "ssim"))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    return "n/a" if value is None else str(value)


def results_table(result: dict) -> str:
    """The rows as an aligned text table for a terminal, unstable rows marked, then the load average
    they were taken under (and a warning when any row is unstable)."""
    header = [title for title, _ in TABLE_COLUMNS] + ["note"]
    body = [[_cell(row.get(key)) for _, key in TABLE_COLUMNS] + [unstable_note(row)]
            for row in result["rows"]]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *body]]
    unstable = sum(1 for row in result["rows"] if row.get("unstable"))
    load = format_load(result.get("conditions", {}).get("loadavg_1_5_15"))
    if unstable:
        lines.append(f"{unstable} of {len(result['rows'])} rows unstable (their calls differ by more than {UNSTABLE_FACTOR:g}x: "
                     f"another process took the cores?); {load}: rerun them on an idle machine before trusting their speed")
    else:
        lines.append(f"taken at {load}")
    return "\n".join(lines)


def _estimates(target: Target, rows: list[dict], cfg: BenchConfig) -> list[dict]:
    """The CPU profile's roofline beside each measured ONNX Runtime row: ratio = measured median / estimate."""
    if not cfg.estimate_profile or cfg.device != "cpu" or target.onnx is None:
        return []
    from . import devices, roofline

    profile = devices.get(cfg.estimate_profile, cfg.threads)  # the CPU profile measured at the threads timed here
    checks = []
    for row in (r for r in rows if r["backend"] == "ort"):
        est = roofline.estimate(target.onnx, profile, row["batch"])["estimated_ms"]
        checks.append({"variant": row["variant"], "profile": profile.key, "batch": row["batch"], "estimated_ms": est,
                       "measured_ms": row["median_ms"], "measured_min_ms": row["min_ms"], "ratio": row["median_ms"] / est,
                       "ratio_min": row["min_ms"] / est})
    return checks


def _vs_data(bundle: Bundle, target: Target, cfg: BenchConfig, data: UserData | None = None) -> dict | None:
    """FID/KID of `data_samples` outputs: from the user's inputs (all of them, up to the count)
    where given, else from drawn ones."""
    if cfg.data_samples <= 0:
        return None
    from .quality import quality_vs_data

    runner, _, _ = make_runner(cfg.backends[0], target, cfg)
    if data is not None:
        inputs = torch.cat([data.evaluation, data.rest])[: cfg.data_samples].numpy()
    else:
        inputs = draw_inputs(target.input_shape, cfg.data_samples, target.distribution, cfg.seed + 1).numpy()
    images = run_batches(runner, inputs, 64)
    return {"backend": cfg.backends[0], **quality_vs_data(images, bundle, cfg.inception_weights, cfg.ref_data)}


def _grids(reference: np.ndarray, samples: dict, name: str, bundle: Bundle) -> dict:
    """A base64 PNG per backend (original / compressed / amplified diff), titled with the variant
    (a sweep's every grid was "dcgan: ort"), for the report."""
    from gencompress.inputs import output_range

    from .report_html import grid_base64

    return {backend: grid_base64(reference, out, f"{name}: {backend}", peak(bundle.manifest), output_range(bundle.manifest))
            for backend, out in samples.items()}

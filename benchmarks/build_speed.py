"""The speed half of `gencompress build`'s report: the latency table, the paired ratio to quote,
and the labelled target estimate.

Three numbers with three purposes:
- `latency_table`: every backend at every batch, one after the other (time-bounded rows);
- `paired_speedup`: the compressed ONNX against the FP32 ONNX timed in interleaved rounds in a
  clean child (export/ort_pair.py): the table's rows are timed one after the other, which a
  drifting or shared CPU distorts, so this ratio is the one to quote for CPU;
- `target_estimate`: for GPU/Jetson targets, the roofline ESTIMATE on the target's profile
  (this machine's CPU cannot time a TensorRT engine, and ONNX Runtime's CPU speed of a Q/DQ
  graph says little about TensorRT's), against the FP16 engine a GPU user would otherwise run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gencompress import defaults
from gencompress.errors import GencompressError
from gencompress.onnx_utils import float_compute
from gencompress.benchmarks.latency import measure
from gencompress.export.ort_pair import time_graphs
from gencompress.export.runners import OrtRunner, Runner, SessionFromOnnx

PAIRED_ROUNDS = 9
PAIRED_SECONDS_FACTOR = 4  # the quoted ratio gets more time than one table row

# The roofline profile that stands for each TensorRT target where `--device` names none
# (`--target gpu` names no GPU: an H100 stands for it, and the CLI line says so).
ESTIMATE_PROFILES = {"gpu": "h100", **{t: t for t in defaults.JETSON_TARGETS}}


@dataclass(frozen=True)
class Timing:
    """How long and at which batches the build times things."""

    batches: tuple[int, ...] = (1, 8)
    iters: int = 30
    warmup: int = 5
    seconds: float = 3.0  # time cap of one table row; the paired ratio gets PAIRED_SECONDS_FACTOR x this
    threads: int = 2
    progress: bool = True


def timing_batch(batches: tuple[int, ...], mini_batch: int) -> int:
    """The batch of the interleaved timings: the largest latency batch, but no more than the
    mini-batch, because every graph timed side by side holds its own batch of activations (five
    at once in the CPU runtime choice: 2.8 GB for a 256-px decoder at batch 8)."""
    return max(1, min(max(batches), mini_batch))


def latency_table(runners: list[tuple[str, str, Runner]], inputs: np.ndarray, timing: Timing) -> list[dict]:
    """Each (backend, precision, runner) at each batch, time-bounded; closes every runner."""
    rows = []
    for backend, precision, runner in runners:
        for batch in timing.batches:
            x = np.resize(inputs, (batch, *inputs.shape[1:])).astype(np.float32)
            stats = measure(runner, x, timing.iters, timing.warmup, label=f"{backend} {precision} b{batch}" if timing.progress else "",
                            seconds=timing.seconds)
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


def onnx_runners(fp32_onnx: Path, final_onnx: Path, precision: str, threads: int) -> list[tuple[str, str, Runner]]:
    """The table's ONNX Runtime rows: FP32, and the compressed graph where it differs."""
    rows = [("onnxruntime", "fp32", OrtRunner(SessionFromOnnx(fp32_onnx, threads)))]
    if final_onnx != fp32_onnx:
        rows.append(("onnxruntime", precision, OrtRunner(SessionFromOnnx(final_onnx, threads))))
    return rows


def paired_speedup(fp32_onnx: Path, final_onnx: Path, precision: str, inputs: np.ndarray, batch: int, timing: Timing) -> dict | None:
    """The compressed ONNX against the FP32 ONNX at `batch`, in interleaved rounds in a clean child."""
    if final_onnx == fp32_onnx:
        return None
    x = np.resize(inputs, (batch, *inputs.shape[1:])).astype(np.float32)
    result = time_graphs({"fp32": fp32_onnx, precision: final_onnx}, x, timing.threads, rounds=PAIRED_ROUNDS, inner=10, warmup=5,
                         seconds=PAIRED_SECONDS_FACTOR * timing.seconds)
    return {"batch": batch, "speedup_vs_fp32_onnx": result["ratio_to_first"][precision], "median_ms": result["median_ms"],
            "method": result["method"]}


def runtime_speedup(choice: dict | None) -> dict | None:
    """The chosen CPU runtime's paired speed against FP32 ONNX Runtime (export/cpu_runtime.py)."""
    if not choice:
        return None
    winner = next(c for c in choice["candidates"] if c["name"] == choice["candidate"])
    return {"batch": choice["batch"], "speedup_vs_fp32_onnx": choice["speedup_vs_fp32_ort"], "runtime": choice["candidate"],
            "median_ms": {"fp32": choice["fp32_ms"], "int8": winner["median_ms"]}, "method": choice["method"]}


def estimate_profile(target: str, device: str | None) -> str | None:
    """The device profile of `target`'s estimate: `device` (`--device`) where given, else the
    target's own. A profile that is not a GPU/Jetson, or that contradicts the target, is refused."""
    from gencompress.benchmarks import devices

    if device is None:
        return ESTIMATE_PROFILES.get(target)
    profile = devices.get(device)  # an unknown name is refused with the known ones
    if target == "cpu":
        raise GencompressError(f"--device {device} names the GPU/Jetson of a TensorRT target's estimate; "
                               "--target cpu measures on this CPU instead")
    if profile.kind not in ("gpu", "jetson"):
        raise GencompressError(f"--device {device} is not a GPU or Jetson profile (see `gencompress estimate --list-devices`)")
    if target in defaults.JETSON_TARGETS and device != target:
        raise GencompressError(f"--device {device} contradicts --target {target}, which is its own profile; drop --device")
    if target == "gpu" and profile.kind == "jetson":
        raise GencompressError(f"--device {device} is a Jetson: build with --target {device} (its scripts and TensorRT flags)")
    return device


def engine_float_precision(target: str, graph_float: str = "fp32") -> str:
    """The precision the INT8 engine's float layers run in on `target` (export/tensorrt/versions.py):
    FP16 under weakly typed TensorRT (--int8 --fp16); a strongly typed build keeps the graph's own,
    `graph_float`. `--target gpu` builds with whichever TensorRT the user has: taken as weakly typed 10.x."""
    from gencompress.export.jetson import JETSON_TARGETS
    from gencompress.export.tensorrt.versions import TrtVersion, float_layer_precision

    if target in JETSON_TARGETS:
        return float_layer_precision(TrtVersion.parse(JETSON_TARGETS[target].tensorrt), "int8", graph_float)
    return "fp16"


def target_estimate(fp32_onnx: Path, final_onnx: Path, target: str, batch: int, device: str | None = None) -> dict | None:
    """What a user deploying to a GPU or Jetson should expect: the roofline ESTIMATE of the
    compressed engine against the FP16 engine of the same model (what a GPU user runs without
    INT8) on the target's profile, labelled as such; FP32 kept as a secondary baseline."""
    profile_name = estimate_profile(target, device)
    if profile_name is None or final_onnx == fp32_onnx:
        return None
    from gencompress.benchmarks import devices, roofline

    profile = devices.get(profile_name)
    fp16_ms = roofline.estimate(fp32_onnx, profile, batch, float_precision="fp16")["estimated_ms"]
    fp32_ms = roofline.estimate(fp32_onnx, profile, batch, float_precision="fp32")["estimated_ms"]
    float_layers = engine_float_precision(target, float_compute(final_onnx))
    ms = roofline.estimate(final_onnx, profile, batch, float_precision=float_layers)["estimated_ms"]
    return {"label": "ESTIMATE (roofline), not a measurement", "profile": profile.key, "device": profile.name,
            "device_named": device is not None, "batch": batch, "fp16_ms": fp16_ms, "fp32_ms": fp32_ms,
            "compressed_ms": ms, "compressed_float_layers": float_layers,
            "speedup_vs_fp16": fp16_ms / ms if ms > 0 else None, "speedup_vs_fp32": fp32_ms / ms if ms > 0 else None}

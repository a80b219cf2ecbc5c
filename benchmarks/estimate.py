"""`gencompress estimate`: the roofline for a bundle's ONNX graph on a device profile,
set beside an ONNX Runtime measurement when the profile is this machine's CPU."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gencompress.bundle import Bundle
from gencompress.data import draw_inputs
from gencompress.export.runners import OrtRunner, SessionFromOnnx

from . import devices, roofline
from .bench import target_from_bundle
from .latency import measure


@dataclass
class EstimateConfig:
    device: str = "jetson-orin-nano"
    batches: tuple[int, ...] = (1, 8)
    compare: bool = True  # measure with ONNX Runtime when the profile is a CPU profile
    iters: int = 30
    warmup: int = 5
    threads: int = 2


def estimate_bundle(bundle: Bundle, cfg: EstimateConfig) -> dict:
    profile = devices.get(cfg.device, cfg.threads)  # `cpu`: this machine's, measured at these threads
    with tempfile.TemporaryDirectory(prefix="gencompress-estimate-") as workdir:
        return _estimate_target(target_from_bundle(bundle, Path(workdir)), profile, cfg)


def _estimate_target(target, profile: devices.DeviceProfile, cfg: EstimateConfig) -> dict:
    results = []
    for batch in cfg.batches:
        est = roofline.estimate(target.onnx, profile, batch)
        if cfg.compare and profile.kind == "cpu":
            x = draw_inputs(target.input_shape, batch, target.distribution, 0).numpy().astype(np.float32)
            stats = measure(OrtRunner(SessionFromOnnx(target.onnx, cfg.threads)), x, cfg.iters, cfg.warmup)
            est.update({"measured_median_ms": stats.median_ms, "measured_min_ms": stats.min_ms,
                        "ratio_measured_over_estimate": stats.median_ms / est["estimated_ms"]})
        results.append(est)
    return {"kind": "gencompress-estimate", "model": target.name, "onnx_precision": target.onnx_precision,
            "profile": profile.as_dict(), "estimates": results}


def list_devices_text(threads: int = 2) -> str:
    """`estimate --list-devices`: every profile with its peaks and source; this machine's CPU as
    measured (if it has been) or as not measured yet: listing measures nothing."""
    from .cpu_profile import describe

    lines = []
    for key in devices.names():
        if key == devices.CPU_KEY:
            lines.append(f"{key:<18} {describe(threads)}")
            continue
        p = devices.get(key)
        lines.append(f"{key:<18} {p.name}: FP16 {p.fp16_tflops} TFLOPS, INT8 {p.int8_tops} TOPS, {p.mem_bw_gbs} GB/s  [{p.source}]")
    return "\n".join(lines)


def format_table(result: dict) -> str:
    """Plain-text summary for the terminal: per batch, then the layers of the first batch."""
    lines = [f"ESTIMATE (roofline, not a measurement) for {result['model']} on {result['profile']['name']}"]
    for est in result["estimates"]:
        extra = ""
        if "measured_median_ms" in est:
            extra = f"   measured ONNX Runtime {est['measured_median_ms']:.3f} ms (ratio {est['ratio_measured_over_estimate']:.2f}x)"
        lines.append(f"  batch {est['batch']}: {est['estimated_ms']:.3f} ms, {est['flops'] / 1e9:.3f} GFLOP, {est['bytes'] / 1e6:.2f} MB{extra}")
    lines.append(f"  {'layer':<28} {'op':<18} {'prec':<5} {'MFLOP':>9} {'MB':>8} {'ms':>8} bound")
    for layer in result["estimates"][0]["layers"]:
        lines.append(f"  {layer['name'][:28]:<28} {layer['op']:<18} {layer['precision']:<5} {layer['flops'] / 1e6:>9.2f} "
                     f"{layer['bytes'] / 1e6:>8.3f} {layer['ms']:>8.4f} {layer['bound']}")
    return "\n".join(lines)

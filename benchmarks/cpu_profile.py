"""This machine's CPU as a roofline device profile, measured here at run time, never assumed.

Machines differ from one day to the next (AVX2 only, or AVX-512 VNNI and BF16, or AMX), and a
roofline on a CPU's datasheet peak underestimates small generator layers by well over 3x, so
the CPU profile is the *effective* throughput ONNX Runtime reaches on four micro-graphs, timed
on the machine at hand the first time a CPU profile is asked for (a few seconds), then cached
under the cache folder per CPU model, CPU flags, threads and ONNX Runtime version. A cached
profile is used only where all of these match, so a copied cache or a changed machine is
re-measured, and the profile records its flags and the load average it was taken under.

The micro-graphs, independent of the zoo models the estimate is checked against:
- FP32 compute: one 3x3 Conv, 64 -> 64 channels, 8 x 32 x 32 (0.60 GFLOP);
- INT8 compute: the same Conv in Q/DQ form (ONNX Runtime fuses it into QLinearConv);
- memory bandwidth: Add of two 64 MiB tensors (192 MiB moved);
- per-layer overhead: 50 chained Sin on 16 floats (no optimiser fuses them): the time is all dispatch.
Each is the fastest of its timed runs after warm-up: on a shared machine the fastest run is the
best estimate of the uncontended speed a profile should describe.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from importlib import metadata
from pathlib import Path

import numpy as np

from gencompress.cache import cache_dir
from gencompress.conditions import cpu_flags, cpu_name, load_average

from .device_profile import DeviceProfile

KEY = "cpu"
CACHE_VERSION = 1
CONV_SHAPE = (8, 64, 32, 32)
CONV_FLOPS = 2.0 * 8 * 64 * 32 * 32 * 64 * 9
ADD_ELEMENTS = 16 << 20  # 64 MiB of float32 per operand
SIN_CHAIN = 50


def identity(threads: int) -> dict:
    """What a measurement is valid for: the same CPU, flags, threads and ONNX Runtime."""
    return {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "threads": threads, "onnxruntime": metadata.version("onnxruntime")}


def cache_path(ident: dict) -> Path:
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "cpu-profile" / f"v{CACHE_VERSION}-{digest}.json"


# --- the micro-graphs ---------------------------------------------------------------------

def _graph(nodes, inputs, outputs, inits):
    from onnx import helper

    return helper.make_model(helper.make_graph(nodes, "calib", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", 17)])


def _f32(name, shape):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def conv_model(int8: bool):
    from onnx import helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((64, 64, 3, 3)).astype(np.float32) * 0.05
    io = ([_f32("x", list(CONV_SHAPE))], [_f32("y", list(CONV_SHAPE))])
    if not int8:
        return _graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], *io, [numpy_helper.from_array(w, "w")])
    inits = [numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.int8(0), "z"),
             numpy_helper.from_array(np.clip(np.round(w / 0.002), -127, 127).astype(np.int8), "wq"),
             numpy_helper.from_array(np.float32(0.002), "ws")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "z"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"]),
    ]
    return _graph(nodes, *io, inits)


def add_model(n: int):
    from onnx import helper

    return _graph([helper.make_node("Add", ["a", "b"], ["y"])], [_f32("a", [n]), _f32("b", [n])], [_f32("y", [n])], [])


def sin_chain(k: int):
    from onnx import helper

    nodes = [helper.make_node("Sin", [f"t{i}"], [f"t{i + 1}"]) for i in range(k)]
    return _graph(nodes, [_f32("t0", [1, 16])], [_f32(f"t{k}", [1, 16])], [])


def best_ms(model, feeds: dict, threads: int, iters: int = 30, warmup: int = 5) -> float:
    """The fastest of `iters` timed runs of `model` on `feeds` under ONNX Runtime (CPU, `threads`)."""
    import onnxruntime as ort

    from .latency import measure

    class _Runner:  # the timing function's runner protocol, on fixed feeds
        def __init__(self, session):
            self.session = session

        def infer(self, _):
            return self.session.run(None, feeds)

        def synchronize(self):
            pass

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return measure(_Runner(session), np.zeros((1, 1), np.float32), iters, warmup).min_ms


def calibrate(threads: int = 2) -> dict:
    """Effective FP32 and INT8 throughput, memory bandwidth and per-layer overhead, measured now."""
    x = np.random.default_rng(1).standard_normal(CONV_SHAPE).astype(np.float32)
    fp32_ms = best_ms(conv_model(False), {"x": x}, threads)
    int8_ms = best_ms(conv_model(True), {"x": x}, threads)
    a = np.ones(ADD_ELEMENTS, np.float32)
    add_ms = best_ms(add_model(ADD_ELEMENTS), {"a": a, "b": a}, threads, iters=10, warmup=2)
    chain_ms = best_ms(sin_chain(SIN_CHAIN), {"t0": np.ones((1, 16), np.float32)}, threads, iters=200, warmup=20)
    return {
        "effective_fp32_gflops": CONV_FLOPS / (fp32_ms * 1e6),
        "effective_int8_gops": CONV_FLOPS / (int8_ms * 1e6),
        "effective_mem_bw_gbs": 3 * ADD_ELEMENTS * 4 / (add_ms * 1e6),
        "op_overhead_us": chain_ms * 1e3 / SIN_CHAIN,
        "raw_ms": {"conv_fp32": fp32_ms, "conv_int8_qdq": int8_ms, "add_192MiB": add_ms, f"sin_x{SIN_CHAIN}": chain_ms},
    }


# --- the profile --------------------------------------------------------------------------

def measure_record(threads: int) -> dict:
    """A fresh measurement with what it is valid for and the conditions it was taken under."""
    return {"version": CACHE_VERSION, "identity": identity(threads), "calibration": calibrate(threads),
            "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "load_average": load_average()}


def cached_record(threads: int) -> dict | None:
    """The cached measurement for this CPU, flags, threads and ONNX Runtime; None where there is none
    (or it was taken elsewhere: its recorded identity must match, not only its file name)."""
    ident = identity(threads)
    path = cache_path(ident)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != CACHE_VERSION or record.get("identity") != ident:
        return None
    return record


def measured_record(threads: int = 2, progress: bool = True, refresh: bool = False) -> dict:
    """The cached measurement, or a new one (written to the cache atomically); `refresh`: always new."""
    record = None if refresh else cached_record(threads)
    if record is None:
        from gencompress.atomic import atomic_write_text
        from gencompress.progress import log

        if progress:
            log(f"measuring this CPU for its roofline profile ({threads} threads, a few seconds; cached afterwards)")
        record = measure_record(threads)
        atomic_write_text(cache_path(record["identity"]), json.dumps(record, indent=2) + "\n")
    return record


def profile_from(record: dict) -> DeviceProfile:
    ident, cal = record["identity"], record["calibration"]
    flags = ", ".join(ident["cpu_flags"]) or "none of " + "/".join(("avx2", "avx512_vnni", "amx"))
    return DeviceProfile(
        KEY, f"{ident['cpu']}, {ident['threads']} threads, ONNX Runtime", "cpu",
        cal["effective_fp32_gflops"] / 1000, cal["effective_fp32_gflops"] / 1000, cal["effective_int8_gops"] / 1000,
        cal["effective_mem_bw_gbs"],
        f"measured on this machine at {record['measured_at']} (load average {record['load_average']}) by "
        f"benchmarks/cpu_profile.py: effective ONNX Runtime {ident['onnxruntime']} throughput on micro-graphs, not a datasheet peak",
        op_overhead_us=cal["op_overhead_us"], calibrated=True, cpu_flags=tuple(ident["cpu_flags"]),
        note=f"CPU flags: {flags}; FP16 graphs run at FP32 speed under ONNX Runtime's CPU kernels")


def this_cpu(threads: int = 2, progress: bool = True) -> DeviceProfile:
    """This machine's CPU profile: measured (or read from this machine's cache)."""
    return profile_from(measured_record(threads, progress))


def describe(threads: int = 2) -> str:
    """One line for `estimate --list-devices`, measuring nothing: cached figures, or that it is not measured yet."""
    record = cached_record(threads)
    flags = ", ".join(cpu_flags()) or "none detected"
    if record is None:
        return f"{cpu_name()} (flags: {flags}): not measured yet; measured here on first use ({threads} threads, a few seconds), then cached"
    p = profile_from(record)
    return (f"{p.name}: FP32 {p.fp32_tflops * 1000:.1f} GFLOPS, INT8 {p.int8_tops * 1000:.1f} GOPS, {p.mem_bw_gbs:.1f} GB/s "
            f"(flags: {flags})  [{p.source}]")

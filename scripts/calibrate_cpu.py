"""Measure this CPU's *effective* throughput under ONNX Runtime, for the roofline's CPU profile.

    python scripts/calibrate_cpu.py [--threads 2] [--out benchmarks/results/cpu_calibration.json]

Four micro-graphs, independent of the zoo models the estimate is checked against:
- FP32 compute: one 3x3 Conv, 64 -> 64 channels, 8 x 32 x 32 (0.60 GFLOP);
- INT8 compute: the same Conv in Q/DQ form (ONNX Runtime fuses it into QLinearConv);
- memory bandwidth: Add of two 64 MiB tensors (192 MiB moved);
- per-layer overhead: 50 chained Sin on 16 floats (no optimiser fuses them) (the time is all dispatch).
Each is timed as the fastest of the timed runs after warm-up. The numbers written into
benchmarks/devices.py (CPU_CALIBRATION) came from this script; re-run it on a quiet
machine and update them there if the machine changes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def _graph(nodes, inputs, outputs, inits):
    from onnx import helper

    graph = helper.make_graph(nodes, "calib", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _f32(name, shape):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def conv_model(int8: bool):
    from onnx import helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((64, 64, 3, 3)).astype(np.float32) * 0.05
    inits = [numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.int8(0), "z")]
    if not int8:
        nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
        return _graph(nodes, [_f32("x", [8, 64, 32, 32])], [_f32("y", [8, 64, 32, 32])], [numpy_helper.from_array(w, "w")])
    wq = np.clip(np.round(w / 0.002), -127, 127).astype(np.int8)
    inits += [numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(np.float32(0.002), "ws")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "z"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"]),
    ]
    return _graph(nodes, [_f32("x", [8, 64, 32, 32])], [_f32("y", [8, 64, 32, 32])], inits)


def add_model(n: int):
    from onnx import helper

    return _graph([helper.make_node("Add", ["a", "b"], ["y"])], [_f32("a", [n]), _f32("b", [n])], [_f32("y", [n])], [])


def relu_chain(k: int):
    from onnx import helper

    nodes = [helper.make_node("Sin", [f"t{i}"], [f"t{i + 1}"]) for i in range(k)]
    return _graph(nodes, [_f32("t0", [1, 16])], [_f32(f"t{k}", [1, 16])], [])


def best_ms(model, feeds: dict, threads: int, iters: int = 30, warmup: int = 5) -> float:
    import onnxruntime as ort

    from gencompress.benchmarks.latency import measure

    class _Runner:
        def __init__(self, session):
            self.session = session

        def infer(self, _):
            return self.session.run(None, feeds)

        def synchronize(self):
            pass

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    # min, not median: on a shared machine the fastest run is the best estimate of the
    # uncontended speed that a profile should describe
    return measure(_Runner(session), np.zeros((1, 1), np.float32), iters, warmup).min_ms


def calibrate(threads: int = 2) -> dict:
    x = np.random.default_rng(1).standard_normal((8, 64, 32, 32)).astype(np.float32)
    conv_flops = 2.0 * 8 * 64 * 32 * 32 * 64 * 9
    fp32_ms = best_ms(conv_model(False), {"x": x}, threads)
    int8_ms = best_ms(conv_model(True), {"x": x}, threads)
    n = 16 << 20  # 64 MiB of float32 per operand
    a = np.ones(n, np.float32)
    add_ms = best_ms(add_model(n), {"a": a, "b": a}, threads, iters=10, warmup=2)
    k = 50
    chain_ms = best_ms(relu_chain(k), {"t0": np.ones((1, 16), np.float32)}, threads, iters=200, warmup=20)
    return {
        "effective_fp32_gflops": conv_flops / (fp32_ms * 1e6),
        "effective_int8_gops": conv_flops / (int8_ms * 1e6),
        "effective_mem_bw_gbs": 3 * n * 4 / (add_ms * 1e6),
        "op_overhead_us": chain_ms * 1e3 / k,
        "raw_ms": {"conv_fp32": fp32_ms, "conv_int8_qdq": int8_ms, "add_192MiB": add_ms, f"sin_x{k}": chain_ms},
        "threads": threads,
        "loadavg_1_5_15": list(os.getloadavg()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    from gencompress.conditions import describe

    result = {"calibration": calibrate(args.threads), "conditions": describe(args.threads)}
    text = json.dumps(result, indent=2)
    if args.out:
        from gencompress.atomic import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

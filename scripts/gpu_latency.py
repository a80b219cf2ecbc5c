"""GPU latency of the zoo generators in PyTorch: original vs pruned 50%, FP32 vs FP16,
eager vs CUDA graph, timed with CUDA events.

    python scripts/gpu_latency.py [--batches 1,8,64] [--iters 300] [--out benchmarks/results/gpu_latency.json]

What pruning buys on a GPU before any TensorRT engine: each configuration is warmed up
(cuDNN autotuning on), then timed per call with a pair of CUDA events; the JSON keeps the
median, p90 and p99 and the conditions (GPU, driver, CUDA, torch, commit). The pruned
models are pruned at random init without distillation: latency depends on their shapes,
not their weights. INT8 is not here: fake quantisation is slower than FP32 in PyTorch, and
real INT8 on a GPU is TensorRT's engine (not installable where this ran).
`--device cpu` runs the same code with wall-clock timing, as a smoke test.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import numpy as np
import torch

from gencompress import zoo
from gencompress.atomic import atomic_write_text
from gencompress.compress import PruneConfig
from gencompress.compress.prune import prune_module
from gencompress.conditions import describe
from gencompress.data import draw_inputs
from gencompress.model_stats import count_macs

MODELS = ("dcgan", "upsample_conv", "resnet_generator", "vae_decoder")


def timed_calls(fn, iters: int, warmup: int, device: str) -> list[float]:
    """Per-call milliseconds: CUDA events on a GPU, perf_counter elsewhere."""
    for _ in range(warmup):
        fn()
    samples = []
    if device == "cuda":
        torch.cuda.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        for start, end in zip(starts, ends):
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) for s, e in zip(starts, ends)]
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def as_graph(model: torch.nn.Module, x: torch.Tensor):
    """A callable replaying one CUDA graph of model(x) (captured after a side-stream warm-up)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        model(x)
    return graph.replay


def variants(name: str) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    original = zoo.build(name).eval()
    shape = zoo.input_shape(name)
    pruned, _ = prune_module(original, shape, zoo.get(name).input_distribution, PruneConfig(ratio=0.5, distill_steps=0))
    return {"original": original, "pruned50": pruned.eval()}


def measure_model(name: str, args) -> list[dict]:
    shape = zoo.input_shape(name)
    rows = []
    for variant, model in variants(name).items():
        macs = count_macs(model, shape)
        for precision in ("fp32", "fp16"):
            dtype = torch.float16 if precision == "fp16" else torch.float32
            m = copy.deepcopy(model).to(args.device, dtype)
            for batch in args.batches:
                x = draw_inputs(shape, batch, zoo.get(name).input_distribution, 0).to(args.device, dtype)
                backends = {"eager": lambda m=m, x=x: m(x)}
                if args.device == "cuda":
                    backends["cuda-graph"] = as_graph(m, x)
                for backend, fn in backends.items():
                    with torch.inference_mode():
                        t = np.asarray(timed_calls(fn, args.iters, args.warmup, args.device))
                    median = float(np.median(t))
                    rows.append({"model": name, "variant": variant, "macs_per_image": macs, "precision": precision, "backend": backend,
                                 "batch": batch, "median_ms": median, "p90_ms": float(np.percentile(t, 90)),
                                 "p99_ms": float(np.percentile(t, 99)), "images_per_s": batch * 1e3 / median})
                    print(f"{name:17s} {variant:9s} {precision} {backend:10s} b{batch:<3d} {median:.4f} ms", file=sys.stderr)
    return rows


def speedups(rows: list[dict]) -> list[dict]:
    """Pruned over original, same model/precision/backend/batch (medians)."""
    key = lambda r: (r["model"], r["precision"], r["backend"], r["batch"])  # noqa: E731
    originals = {key(r): r["median_ms"] for r in rows if r["variant"] == "original"}
    return [{"model": r["model"], "precision": r["precision"], "backend": r["backend"], "batch": r["batch"],
             "pruned50_speedup": originals[key(r)] / r["median_ms"]} for r in rows if r["variant"] == "pruned50"]


def gpu_conditions(device: str) -> dict:
    if device != "cuda":
        return {}
    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "sm_count": props.multi_processor_count, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "torch": torch.__version__}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="benchmarks/results/gpu_latency.json")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    torch.backends.cudnn.benchmark = True
    rows = [row for name in args.models.split(",") for row in measure_model(name, args)]
    result = {"benchmark": "gpu_latency", "device": args.device, "iters": args.iters, "warmup": args.warmup,
              "timer": "CUDA events per call" if args.device == "cuda" else "perf_counter per call",
              "rows": rows, "pruned50_speedups": speedups(rows),
              "conditions": {**describe(None, args.device), **gpu_conditions(args.device)}}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()

"""INT8 on ONNX Runtime's CPU provider (`--target cpu`) against FP32 ONNX of the same model.

    python scripts/cpu_int8.py [--models dcgan-pruned,upsample_conv,vae_decoder] [--reps 15]

For each model: FP32 ONNX (as exported, ConvTranspose included) and the `--target cpu`
INT8 ONNX exactly as `build --int8 --target cpu` makes it, through the same entry point
(export.apply_precision: BatchNorm folded, deconvolutions rewritten exactly, quantize_static
U8/S8 per-channel, the calibrator and the float layers searched under the default quality
floor), timed on ONNX Runtime (the build's OpenVINO runtime choice is not made). Latency at batch 8
with 2 intra-op threads, timed by `ort_pair.time_graphs`: a clean child process, one
shared thread pool, interleaved rounds, the speedup as the median of per-round ratios.
PSNR of INT8 against FP32 on 64 fixed latents.
`dcgan-pruned` is the trained digits DCGAN pruned 50% and distilled (short run).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from gencompress import zoo
from gencompress.atomic import atomic_write_text
from gencompress.conditions import describe
from gencompress.data import draw_inputs
from gencompress.loading import load_spec
from gencompress.metrics import psnr
from gencompress.compress import PruneConfig, prune
from gencompress.bundle import ONNX, SOURCE_ONNX
from gencompress.export import PrecisionConfig, apply_precision, with_fp32_onnx
from gencompress.export.runners import OrtRunner, SessionFromOnnx
from gencompress.export.ort_pair import time_graphs


def source_bundle(name: str, distill_steps: int, trained: bool):
    from gencompress.train.pretrained import get_or_train, zoo_bundle

    base = name.removesuffix("-pruned")
    if trained or base == "dcgan":
        bundle, how = load_spec(str(get_or_train(base, progress=False).path)), "trained on digits"
    else:
        torch.manual_seed(0)
        bundle, how = zoo_bundle(base, zoo.build(base)), "random init"
    if name.endswith("-pruned"):
        bundle = prune(bundle, PruneConfig(ratio=0.5, distill_steps=distill_steps), progress=False)
        how += f", pruned 50% + {distill_steps} distillation steps"
    return bundle, how


def measure_model(name: str, args, work: Path) -> dict:
    bundle, how = source_bundle(name, args.distill_steps, args.trained)
    shape = bundle.input_shape
    (work / name).mkdir()
    source = with_fp32_onnx(bundle, work / name)
    cfg = PrecisionConfig(precision="int8", target="cpu", threads=args.threads, cpu_runtime="onnxruntime")
    out, _ = apply_precision(source, cfg, work / name, progress=False)
    fp32, int8, step = source.file(SOURCE_ONNX), out.file(ONNX), out.last_step("quantize")
    z = draw_inputs(shape, 64, bundle.input_distribution, 0).numpy()
    quality = psnr(OrtRunner(SessionFromOnnx(fp32, args.threads)).infer(z), OrtRunner(SessionFromOnnx(int8, args.threads)).infer(z))
    load_before = os.getloadavg()
    timing = time_graphs({"fp32": fp32, "int8": int8}, z[: args.batch], args.threads, args.reps, args.inner)
    ms = timing["median_ms"]
    return {"model": name, "source": how, "batch": args.batch, "threads": args.threads, "fp32_ms": ms["fp32"], "int8_ms": ms["int8"],
            "speedup": timing["ratio_to_first"]["int8"], "timing": timing["method"], "psnr_int8_vs_fp32_db": quality, "recipe_step": step,
            "prune": bundle.manifest["metrics"].get("prune"), "loadavg_before": load_before, "loadavg_after": os.getloadavg()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="dcgan-pruned,upsample_conv,vae_decoder")
    parser.add_argument("--trained", action="store_true", help="train upsample_conv / vae_decoder on digits first (else random init)")
    parser.add_argument("--distill-steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--inner", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/cpu_int8.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="gencompress-cpu-int8-") as work:
            rows.append(measure_model(name, args, Path(work)))
        r = rows[-1]
        print(f"{name}: fp32 {r['fp32_ms']:.3f} ms, int8 {r['int8_ms']:.3f} ms, {r['speedup']:.2f}x, PSNR {r['psnr_int8_vs_fp32_db']:.1f} dB", file=sys.stderr)
    result = {"benchmark": "cpu_int8", "rows": rows, "conditions": describe(args.threads)}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps([{k: r[k] for k in ("model", "fp32_ms", "int8_ms", "speedup", "psnr_int8_vs_fp32_db")} for r in rows], indent=2))
    return result


if __name__ == "__main__":
    main()

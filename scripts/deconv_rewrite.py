"""The ConvTranspose rewrites: exactness (FP32), MACs, and INT8 latency on ORT CPU.

    python scripts/deconv_rewrite.py [--reps 15]

On the trained digits DCGAN pruned 50% (short distillation): for each rewrite form
(four-phase: exact MACs, 4 convs per layer; one-pass: one 2x2 conv, cropped; sub-pixel:
one 3x3 conv, 2.25x MACs, then depth-to-space) the FP32 max abs error against the
original, MACs, and the latency at batch 8, 2 threads of its INT8 graph against the FP32
ONNX with ConvTranspose, interleaved. The INT8 graph is `build --int8 --target cpu`'s form
(export.apply_precision, `deconv_form` set) with the floor lifted: every layer integer, so the
forms compare as rewrites, not as searches that left different layers float.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from gencompress.atomic import atomic_write_text
from gencompress.conditions import describe
from gencompress.data import draw_inputs
from gencompress.metrics import psnr
from gencompress.model_stats import count_macs
from gencompress.compress.rewrite import DECONV_FORMS, cpu_integer_ready
from gencompress.bundle import ONNX
from gencompress.export import PrecisionConfig, apply_precision, with_fp32_onnx
from gencompress.export.onnx_export import OnnxConfig, export_module
from gencompress.export.runners import OrtRunner, SessionFromOnnx

from gencompress.export.ort_pair import time_graphs

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a sibling script, not an installed module
from cpu_int8 import source_bundle  # noqa: E402


def measure_forms(bundle, how: str, args, work: Path) -> dict:
    """Every rewrite form's FP32 error, MACs, INT8 latency and PSNR; graphs written in `work`."""
    model, shape = bundle.model, bundle.input_shape
    fp32 = export_module(model, shape, work / "fp32.onnx", OnnxConfig())
    z = torch.randn(64, *shape, generator=torch.Generator().manual_seed(0))
    forms, graphs = {}, {"fp32": fp32}
    for form in DECONV_FORMS:
        ready, info = cpu_integer_ready(model, shape, form=form)
        with torch.no_grad():
            err = (ready(z) - model(z)).abs().max().item()
        (work / form).mkdir()
        cfg = PrecisionConfig(precision="int8", target="cpu", no_floor=True, deconv_form=form, cpu_runtime="onnxruntime")
        out, _ = apply_precision(with_fp32_onnx(bundle, work / form), cfg, work / form, progress=False)
        graphs[form] = out.file(ONNX)
        forms[form] = {"fp32_max_abs_error": err, "macs": count_macs(ready, shape), **info}
    x = draw_inputs(shape, 64, "normal", 0).numpy()
    ref = OrtRunner(SessionFromOnnx(fp32, 2)).infer(x)
    load = [os.getloadavg()]
    timing = time_graphs(graphs, x[:8], 2, args.reps, args.inner)
    ms = timing["median_ms"]
    load.append(os.getloadavg())
    for form in forms:
        forms[form].update({"int8_ms": ms[form], "speedup_vs_fp32": timing["ratio_to_first"][form],
                            "psnr_int8_vs_fp32_db": psnr(ref, OrtRunner(SessionFromOnnx(graphs[form], 2)).infer(x))})
    return {"benchmark": "deconv_rewrite", "model": f"dcgan ({how})", "macs_deconv": count_macs(model, shape),
            "fp32_ms": ms["fp32"], "forms": forms, "batch": 8, "threads": 2, "loadavg": load,
            "timing": timing["method"], "conditions": describe(2)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distill-steps", type=int, default=300)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--inner", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/deconv_rewrite.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    bundle, how = source_bundle("dcgan-pruned", args.distill_steps, trained=True)
    with tempfile.TemporaryDirectory(prefix="gencompress-deconv-") as work:
        result = measure_forms(bundle, how, args, Path(work))
    forms = result["forms"]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({f: {k: v[k] for k in ("fp32_max_abs_error", "macs", "int8_ms", "speedup_vs_fp32")} for f, v in forms.items()}, indent=2))
    return result


if __name__ == "__main__":
    main()

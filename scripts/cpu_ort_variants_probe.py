"""ONNX Runtime's all-INT8 CPU integer form with symmetric activations: better than the build's? One measurement.

    python scripts/cpu_ort_variants_probe.py [--out benchmarks/results/cpu_ort_variants_probe.json]

The trained SD-VAE-layout decoder of the suite on the inputs of scripts/cpu_qat_probe.py (16x16
crops of photo latents: 128 of the training photos calibrate, 48 of the held-out photos judge),
rewritten as `--target cpu` quantises it (BatchNorm folded, deconvolutions as sub-pixel
convolutions) and prepared (export/onnx_quant.prepare_for_quantization). Every layer INT8, per
calibrator (MinMax, Percentile), in the build's form (U8 asymmetric activations, per-channel S8
weights in 7 bits, onnx_quant.cpu_options) and with symmetric S8 activations (zero point 0, the
form the issue asks to try). PSNR of each against the float graph's own outputs, and the speed of
each against FP32 ONNX Runtime at batch 8, timed side by side in one child process
(export/ort_pair.time_graphs: interleaved rounds). Writes JSON with the conditions.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


THREADS = 2
BATCH = 16  # inference batch of the quality runs
TIMING_BATCH = 8
VARIANTS = {  # name -> what changes in onnx_quant.cpu_options
    "u8-asymmetric (the build's)": {},
    "s8-symmetric": {"activation_type": "QInt8", "ActivationSymmetric": True},
}


def quantize(prepared: Path, dst: Path, calib: np.ndarray, calibrator: str, change: dict) -> Path:
    from onnxruntime.quantization import QuantType, quantize_static

    import onnxruntime as ort
    from gencompress.export.onnx_quant import _Reader, _register_move_ops, calibration_batch, cpu_options

    options = cpu_options("qoperator", calibrator)
    if "activation_type" in change:
        options["activation_type"] = getattr(QuantType, change["activation_type"])
    options["extra_options"] = {**options["extra_options"], **{k: v for k, v in change.items() if k != "activation_type"}}
    _register_move_ops()
    name = ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(str(prepared), str(dst), _Reader(name, calib, calibration_batch(prepared, 16)), **options)
    return dst


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/cpu_ort_variants_probe.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cpu_qat_probe import sd_vae_and_crops, write_result

    from gencompress.compress.rewrite import cpu_integer_ready
    from gencompress.export.onnx_export import OnnxConfig, export_module
    from gencompress.export.onnx_quant import prepare_for_quantization
    from gencompress.export.ort_pair import time_graphs
    from gencompress.export.runners import OrtRunner, SessionFromOnnx, run_and_close
    from gencompress.metrics import psnr, ssim

    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    model, train, held = sd_vae_and_crops()
    calib, held = train[:128].numpy(), held.numpy()
    shape = tuple(held.shape[1:])
    rewritten, _ = cpu_integer_ready(model, shape)
    result = {"model": "sd_vae_decoder_trained", "inputs": f"{len(calib)} training and {len(held)} held-out 16x16 crops of photo latents",
              "judged_against": "the prepared float graph's own outputs (ONNX Runtime)", "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = prepare_for_quantization(export_module(rewritten, shape, work / "fp32.onnx", OnnxConfig()), work / "prepared.onnx")
        reference = run_and_close(OrtRunner(SessionFromOnnx(prepared, THREADS)), held, BATCH)
        graphs = {"fp32": prepared}
        for i, (variant, change) in enumerate(VARIANTS.items()):
            for calibrator in ("max", "percentile"):
                path = quantize(prepared, work / f"v{i}-{calibrator}.onnx", calib, calibrator, change)
                out = run_and_close(OrtRunner(SessionFromOnnx(path, THREADS)), held, BATCH)
                result["rows"].append({"variant": variant, "calibrator": calibrator, "psnr_db": float(psnr(reference, out)),
                                       "ssim": float(ssim(reference, out))})
                graphs[f"{variant} / {calibrator}"] = path
                print(json.dumps(result["rows"][-1]), file=sys.stderr, flush=True)
        timing = time_graphs(graphs, np.resize(held, (TIMING_BATCH, *shape)).astype(np.float32), THREADS, seconds=120)
    for row in result["rows"]:
        row["speedup_vs_fp32_ort"] = timing["ratio_to_first"][f"{row['variant']} / {row['calibrator']}"]
    result["timing"] = {"batch": TIMING_BATCH, "method": timing["method"], "median_ms": timing["median_ms"]}
    return write_result(result, args.out)


if __name__ == "__main__":
    main()

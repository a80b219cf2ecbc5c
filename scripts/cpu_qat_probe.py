"""Does quantisation-aware training help the `--target cpu` integer form? One measurement.

    python scripts/cpu_qat_probe.py [--steps 100] [--lr 1e-4] [--out benchmarks/results/cpu_qat_probe.json]

The trained SD-VAE-layout decoder of the suite (gencompress.benchmarks.suite), latents of
256-px photo crops cut into 16x16 crops (128-px images): 48 crops of the training photos
calibrate and train (192 latents), 12 of the held-out photos judge (48). The rewritten float model (BatchNorm folded, deconvolutions as sub-pixel
convolutions: what `--target cpu` quantises) goes to ONNX Runtime's CPU integer form, every
layer INT8 (export/onnx_quant.quantize_prepared: MinMax and Percentile), before and after QAT:
modelopt's INT8 fake quantisation (the one the gpu targets train with), distilled against the
float model on the training crops (compress/distill.py, L1, `--steps` steps of 8). PSNR of
every graph against the original float model's outputs. Writes JSON with the conditions.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from gencompress.atomic import atomic_write_text
from gencompress.conditions import describe

THREADS = 2
BATCH = 16  # inference batch of the float and integer models


def crops(latents: torch.Tensor, side: int = 16) -> torch.Tensor:
    h, w = latents.shape[-2:]
    return torch.cat([latents[:, :, i : i + side, j : j + side] for i in range(0, h, side) for j in range(0, w, side)])


def sd_vae_and_crops():
    """The suite's trained SD-VAE-layout decoder and its inputs here: 16x16 crops of photo latents,
    192 of the training photos and 48 of the held-out ones (seeded; the other CPU probes share them)."""
    from gencompress.benchmarks import suite

    model = suite.sd_vae_decoder_trained().eval()
    layout = suite.TRAINED["sd_vae_decoder_trained"][1]
    train = crops(suite.photo_inputs(layout, 48, seed=1, size=256, split="train"))
    held = crops(suite.photo_inputs(layout, 12, seed=0, size=256, split="held_out"))
    return model, train, held


def write_result(result: dict, out: str) -> dict:
    """The probe's JSON with its conditions (machine, CPU flags, versions, commit, load at the end)."""
    result["conditions"] = {**describe(THREADS), "loadavg_1_5_15_end": list(os.getloadavg())}
    atomic_write_text(out, json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "conditions"}, indent=1), file=sys.stderr)
    return result


def integer_form_psnr(model, shape, calib: torch.Tensor, held: torch.Tensor, reference: torch.Tensor, work: Path, tag: str) -> dict:
    """PSNR of ONNX Runtime's all-INT8 integer form of `model` against `reference`, per calibrator."""
    from gencompress.export.onnx_export import OnnxConfig, export_module
    from gencompress.export.onnx_quant import prepare_for_quantization, quantize_prepared
    from gencompress.export.runners import OrtRunner, SessionFromOnnx, run_and_close
    from gencompress.metrics import psnr

    prepared = prepare_for_quantization(export_module(model, shape, work / f"{tag}.onnx", OnnxConfig()), work / f"{tag}-prepared.onnx")
    scores = {}
    for calibrator in ("max", "percentile"):
        runner = OrtRunner(SessionFromOnnx(quantize_prepared(prepared, work / f"{tag}-{calibrator}.onnx", calib.numpy(), fmt="qoperator",
                                                             calibrator=calibrator), THREADS))
        out = run_and_close(runner, held.numpy(), BATCH)
        scores[calibrator] = float(psnr(reference, torch.from_numpy(out)))
    return scores


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--out", default="benchmarks/results/cpu_qat_probe.json")
    args = parser.parse_args(argv)
    from gencompress.batching import forward_batched
    from gencompress.compress.distill import DistillConfig, distill
    from gencompress.compress.quantize import QuantConfig, quantize_module
    from gencompress.compress.rewrite import cpu_integer_ready
    from gencompress.compress.sensitivity import trainable_attention
    from gencompress.metrics import psnr

    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    model, train, held = sd_vae_and_crops()
    shape = tuple(train.shape[1:])
    rewritten, _ = cpu_integer_ready(model, shape)
    reference = forward_batched(model, held, BATCH)
    result = {"model": "sd_vae_decoder_trained", "inputs": f"{len(train)} training and {len(held)} held-out 16x16 crops of photo latents",
              "steps": args.steps, "lr": args.lr, "batch": 8}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result["before_qat_psnr_db"] = integer_form_psnr(rewritten, shape, train[:128], held, reference, work, "before")
        qmodel = quantize_module(rewritten, shape, "normal", QuantConfig(calibrator="max", calib_samples=128, calib_batch=16, seed=0),
                                 progress=False, inputs=train[:128])
        result["fake_quant_psnr_db_before"] = float(psnr(reference, forward_batched(qmodel, held, BATCH)))
        start = time.perf_counter()
        with trainable_attention():
            distill(qmodel, rewritten, shape, "normal", DistillConfig(steps=args.steps, batch=8, lr=args.lr, feature_weight=0.0, seed=0),
                    progress=True, update_norm_stats=False, pool=train)
        result["qat_seconds"] = time.perf_counter() - start
        result["fake_quant_psnr_db_after"] = float(psnr(reference, forward_batched(qmodel, held, BATCH)))
        tuned = copy.deepcopy(rewritten)
        tuned.load_state_dict({k: v for k, v in qmodel.state_dict().items() if k in tuned.state_dict()})
        result["tuned_float_psnr_db"] = float(psnr(reference, forward_batched(tuned, held, BATCH)))
        result["after_qat_psnr_db"] = integer_form_psnr(tuned, shape, train[:128], held, reference, work, "after")
    return write_result(result, args.out)


if __name__ == "__main__":
    main()

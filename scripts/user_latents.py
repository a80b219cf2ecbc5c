"""Calibrate INT8 on the user's latents or on N(0, I) draws: what it does to a VAE decoder's quality.

    python scripts/user_latents.py [--spread 5] [--out benchmarks/results/user_latents.json]

The decoder is the way a Stable Diffusion VAE decoder meets its inputs: the latents it decodes
have a spread of ~5 (SD's scaling factor 0.18215 is applied outside it). We make one from the
zoo VAE decoder trained on digits: its stem's Linear weights divided by `--spread`, so it takes
`spread` x the latents it was trained on and decodes them to the same images. The user's
latents are `spread` x the VAE encoder's z = mu + sigma * eps of the digits (1797 images), saved
as an npz, loaded with `--data npz:...` semantics (gencompress.inputs: the first 256 evaluate,
the rest calibrate, never overlapping).

Each row calibrates the same FP32 decoder three ways (256 inputs each): on N(0, I) draws (the
toolkit's default for a latent), on N(0, spread^2) draws (`--input-std`) and on the user's
latents (`--data`), then measures PSNR against the FP32 decoder on the 256 held-out user latents
(peak 2: outputs in [-1, 1]). Two INT8 forms: modelopt's Q/DQ (TensorRT's form; fake-quant
PyTorch, which export verifies its ONNX against) and ONNX Runtime's CPU integer form.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from gencompress.atomic import atomic_write_text
from gencompress.bundle import Bundle
from gencompress.compress import QuantConfig, quantize
from gencompress.compress.calibration import calibration_inputs
from gencompress.conditions import describe
from gencompress.bundle import ONNX
from gencompress.export import PrecisionConfig, apply_precision, with_fp32_onnx
from gencompress.export.runners import OrtRunner, SessionFromOnnx, run_and_close
from gencompress.inputs import apply_io_spec, user_data
from gencompress.loading import load_spec
from gencompress.metrics import psnr
from gencompress.train.pretrained import get_or_train

EVAL = 256
CALIB = 256


def user_decoder(bundle, spread: float):
    """The trained decoder, rescaled to take `spread` x its latents (same images)."""
    decoder = copy.deepcopy(bundle.model).eval()
    with torch.no_grad():
        decoder.stem[1].weight /= spread
    return bundle.derive({"step": "rescale_input", "spread": spread}, decoder)


def user_latents(bundle, spread: float) -> torch.Tensor:
    """`spread` x the encoder's z of every digit (what the user's own pipeline would hand over)."""
    z, _ = calibration_inputs(bundle, 1797, seed=7, source="encoder")
    return z * spread


def calibrations(decoder_bundle, data, spread: float) -> dict:
    """The three calibration sets: bundles whose input spec draws them, or the user's data."""
    def twin():
        return Bundle(copy.deepcopy(decoder_bundle.manifest), decoder_bundle.model, dict(decoder_bundle.files), decoder_bundle.path)

    wide = twin()
    apply_io_spec(wide.manifest, input_std=spread)
    return {"N(0, I) draws": (twin(), None), f"N(0, {spread:g}^2) draws (--input-std {spread:g})": (wide, None),
            "user latents (--data npz)": (decoder_bundle, data)}


def modelopt_rows(decoder_bundle, data, spread: float, evaluation: torch.Tensor, reference: np.ndarray) -> list[dict]:
    rows = []
    for name, (bundle, source) in calibrations(decoder_bundle, data, spread).items():
        q = quantize(bundle, QuantConfig(calib_samples=CALIB, calib_from="latents"), progress=False, data=source)
        with torch.no_grad():
            out = q.model(evaluation).numpy()
        rows.append({"form": "modelopt Q/DQ (TensorRT form), fake-quant PyTorch", "calibrated_on": name,
                     "calibration_data": q.manifest["recipe"][-1]["calibration_data"], "psnr_db": psnr(reference, out)})
    return rows


def cpu_rows(decoder_bundle, data, spread: float, evaluation: torch.Tensor, reference: np.ndarray, work: Path) -> list[dict]:
    """`build --int8 --target cpu`'s form (export.apply_precision) calibrated on each set, the
    floor lifted: the plain INT8 quality each calibration set gives, not a search's float layers."""
    rows = []
    cfg = PrecisionConfig(precision="int8", target="cpu", calib_samples=CALIB, calib_from="latents", no_floor=True, cpu_runtime="onnxruntime")
    for i, (name, (bundle, source)) in enumerate(calibrations(decoder_bundle, data, spread).items()):
        (work / str(i)).mkdir()
        out, _ = apply_precision(with_fp32_onnx(bundle, work / str(i)), cfg, work / str(i), progress=False, data=source)
        how = out.last_step("quantize")["calibration_data"]
        out = run_and_close(OrtRunner(SessionFromOnnx(out.file(ONNX), 2)), evaluation.numpy())
        rows.append({"form": "ONNX Runtime CPU integer form (--target cpu)", "calibrated_on": name, "calibration_data": how,
                     "psnr_db": psnr(reference, out)})
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spread", type=float, default=5.0)
    parser.add_argument("--out", default="benchmarks/results/user_latents.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    source = load_spec(str(get_or_train("vae_decoder").path))
    decoder = user_decoder(source, args.spread)
    with tempfile.TemporaryDirectory(prefix="user-latents-") as tmp:
        work = Path(tmp)
        latents = user_latents(source, args.spread)
        np.savez(work / "latents.npz", latents=latents.numpy())
        data = user_data(f"npz:{work / 'latents.npz'}", decoder.manifest["input"], EVAL)
        evaluation = data.evaluation
        with torch.no_grad():
            reference = decoder.model(evaluation).numpy()
            same = float(np.abs(reference - source.model(evaluation / args.spread).numpy()).max())
        rows = modelopt_rows(decoder, data, args.spread, evaluation, reference)
        rows += cpu_rows(decoder, data, args.spread, evaluation, reference, work)
    record = {k: v for k, v in data.record.items() if k != "path"}
    result = {
        "what": __doc__.splitlines()[0],
        "script": "scripts/user_latents.py",
        "model": "zoo vae_decoder trained on digits, stem weights / spread (takes spread x its latents)",
        "rescaled_decoder_max_abs_diff": same,
        "spread": args.spread,
        "user_latents": {**record, "std": float(latents.std()), "abs_max": float(latents.abs().max()),
                         "made_as": f"{args.spread:g} x the VAE encoder's z = mu + sigma * eps of the 1797 digits (seed 7)"},
        "evaluation": f"PSNR (peak 2, outputs in [-1, 1]) against the FP32 decoder on the {len(evaluation)} held-out user latents",
        "calibration_samples": CALIB,
        "rows": rows,
        "conditions": {**describe(2), "loadavg_1_5_15": list(os.getloadavg())},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(f"{row['form']:52s} {row['calibrated_on']:40s} {row['psnr_db']:6.2f} dB", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()

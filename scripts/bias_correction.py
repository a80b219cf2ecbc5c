"""Empirical bias correction against plain range calibration (issue 14: better PTQ before more float).

    python scripts/bias_correction.py [--out benchmarks/results/bias_correction.json]

For the random-init zoo generators and the user-style decoders of tests/int8/decoders.py (a
TAESD-like decoder with and without wide activations), and each modelopt calibrator: PSNR/SSIM
against FP32 on held-out inputs (another draw than the calibration inputs) of the calibrated
fake-quant model, then of the same model after compress/bias_correction.py, every layer INT8
(no float layers, so the calibration method alone is compared). Same inputs for both.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "int8"))

CALIB, HELD, BATCH = 128, 32, 16


def models() -> dict:
    import decoders

    from gencompress import zoo

    out = {}
    for name in ("dcgan", "upsample_conv", "vae_decoder", "resnet_generator"):
        torch.manual_seed(0)
        out[f"{name} (random init)"] = (zoo.build(name).eval(), zoo.input_shape(name))
    out["taesd_like (wide activations)"] = (decoders.taesd_like(), (4, 16, 16))
    out["taesd_like_plain"] = (decoders.taesd_like_plain(), (4, 16, 16))
    return out


def compare(model, shape, calibrator: str) -> dict:
    from gencompress.batching import forward_batched
    from gencompress.compress.bias_correction import correct_biases
    from gencompress.compress.quantize import QuantConfig, quantize_module
    from gencompress.floor import QualityFloor

    gen = torch.Generator()
    calib = torch.randn(CALIB, *shape, generator=gen.manual_seed(1))
    held = torch.randn(HELD, *shape, generator=gen.manual_seed(2))
    reference = forward_batched(model, held, BATCH).numpy()
    plain = quantize_module(model, shape, "normal", QuantConfig(calibrator=calibrator, calib_samples=CALIB, calib_batch=BATCH),
                            progress=False, inputs=calib)
    corrected = copy.deepcopy(plain)
    start = time.perf_counter()
    record = correct_biases(corrected, model, calib, BATCH)
    seconds = time.perf_counter() - start
    floor = QualityFloor(1.0)
    before = floor.measure(reference, forward_batched(plain, held, BATCH).numpy())
    after = floor.measure(reference, forward_batched(corrected, held, BATCH).numpy())
    return {"plain": {k: before[k] for k in ("psnr_db", "ssim")}, "bias_corrected": {k: after[k] for k in ("psnr_db", "ssim")},
            "gain_db": after["psnr_db"] - before["psnr_db"], "layers_corrected": record["layers"], "correction_seconds": seconds}


def main(argv=None) -> int:
    from gencompress.compress.quantize import CALIBRATORS
    from gencompress.conditions import describe

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bias_correction.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    rows, load_before = [], os.getloadavg()
    for name, (model, shape) in models().items():
        for calibrator in CALIBRATORS:
            row = {"model": name, "input_shape": list(shape), "calibrator": calibrator, **compare(model, shape, calibrator)}
            print(json.dumps({k: row[k] for k in ("model", "calibrator", "gain_db", "layers_corrected")}), file=sys.stderr, flush=True)
            rows.append(row)
    result = {"script": "scripts/bias_correction.py", "calibration_inputs": CALIB, "held_out_inputs": HELD, "batch": BATCH,
              "rounds": 2, "every_layer_int8": True, "rows": rows, "load_before": list(load_before), "load_after": list(os.getloadavg()),
              "conditions": describe(2)}
    Path(args.out).write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

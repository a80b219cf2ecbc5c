"""What pruning, distillation and INT8 cost in quality on the trained digits DCGAN.

    python scripts/compress_quality.py [--distill-steps 1500] [--out benchmarks/results/compress_quality.json]

Records: MACs/params before and after 50% channel pruning; digits-classifier FID of the
original, of the pruned model without distillation and after the default distillation
(and with the adversarial term against the original discriminator, per --gan-weights);
INT8 PTQ PSNR against FP32 per calibrator; the `--min-psnr 35` mix. Writes JSON with
conditions (gencompress.conditions.describe) and the load average during the run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from gencompress.atomic import atomic_write_text
from gencompress.conditions import describe
from gencompress.data import draw_inputs, load_digits
from gencompress.fid import digits_extractor, quality, real_features
from gencompress.loading import load_spec
from gencompress.metrics import psnr
from gencompress.compress import PruneConfig, QuantConfig, prune, quantize
from gencompress.train.pretrained import get_or_train


def fid_of(model, shape, extractor, real, n: int) -> float:
    z = draw_inputs(tuple(shape), n, "normal", 123)
    with torch.no_grad():
        images = torch.cat([model(c) for c in z.split(256)])
    return quality(extractor, real, images)["fid"]


def quant_numbers(bundle, calibrators) -> dict:
    x = draw_inputs(bundle.input_shape, 256, "normal", 99)
    with torch.no_grad():
        ref = bundle.model(x)
    result = {}
    for cal in calibrators:
        start = time.time()
        q = quantize(bundle, QuantConfig(calibrator=cal), progress=False)
        with torch.no_grad():
            result[cal] = {"psnr_db": psnr(ref, q.model(x)), "seconds": time.time() - start}
    q = quantize(bundle, QuantConfig(min_psnr=35.0), progress=False)
    search = q.last_step("quantize")["sensitivity"]
    with torch.no_grad():
        result["min_psnr_35"] = {**search, "psnr_heldout_db": psnr(ref, q.model(x))}
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distill-steps", type=int, default=PruneConfig().distill_steps)
    parser.add_argument("--fid-samples", type=int, default=1797)
    parser.add_argument("--calibrators", default="max,percentile,mse,entropy")
    parser.add_argument("--gan-weights", default="0.01,0.1", help="adversarial distillation weights to compare ('' for none)")
    parser.add_argument("--out", default="benchmarks/results/compress_quality.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    load = [os.getloadavg()]
    bundle = load_spec(str(get_or_train("dcgan").path))
    extractor = digits_extractor()
    images, _ = load_digits(32)
    real = real_features(extractor, images, "digits-32")
    shape = bundle.input_shape
    result = {"model": "dcgan (trained on digits)", "fid_extractor": extractor.name, "fid_samples": args.fid_samples}
    result["fid_original"] = fid_of(bundle.model, shape, extractor, real, args.fid_samples)
    raw = prune(bundle, PruneConfig(ratio=0.5, distill_steps=0), progress=False)
    result["prune"] = raw.manifest["metrics"]["prune"]
    result["fid_pruned_no_distill"] = fid_of(raw.model, shape, extractor, real, args.fid_samples)
    start = time.time()
    distilled = prune(bundle, PruneConfig(ratio=0.5, distill_steps=args.distill_steps), progress=True)
    result["distill"] = {k: v for k, v in distilled.last_step("distill").items() if k != "step"}
    result["distill"]["seconds"] = time.time() - start
    result["fid_pruned_distilled"] = fid_of(distilled.model, shape, extractor, real, args.fid_samples)
    result["fid_ratio_distilled_vs_original"] = result["fid_pruned_distilled"] / result["fid_original"]
    for weight in map(float, filter(None, args.gan_weights.split(","))):  # adversarial distillation, off by default
        start = time.time()
        adv = prune(bundle, PruneConfig(ratio=0.5, distill_steps=args.distill_steps, gan_weight=weight), progress=False)
        result.setdefault("adversarial", []).append({
            "gan_weight": weight, "fid": fid_of(adv.model, shape, extractor, real, args.fid_samples), "seconds": time.time() - start,
            "final_discriminator_loss": adv.last_step("distill")["final_discriminator_loss"]})
    load.append(os.getloadavg())
    result["int8"] = quant_numbers(bundle, args.calibrators.split(","))
    load.append(os.getloadavg())
    result["loadavg"] = load
    result["conditions"] = describe(2)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    import json

    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("fid_original", "fid_pruned_no_distill", "fid_pruned_distilled", "fid_ratio_distilled_vs_original")}, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()

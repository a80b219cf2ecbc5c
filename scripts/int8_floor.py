"""Does `build --int8` meet the default quality floor on every target? (issue 14's done-when)

    python scripts/int8_floor.py [--trained] [--compare] [--targets gpu,cpu] [--out benchmarks/results/int8_floor.json]

For each zoo generator (random init, or trained on digits with --trained) and the user-style
decoders of tests/int8/decoders.py (a TAESD-like decoder with and without wide activations),
and each target: the build with no quality option (the default floor, auto calibrator), and
with --compare the old default too (`--no-quality-floor --calibrator max`). Records the outcome
(written, or refused with exit 2 and its one line), PSNR/SSIM against FP32 on the evaluation
inputs, the calibrator chosen with every calibrator's score, and the layers kept float.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "int8"))  # decoders:taesd_like, as a user's module


def run_one(model: str, target: str, floor: bool, random_init: bool, input_shape, work: Path) -> dict:
    from gencompress.cli.pipeline import BuildConfig, build
    from gencompress.errors import GencompressError

    cfg = BuildConfig(model=model, input_shape=input_shape, random_init=random_init, out=str(work / f"{model}-{target}-{floor}"),
                      target=target, calib_samples=128, eval_samples=32, latency_batches=(8,), latency_iters=5, latency_warmup=2,
                      progress=False, no_floor=not floor, calibrator="auto" if floor else "max")
    start = time.time()
    try:
        s = build(cfg)
    except GencompressError as exc:
        return {"written": False, "error": str(exc), "seconds": time.time() - start}
    q, sens = s["quality"], s.get("sensitivity") or {}
    return {"written": True, "psnr_db": q["psnr_db"], "ssim": q.get("ssim"), "meets_floor": q.get("meets_floor"),
            "calibrators": s.get("calibrators"), "keep_float": sens.get("keep_float"), "layer_psnr_db": sens.get("layer_psnr_db"),
            "paired_speedup": (s.get("paired_speedup") or {}).get("speedup_vs_fp32_onnx"), "seconds": time.time() - start}


def _case(row: dict) -> tuple:
    return row["model"], row["target"], row.get("zoo"), row["default_floor"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trained", action="store_true", help="zoo models trained on digits (cached after the first run)")
    parser.add_argument("--targets", default="gpu,cpu")
    parser.add_argument("--models", default="dcgan,resnet_generator,upsample_conv,vae_decoder,decoders:taesd_like_plain,decoders:taesd_like")
    parser.add_argument("--compare", action="store_true", help="also build with the old default (no floor, max calibrator)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "int8_floor.json"))
    parser.add_argument("--merge", action="store_true", help="keep --out's rows for other (model, target, zoo, floor) cases")
    args = parser.parse_args(argv)
    from gencompress.atomic import atomic_write_text
    from gencompress.conditions import describe

    rows = json.loads(Path(args.out).read_text())["rows"] if args.merge and Path(args.out).is_file() else []
    with tempfile.TemporaryDirectory(prefix="int8-floor-") as work:
        for model in args.models.split(","):
            shape = (1, 4, 16, 16) if model.startswith("decoders:") else None
            for target in args.targets.split(","):
                for floor in (True, False) if args.compare else (True,):
                    row = {"model": model, "target": target, "default_floor": floor,
                           "zoo": None if shape is not None else "trained on digits" if args.trained else "random init",  # decoders: not zoo
                           **run_one(model, target, floor, not args.trained and shape is None, shape, Path(work)), "loadavg": os.getloadavg(),
                           "commit": describe(2)["commit"]}
                    rows = [r for r in rows if _case(r) != _case(row)]  # --merge: this run's row replaces an earlier one
                    print(json.dumps({k: row.get(k) for k in ("model", "target", "default_floor", "written", "psnr_db", "ssim", "keep_float", "error")}),
                          file=sys.stderr, flush=True)
                    rows.append(row)
                    result = {"benchmark": "int8_floor", "rows": rows, "conditions": describe(2)}
                    atomic_write_text(args.out, json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train the suite of real layouts on the shipped photos and record each model's own quality.

    nice -n 10 python scripts/train_suite.py train [--models sr_compact taesd ...]
    python scripts/train_suite.py crops DIR [--size 64] [--noise 0.2]   # held-out crops as PNGs, for --data folder:DIR
    python scripts/train_suite.py latents taesd OUT.npz [--per-side 4]  # held-out latents through the trained encoder

`train` trains each model (one at a time, 2 threads), judges it on the held-out photos before
and after training, writes its weights with their SHA-256 into the cache and, when they are
small enough, into the package (train/weights/), and merges its entry into
benchmarks/results/trained_suite.json with the conditions: commit, CPU flags, load average.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

from gencompress.conditions import cpu_flags, cpu_name, git_commit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "trained_suite.json"
ORDER = ("sr_compact", "taesd", "unet_pix2pix", "sd_vae", "stylegan2")  # the priority first


def _cpu() -> dict:
    """The machine the training ran on, as every results JSON records it (gencompress.conditions)."""
    return {"model": cpu_name(), "cpu_flags": cpu_flags(), "cores": os.cpu_count()}


def _train_one(name: str, ship: bool) -> dict:
    import torch

    from gencompress.benchmarks import suite

    load_before = os.getloadavg()
    init_quality = suite.judge(name, suite._seeded(suite.recipe(name).build, 0).eval())
    model, record = suite.train(name)
    quality = suite.judge(name, model)
    path = suite.save_weights(name, model, suite.cached_path(name))
    shipped = ship and suite.ships(path)
    if shipped:
        dst = suite.packaged_path(name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst)
        shutil.copyfile(path.with_suffix(".sha256"), dst.with_suffix(".sha256"))
    return {**record, "quality_at_init": init_quality, "quality": quality,
            "weights": {"folder": path.parent.name, "bytes": path.stat().st_size, "sha256": path.with_suffix(".sha256").read_text().split()[0],
                        "shipped": shipped},
            "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "torch": torch.__version__, "nice": os.nice(0), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def cmd_train(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"models": {}}
    for name in args.models:
        started = time.perf_counter()
        entry = _train_one(name, ship=not args.no_ship)
        entry["wall_seconds"] = round(time.perf_counter() - started, 1)
        results["models"][name] = {**entry, "commit": git_commit(), "cpu": _cpu()}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        tmp.replace(RESULTS)  # after each model: a later failure keeps the earlier ones
        print(f"{name}: {json.dumps(entry['quality'])} (at init {json.dumps(entry['quality_at_init'])}), "
              f"{entry['steps']} steps in {entry['train_seconds']} s", file=sys.stderr)
    return 0


def cmd_crops(args) -> int:
    from gencompress import photos

    paths = photos.write_held_out_crops(args.folder, args.size, args.per_side, args.noise)
    noise = f", Gaussian noise sigma {args.noise:g}" if args.noise else ""
    print(f"wrote {len(paths)} held-out crops ({args.size} px{noise}) to {args.folder}", file=sys.stderr)
    return 0


def cmd_latents(args) -> int:
    import numpy as np

    from gencompress.benchmarks import suite

    latents = suite.held_out_latents(args.model, per_side=args.per_side)
    np.savez(args.out, latents=latents.numpy())
    print(f"wrote {tuple(latents.shape)} latents of the held-out crops through the trained {args.model} encoder to {args.out}",
          file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train, judge, ship and record")
    p.add_argument("--models", nargs="+", default=list(ORDER), choices=ORDER)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-ship", action="store_true", help="keep the weights in the cache only")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("crops", help="write the held-out crops as PNGs")
    p.add_argument("folder")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--per-side", type=int, default=3)
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian noise sigma on [0, 1] (the denoising U-Net's inputs)")
    p.set_defaults(fn=cmd_crops)
    p = sub.add_parser("latents", help="held-out latents through a trained encoder, as an npz (key 'latents')")
    p.add_argument("model", choices=("taesd", "sd_vae"))
    p.add_argument("out")
    p.add_argument("--per-side", type=int, default=3, help="a grid of per-side x per-side 256-px crops per held-out photo")
    p.set_defaults(fn=cmd_latents)
    args = parser.parse_args(argv)
    from gencompress.errors import GencompressError

    try:
        return args.fn(args)
    except GencompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Train the embedded default (the zoo DCGAN on digits, 1500 steps, seed 0) exactly as
`get_or_train` does on first use, and ship the bundle inside the package
(`train/weights/<cache name>/`), so `gencompress build --int8` with no argument starts from it
instead of training for three minutes on a fresh clone.

    python scripts/package_default_weights.py [--model dcgan]

Writes manifest.json, weights.safetensors and discriminator.safetensors (hash-checked on load,
like every bundle). Rerun it when the zoo architecture or the training recipe changes (the
folder name carries steps, seed and the cache version, so a stale copy is simply not found).

It also ships the digits classifier that FID/KID/IS on digits use (gencompress/fid.py), trained
by the same function as on first use, with its SHA-256 beside it: every machine then scores
with the same extractor, and no process spends ten seconds training it first.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dcgan")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gencompress-package-weights-") as cache:
        os.environ["XDG_CACHE_HOME"] = cache  # train afresh, never copy whatever a user's cache holds
        import torch

        from gencompress.atomic import MARKER
        from gencompress.train.pretrained import PACKAGED_DIR, get_or_train

        torch.set_num_threads(2)
        trained = get_or_train(args.model, progress=True)
        dst = PACKAGED_DIR / trained.path.name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(trained.path, dst, ignore=shutil.ignore_patterns(MARKER))  # the overwrite marker is the cache's, not the package's
    print(f"packaged {args.model} -> {dst}", file=sys.stderr)
    print(f"packaged the FID digits classifier -> {package_digits_classifier()}", file=sys.stderr)
    return 0


def package_digits_classifier():
    from gencompress.atomic import atomic_write_text
    from gencompress.bundle import sha256
    from gencompress.fid import shipped_path, train_and_save, train_digits_classifier

    dst = shipped_path("digits-classifier")
    train_and_save(train_digits_classifier, dst)
    atomic_write_text(dst.with_suffix(".sha256"), f"{sha256(dst)}  {dst.name}\n")
    return dst


if __name__ == "__main__":
    sys.exit(main())

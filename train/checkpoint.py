"""Training checkpoints that a SIGKILL can never corrupt.

    <ckpt>/step-00000200/   models.safetensors  every module's state dict, keys "<module>.<param>"
                            optimizers.pt       optimiser state dicts (tensors and numbers only:
                                                torch.load(weights_only=True) reads them)
                            rng.safetensors     the global torch RNG state
                            state.json          step, batches seen, the run's resume key, sha256s
    <ckpt>/LATEST           the name of the newest complete checkpoint

Each checkpoint folder is written under a temporary name and renamed into place, then
LATEST is replaced atomically; a crash at any instant leaves the previous checkpoint whole.
Loading verifies every hash and falls back to the newest complete checkpoint.

A run owns its checkpoint folder (`claim_root`): one that does not resume never writes into
a folder that already holds another run's checkpoints or logs, and two processes never
write one folder at once.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from gencompress.atomic import atomic_dir, atomic_write_text, exclusive
from gencompress.bundle import sha256
from gencompress.errors import GencompressError

KEEP = 2  # checkpoints kept on disk: the newest and one before it


def check_root(root: Path, resume: bool) -> None:
    """A fresh run (no --resume) starts only in an empty or missing checkpoint folder: the
    files of the run that left them (its checkpoints, losses.csv, samples) are never
    overwritten, whether that run finished, failed or is still going."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise GencompressError(f"checkpoint folder {root} exists and is not a folder")
    if not resume and root.is_dir() and any(root.iterdir()):
        raise GencompressError(
            f"checkpoint folder {root} holds another run's checkpoints and logs; pass --resume to continue that run, "
            "or move the folder away (or name another with --checkpoint-dir) to start afresh"
        )


@contextlib.contextmanager
def claim_root(root: Path, resume: bool) -> Iterator[Path]:
    """`check_root`, then hold the folder's lock for the run: a second process naming it is refused."""
    root = Path(root)
    check_root(root, resume)
    root.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(root, what="checkpoint folder"):
        check_root(root, resume)  # again, under the lock
        yield root


def save(root: Path, step: int, modules: dict[str, nn.Module], optimizers: dict, meta: dict) -> Path:
    from safetensors.torch import save_file

    target = root / f"step-{step:08d}"
    with atomic_dir(target) as tmp:
        weights = {f"{name}.{k}": v.detach().cpu().contiguous().clone()
                   for name, m in modules.items() for k, v in m.state_dict().items()}
        save_file(weights, str(tmp / "models.safetensors"))
        torch.save({name: opt.state_dict() for name, opt in optimizers.items()}, tmp / "optimizers.pt")
        save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        files = {f: sha256(tmp / f) for f in ("models.safetensors", "optimizers.pt", "rng.safetensors")}
        (tmp / "state.json").write_text(json.dumps({**meta, "step": step, "files": files}, indent=2))
    atomic_write_text(root / "LATEST", target.name + "\n")
    for old in sorted(root.glob("step-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _complete(path: Path) -> dict | None:
    """The checkpoint's state.json if every file matches its hash, else None."""
    try:
        meta = json.loads((path / "state.json").read_text())
        ok = all(sha256(path / f) == h for f, h in meta["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta if ok else None


def latest(root: Path) -> tuple[Path, dict] | None:
    """The newest complete checkpoint under `root` (LATEST first, then by step)."""
    candidates = []
    pointer = root / "LATEST"
    if pointer.is_file():
        candidates.append(root / pointer.read_text().strip())
    candidates += sorted(root.glob("step-*"), reverse=True)
    for path in candidates:
        meta = _complete(path)
        if meta is not None:
            if candidates and path != candidates[0]:
                print(f"gencompress: warning: resuming from {path.name}; newer checkpoint incomplete", file=sys.stderr)
            return path, meta
    return None


def restore(path: Path, meta: dict, modules: dict[str, nn.Module], optimizers: dict, expected_key: dict) -> None:
    """Load a checkpoint into live modules; a different architecture or run is a user error."""
    from safetensors.torch import load_file

    found = meta.get("resume_key", {})
    diffs = {k: (found.get(k), v) for k, v in expected_key.items() if found.get(k) != v}
    if diffs:
        what = "; ".join(f"{k}: checkpoint {a!r}, this run {b!r}" for k, (a, b) in diffs.items())
        noun = "another architecture" if "model" in diffs else "a different run"
        raise GencompressError(f"checkpoint {path} is from {noun} ({what})")
    weights = load_file(str(path / "models.safetensors"))
    for name, module in modules.items():
        prefix = f"{name}."
        state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise GencompressError(f"checkpoint {path} is from another architecture ({name}: {first})") from None
    states = torch.load(path / "optimizers.pt", map_location="cpu", weights_only=True)
    for name, opt in optimizers.items():
        opt.load_state_dict(states[name])
    torch.set_rng_state(load_file(str(path / "rng.safetensors"))["torch"])

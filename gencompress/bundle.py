"""The bundle: the one artifact that flows between stages.

    bundle/
      manifest.json        schema version, architecture, input/output spec, precision per
                           layer, the recipe so far, metrics so far, sha256 of every file
      weights.safetensors  when the model is PyTorch
      model.onnx           once exported
      engine.plan          once built with TensorRT
      report/              report.md, samples.png, ...

In memory a Bundle also carries the live PyTorch model, so `build` can chain stages
without a round trip through disk; `save` writes everything atomically.
"""
from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .atomic import atomic_dir
from .errors import GencompressError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ONNX = "model.onnx"
ENGINE = "engine.plan"


def new_manifest(architecture: dict, input_spec: dict, output_spec: dict) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "gencompress_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "architecture": architecture,
        "input": input_spec,
        "output": output_spec,
        "precision": {},
        "recipe": [],
        "metrics": {},
        "files": {},
    }


@dataclass
class Bundle:
    manifest: dict
    model: nn.Module | None = None
    # Artifacts by their name inside the bundle ("model.onnx", "report/report.md")
    # -> where the file lies now (a temp folder while in flight, the bundle once saved).
    files: dict[str, Path] = field(default_factory=dict)
    path: Path | None = None

    # -- accessors ------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape (no batch axis)."""
        return tuple(self.manifest["input"]["shape"])

    @property
    def input_distribution(self) -> str:
        return self.manifest["input"]["distribution"]

    def file(self, name: str) -> Path:
        if name not in self.files:
            raise GencompressError(f"bundle has no {name}")
        return self.files[name]

    def derive(self, step: dict, model: nn.Module | None = None) -> "Bundle":
        """A new in-memory bundle one step further along the recipe."""
        manifest = copy.deepcopy(self.manifest)
        manifest["recipe"].append(step)
        return Bundle(manifest, model if model is not None else self.model, dict(self.files), None)

    # -- disk -----------------------------------------------------------------------
    def save(self, out: str | os.PathLike) -> "Bundle":
        """Write the bundle to `out` atomically (temp folder, then rename)."""
        out = Path(out)
        manifest = copy.deepcopy(self.manifest)
        with atomic_dir(out) as tmp:
            hashes: dict[str, str] = {}
            if self.model is not None:
                _save_weights(self.model, tmp / WEIGHTS)
                hashes[WEIGHTS] = sha256(tmp / WEIGHTS)
            for name, src in self.files.items():
                dst = tmp / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                hashes[name] = sha256(dst)
            manifest["files"] = dict(sorted(hashes.items()))
            validate_manifest(manifest)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        files = {name: out / name for name in manifest["files"] if name != WEIGHTS}
        return Bundle(manifest, self.model, files, out)

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True) -> "Bundle":
        """Read a bundle's manifest and list its files; the model is built on demand."""
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise GencompressError(f"{path} is not a bundle: no {MANIFEST}")
        try:
            manifest = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GencompressError(f"{mpath} is not valid JSON: {exc}") from None
        validate_manifest(manifest)
        if verify:
            _verify_hashes(path, manifest["files"])
        files = {name: path / name for name in manifest["files"] if name != WEIGHTS}
        return cls(manifest, None, files, path)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.path is None or WEIGHTS not in self.manifest["files"]:
            raise GencompressError("bundle has no weights.safetensors")
        return load_safetensors(self.path / WEIGHTS)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_hashes(root: Path, hashes: dict[str, str]) -> None:
    for name, expected in hashes.items():
        target = root / name
        if not target.is_file():
            raise GencompressError(f"bundle {root} is missing {name}")
        if sha256(target) != expected:
            raise GencompressError(f"bundle {root}: {name} does not match its hash in the manifest (corrupt or tampered)")


def _save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    # clone + contiguous: safetensors refuses shared or strided storage
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    save_file(state, str(path))


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GencompressError(f"cannot read weights {path}: {exc}") from None


def validate_manifest(manifest: dict) -> None:
    import jsonschema

    if not isinstance(manifest, dict):
        raise GencompressError("manifest is not a JSON object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise GencompressError(f"manifest schema version {version!r} is not supported (this gencompress reads {SCHEMA_VERSION})")
    schema = json.loads(resources.files("gencompress").joinpath("schema/manifest.schema.json").read_text())
    try:
        jsonschema.validate(manifest, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise GencompressError(f"invalid manifest at {where}: {exc.message}") from None

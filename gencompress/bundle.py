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
import functools
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
from . import defaults as _defaults
from .atomic import _umask, atomic_dir
from .errors import GencompressError

# Version 2 added "hash_algorithm". Older manifests are migrated on load (MIGRATIONS);
# newer ones are refused with a message asking for a newer gencompress.
SCHEMA_VERSION = 2
HASH_ALGORITHM = "sha256"
MAX_MANIFEST_BYTES = 16 << 20  # a manifest is a few KiB; anything this big is not one
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ONNX = "model.onnx"
SOURCE_ONNX = "source.onnx"  # the FP32 graph a bundle came from (an imported .onnx, or the build's export); never saved by build
ENGINE = "engine.plan"

# What a bundle can be.
PRECISIONS = _defaults.PRECISIONS
# modelopt-qdq: fake-quant PyTorch model whose export is TensorRT's explicit Q/DQ (symmetric INT8);
# ort-qdq: the same symmetric Q/DQ form, written by ONNX Runtime's quantize_static on the graph;
# ort-qlinear: ONNX Runtime's CPU integer form (U8 activations, QLinearConv; --target cpu);
# none: no INT8 in the graph.
QUANT_FORMS = ("modelopt-qdq", "ort-qdq", "ort-qlinear", "none")


@dataclass(frozen=True)
class Form:
    """What a bundle is: the one answer every reader (export, bench, Jetson, lint, restore) uses."""

    precision: str  # of the deployable graph: fp32 | fp16 | int8
    quantisation: str  # one of QUANT_FORMS
    target: str | None  # where the graph was made to run (None: not said yet)
    has_qdq: bool  # the graph holds QuantizeLinear/DequantizeLinear pairs (TensorRT builds from them)
    float_layers: tuple[str, ...] = ()  # quantisable layers left in float by the quantize step
    deconv_weight_axis: int = 1  # per-channel axis of ConvTranspose weight scales in the Q/DQ graph

    @property
    def is_int8(self) -> bool:
        return self.precision == "int8"

    @property
    def tensorrt_qdq(self) -> bool:
        """The graph is TensorRT's explicit-quantisation form (what the Q/DQ lint checks)."""
        return self.quantisation in ("modelopt-qdq", "ort-qdq")

    @property
    def fake_quant_weights(self) -> bool:
        """weights.safetensors holds modelopt quantisers: the model is rebuilt by replaying them."""
        return self.quantisation == "modelopt-qdq"


def last_step(manifest: dict, name: str, having: str | None = None) -> dict | None:
    """The newest recipe step called `name` (with the key `having`, if given), or None: the one
    place besides `form_of` that reads the recipe (for code that holds a manifest, not a Bundle)."""
    steps = [s for s in manifest.get("recipe", []) if s.get("step") == name and (having is None or s.get(having) is not None)]
    return steps[-1] if steps else None


def _quant_form(step: dict) -> str:
    """The quantisation form a `quantize` recipe step wrote."""
    if step.get("tool") == "nvidia-modelopt":
        return "modelopt-qdq"
    if str(step.get("format", "")).startswith("cpu-"):
        return "ort-qlinear"  # cpu-u8s8-qoperator, or its QDQ spelling that ORT fuses into QLinearConv
    return "ort-qdq"


def form_of(manifest: dict) -> Form:
    """Read the recipe once, in order: the last step that changed precision or target wins."""
    precision, quant, target, axis, has_qdq = "fp32", "none", None, 1, False
    for step in manifest.get("recipe", []):
        kind = step.get("step")
        if kind == "quantize":
            precision, quant = "int8", _quant_form(step)
            axis = int(step.get("deconv_weight_axis", axis))
            has_qdq = quant != "ort-qlinear" or str(step.get("format", "")).endswith("-qdq")
            target = "cpu" if quant == "ort-qlinear" else target
        elif kind in ("convert", "export") and step.get("precision") in PRECISIONS:
            precision = step["precision"]
            if precision != "int8":
                quant, has_qdq = "none", False
        if kind in ("export", "build") and step.get("target"):
            target = step["target"]
    build_target = manifest.get("metrics", {}).get("build", {}).get("target")
    target = target or build_target
    float_layers = tuple(sorted(n for n, p in manifest.get("precision", {}).items() if p != "int8"))  # weight-only INT8 computes in float
    return Form(precision, quant, target, has_qdq, float_layers if precision == "int8" else (), axis)


def new_manifest(architecture: dict, input_spec: dict, output_spec: dict) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "hash_algorithm": HASH_ALGORITHM,
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
    def input_distribution(self) -> str | dict:
        """What `draw_inputs` needs: the distribution's name, or the whole input spec for a
        class-conditional model, whose draws must carry a class index (gencompress/conditional.py)."""
        spec = self.manifest["input"]
        return spec if spec.get("classes") else spec["distribution"]

    @property
    def form(self) -> Form:
        """Precision, quantisation form, target, Q/DQ, float layers: read off the recipe here only."""
        return form_of(self.manifest)

    def file(self, name: str) -> Path:
        if name not in self.files:
            raise GencompressError(f"bundle has no {name}")
        return self.files[name]

    def last_step(self, name: str, having: str | None = None) -> dict | None:
        """The newest recipe step called `name` (that has the key `having`, if given), or None."""
        return last_step(self.manifest, name, having)

    @property
    def recipe(self) -> list[dict]:
        """The steps that made this bundle, oldest first (append with `record`)."""
        return self.manifest["recipe"]

    def record(self, step: dict) -> dict:
        """Append `step` to this bundle's recipe (in place; `derive` makes a new bundle); returns it."""
        self.manifest["recipe"].append(step)
        return step

    def derive(self, step: dict, model: nn.Module | None = None) -> "Bundle":
        """A new in-memory bundle one step further along the recipe."""
        manifest = copy.deepcopy(self.manifest)
        manifest["recipe"].append(step)
        return Bundle(manifest, model if model is not None else self.model, dict(self.files), None)

    # -- disk -----------------------------------------------------------------------
    def save(self, out: str | os.PathLike) -> "Bundle":
        """Write the bundle to `out` atomically (temp folder, then rename)."""
        out = Path(out)
        manifest = migrate(copy.deepcopy(self.manifest))
        validate_manifest(manifest)  # before any work: a bad manifest never reaches disk
        with atomic_dir(out) as tmp:
            hashes: dict[str, str] = {}
            if self.model is not None:
                _save_weights(self.model, tmp / WEIGHTS)
                _set_mode(tmp / WEIGHTS, executable=False)
                hashes[WEIGHTS] = sha256(tmp / WEIGHTS)
            for name, src in self.files.items():
                _check_member_name(name)  # never write outside the temp folder
                dst = tmp / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                _set_mode(dst, executable=os.access(src, os.X_OK))
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
        if not path.is_dir():
            raise GencompressError(f"bundle {path} does not exist or is not a folder")
        if not mpath.is_file():
            raise GencompressError(f"{path} is not a bundle: no {MANIFEST}")
        if mpath.stat().st_size > MAX_MANIFEST_BYTES:
            raise GencompressError(f"{mpath} is over {MAX_MANIFEST_BYTES >> 20} MiB; not a gencompress manifest")
        manifest = parse_manifest(mpath.read_bytes(), str(mpath))
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
    real_root = root.resolve()
    for name, expected in hashes.items():
        target = root / name
        # A link could make us hash (and later copy) a file outside the bundle.
        if target.is_symlink() or not target.resolve().is_relative_to(real_root):
            raise GencompressError(f"bundle {root}: {name} is a link or lies outside the bundle; refusing it")
        if not target.is_file():
            raise GencompressError(f"bundle {root} is missing {name}")
        if sha256(target) != expected:
            raise GencompressError(f"bundle {root}: {name} does not match its hash in the manifest (corrupt or tampered)")


def _set_mode(path: Path, executable: bool) -> None:
    """An ordinary file's mode under the umask, executable where its source was: copyfile drops
    the mode (the Jetson scripts lost their x bit) and safetensors writes through a 0600 temp file."""
    os.chmod(path, (0o777 if executable else 0o666) & ~_umask())


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


def parse_manifest(data: bytes | str, where: str = "manifest") -> dict:
    """JSON text -> a validated manifest at the current schema version (migrated if older)."""
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GencompressError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise GencompressError(f"{where} is nested too deeply to be a manifest") from None
    manifest = migrate(manifest)
    validate_manifest(manifest)
    return manifest


def _schema_version(manifest) -> int:
    if not isinstance(manifest, dict):
        raise GencompressError("manifest is not a JSON object")
    version = manifest.get("schema_version")
    if type(version) is not int or version < 1:  # bool is an int subclass: refuse `true`
        raise GencompressError(f"manifest schema version {version!r} is not supported (this gencompress reads 1 to {SCHEMA_VERSION})")
    if version > SCHEMA_VERSION:
        raise GencompressError(
            f"manifest schema version {version} is newer than this gencompress reads ({SCHEMA_VERSION}); upgrade gencompress"
        )
    return version


def _v1_to_v2(manifest: dict) -> dict:
    """v2 names the hash algorithm, so a later version can change it without guessing."""
    manifest["hash_algorithm"] = HASH_ALGORITHM
    return manifest


# MIGRATIONS[v] turns a version-v manifest into a version-(v+1) one. Add one entry per
# schema change; `migrate` chains them, so every old bundle stays readable.
MIGRATIONS = {1: _v1_to_v2}


def migrate(manifest: dict) -> dict:
    """Bring a manifest of any supported older schema version up to SCHEMA_VERSION."""
    version = _schema_version(manifest)
    while version < SCHEMA_VERSION:
        manifest = MIGRATIONS[version](copy.deepcopy(manifest))
        version += 1
        manifest["schema_version"] = version
    return manifest


def _check_member_name(name: str) -> None:
    """A file name inside a bundle: relative, no `..`, no backslash, not the manifest."""
    parts = name.split("/")
    if (
        not name
        or len(name) > 255
        or name == MANIFEST
        or "\\" in name
        or "\0" in name
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise GencompressError(f"invalid manifest: file name {name!r} is not a plain relative path inside the bundle")


def validate_manifest(manifest: dict) -> None:
    import jsonschema

    version = _schema_version(manifest)
    if version != SCHEMA_VERSION:
        raise GencompressError(f"manifest schema version {version} must be migrated first (bundle.migrate)")
    error = jsonschema.exceptions.best_match(_validator().iter_errors(manifest))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise GencompressError(f"invalid manifest at {where}: {error.message[:200]}")
    for name in manifest["files"]:
        _check_member_name(name)


@functools.lru_cache(maxsize=1)
def _validator():
    """The schema, checked and compiled once per process."""
    import jsonschema

    schema = json.loads(resources.files("gencompress").joinpath("schema/manifest.schema.json").read_text())
    base = jsonschema.validators.validator_for(schema)
    base.check_schema(schema)
    # JSON Schema counts 1.0 as an "integer"; a shape of [1.0, 32, 32] then reaches torch and
    # numpy as floats. Here an integer is a JSON integer literal (and never true/false).
    checker = base.TYPE_CHECKER.redefine("integer", lambda _, value: type(value) is int)
    return jsonschema.validators.extend(base, type_checker=checker)(schema)

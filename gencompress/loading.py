"""Turn what a user names with `--model` into an in-memory Bundle.

A SPEC is one of: a bundle folder; an import spec `package.module:callable` returning an
nn.Module (weights from `--checkpoint`); a TorchScript file; an `.onnx` file. Zoo names
are resolved by the CLI, which may train them on first use (a stage's job, not the core's).

Nothing here unpickles arbitrary objects: weights come from safetensors, or from
`torch.load(weights_only=True)` unless the user passes `trust_pickle=True`.
"""
from __future__ import annotations

import ast
import importlib
import os
import re
import sys
import zipfile
from pathlib import Path

import torch
from torch import nn

from . import conditional, zoo
from .bundle import SOURCE_ONNX, Bundle, last_step, load_safetensors, new_manifest, sha256
from .errors import GencompressError, first_line

IMPORT_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
MAX_MODEL_FILE_BYTES = 4 << 30  # 4 GiB: larger than any generator this toolkit targets


def parse_shape(text: str) -> tuple[int, ...]:
    """'1x100x1x1' -> (1, 100, 1, 1); every dimension a positive integer."""
    parts = str(text).strip().lower().replace(",", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise GencompressError(f"input shape {text!r} is not like 1x100x1x1") from None
    if not dims or any(d <= 0 for d in dims) or len(dims) > 6:
        raise GencompressError(f"input shape {text!r} must have 1 to 6 positive dimensions")
    return dims


def describe_shape(shape) -> str:
    return "x".join(str(int(d)) for d in shape)


# --- state dicts ---------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Weights from a safetensors file or a PyTorch checkpoint (weights only by default)."""
    path = Path(path)
    if not path.is_file():
        raise GencompressError(f"checkpoint {path} does not exist")
    _check_size(path, "checkpoint")
    if path.suffix == ".safetensors":
        return check_finite_weights(load_safetensors(path), str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        first = first_line(exc)
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise GencompressError(
                f"checkpoint {path} holds Python objects beyond tensors; refusing to unpickle it "
                "(pass --trust-pickle only if you trust where it came from)"
            ) from None
        raise GencompressError(f"cannot read checkpoint {path}: {first}") from None
    for key in ("state_dict", "model", "generator", "netG", "G", "g_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), (dict, nn.Module)):
            obj = obj[key]
            break
    if isinstance(obj, nn.Module):  # torch.save(model): only reachable with --trust-pickle
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise GencompressError(f"checkpoint {path} is not a state dict of tensors")
    return check_finite_weights({str(k).removeprefix("module."): v for k, v in obj.items()}, str(path))


def check_finite_weights(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """NaN or Inf in a weight poisons every output; say which tensor, before any work."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise GencompressError(f"{where}: weight {name!r} contains NaN or Inf")
    return state


_SHAPE_ATTRS = {
    nn.Conv2d: lambda m, w: _set(m, out_channels=w.shape[0], in_channels=w.shape[1] * m.groups),
    nn.ConvTranspose2d: lambda m, w: _set(m, in_channels=w.shape[0], out_channels=w.shape[1] * m.groups),
    nn.Linear: lambda m, w: _set(m, out_features=w.shape[0], in_features=w.shape[1]),
    nn.BatchNorm2d: lambda m, w: _set(m, num_features=w.shape[0]),
    nn.InstanceNorm2d: lambda m, w: _set(m, num_features=w.shape[0]),
    nn.GroupNorm: lambda m, w: _set(m, num_channels=w.shape[0]),
}


def _check_fits(name: str, current: torch.Tensor, saved: torch.Tensor) -> None:
    """Whatever the shapes, the rank and the kind of number must match."""
    if current.is_floating_point() and not saved.is_floating_point():
        raise GencompressError(f"weight {name!r} is {saved.dtype}, the architecture needs a floating-point tensor")
    if saved.dim() != current.dim() or saved.numel() == 0:
        raise GencompressError(
            f"weight {name!r} has shape {tuple(saved.shape)}, the architecture expects {tuple(current.shape)}"
        )


def _set(module: nn.Module, **attrs) -> None:
    for key, value in attrs.items():
        setattr(module, key, int(value))


def was_pruned(manifest: dict) -> bool:
    """Only a bundle whose recipe records pruning may hold layers narrower than its code builds."""
    return last_step(manifest, "prune") is not None


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True, shrink: bool = False,
                 where: str = "the weights") -> nn.Module:
    """Load `state` into `model`; every tensor must have the shape the model's code gives it.

    A channel-pruned bundle (`shrink=True`, see `was_pruned`) keeps its architecture's
    code but has narrower layers: we build the original and shrink each tensor (and the
    module's size attributes) to the saved shape, so no pickled module is ever needed.
    Nothing is ever widened, and nothing else is resized: a checkpoint of another width
    is an error naming the first layer that differs (`where` names the source).
    """
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    misfits = []  # the model's order: every layer that differs is named, first to last
    for name, current in own.items():
        saved = state.get(name)
        if saved is None:
            continue
        _check_fits(name, current, saved)
        if current.shape == saved.shape:
            continue
        if not shrink or any(s > c for s, c in zip(saved.shape, current.shape)):
            misfits.append(f"layer {name!r} is {describe_shape(saved.shape)} in {where}, {describe_shape(current.shape)} in the model")
            continue
        _shrink(model, name, current, saved)
    if misfits:
        why = "pruning only narrows layers" if shrink else "layers are never resized to fit: build the model with matching widths"
        raise GencompressError(f"weights do not fit the architecture: {_listed_names(misfits)} ({why})")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        _keys_error(own, state, missing, unexpected, where)
    return model


def _shrink(model: nn.Module, name: str, current: torch.Tensor, saved: torch.Tensor) -> None:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    fresh = torch.empty(saved.shape, dtype=current.dtype)
    if isinstance(current, nn.Parameter):
        setattr(module, attr, nn.Parameter(fresh, requires_grad=current.requires_grad))
    else:
        module.register_buffer(attr, fresh)
    if attr == "weight" and type(module) in _SHAPE_ATTRS:
        _SHAPE_ATTRS[type(module)](module, saved)


def _listed_names(items: list[str], limit: int = 6) -> str:
    """Every layer named, up to `limit` (then how many more): one line, whatever the checkpoint."""
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _keys_error(own: dict, state: dict, missing: list[str], unexpected: list[str], where: str):
    """Name the tensors the model lacks in `state`, and those `state` holds that it does not."""
    parts = []
    if missing:
        parts.append(f"missing in {where}: " + _listed_names([f"{n!r} ({describe_shape(own[n].shape)} in the model)" for n in missing]))
    if unexpected:
        parts.append(f"unexpected in {where}, not in the model: "
                     + _listed_names([f"{n!r} ({describe_shape(state[n].shape)})" for n in unexpected]))
    raise GencompressError(
        f"weights do not fit the architecture: {'; '.join(parts)} ({len(missing)} missing, {len(unexpected)} unexpected)"
    )


# --- building models ------------------------------------------------------------------


def build_architecture(architecture: dict) -> nn.Module:
    kind = architecture["kind"]
    if kind == "zoo":
        return zoo.build(architecture["name"], **architecture.get("kwargs", {}))
    if kind == "import":
        model = call_import_spec(architecture["spec"])
        wrap = architecture.get("conditional")  # a (z, y) model: rebuilt behind the same packed input
        return conditional.wrap(model, wrap["z_shape"], wrap["classes"]) if wrap else model
    raise GencompressError(f"a {kind!r} architecture cannot be rebuilt as a PyTorch module")


def call_import_spec(spec: str) -> nn.Module:
    """Import `package.module:callable` and call it; it must return an nn.Module."""
    func = resolve_import_spec(spec)
    try:
        model = func()
    except (Exception, SystemExit) as exc:
        raise GencompressError(f"{spec}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise GencompressError(f"{spec}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def resolve_import_spec(spec: str):
    """Import `package.module:callable` and return the callable (the user's code), uncalled."""
    if not IMPORT_SPEC.match(spec):
        raise GencompressError(f"import spec {spec!r} is not like package.module:callable")
    module_name, func_name = spec.split(":")
    package = module_name.split(".")[0]
    # No generator lives in the standard library; refusing it keeps a downloaded bundle
    # from naming side effects such as `os:abort` or `antigravity:x` (checked before import).
    if package in sys.stdlib_module_names or package in sys.builtin_module_names:
        raise GencompressError(f"import spec {spec!r} names a standard-library module; it must name your generator's code")
    if os.getcwd() not in sys.path:  # like `python -m`, find modules in the working folder
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # user code may call sys.exit() on import
        raise GencompressError(f"cannot import {module_name!r} for {spec}: {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise GencompressError(f"{module_name!r} has no callable {func_name!r}")
    defined_in = getattr(func, "__module__", None)
    if isinstance(defined_in, str) and defined_in.split(".")[0] != package:
        # a name imported from elsewhere (e.g. `from os import abort`) is not the generator
        raise GencompressError(f"{spec} is defined in {defined_in!r}, not in package {package!r}; name it where it is defined")
    return func


def model_from_bundle(bundle: Bundle) -> nn.Module:
    """Rebuild the FP32 PyTorch model of a saved bundle (the weights it holds)."""
    model = build_architecture(bundle.manifest["architecture"])
    state = check_finite_weights(bundle.state_dict(), f"bundle {bundle.path}")
    plain = {k: v for k, v in state.items() if "_quantizer." not in k}
    return load_weights(model, plain, shrink=was_pruned(bundle.manifest), where=f"bundle {bundle.path}").eval()


def is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def check_zip_archive(path: Path) -> None:
    """A TorchScript file is a zip: refuse truncated ones, bad CRCs and zip bombs up front."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if sum(i.file_size for i in infos) > MAX_MODEL_FILE_BYTES:
                raise GencompressError(f"{path} unpacks to over {MAX_MODEL_FILE_BYTES >> 20} MiB; refusing it")
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise GencompressError(f"{path} is a corrupt or truncated archive: {exc}") from None
    if bad is not None:
        raise GencompressError(f"{path} is corrupt: bad checksum in {bad}")


def _looks_like_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _check_size(path: Path, what: str = "model file") -> None:
    size = path.stat().st_size
    if size == 0:
        raise GencompressError(f"{what} {path} is empty")
    if size > MAX_MODEL_FILE_BYTES:
        raise GencompressError(f"{what} {path} is {size >> 20} MiB, over the {MAX_MODEL_FILE_BYTES >> 20} MiB limit")


def load_spec(
    spec: str,
    input_shape: tuple[int, ...] | None = None,
    checkpoint: str | None = None,
    trust_pickle: bool = False,
    distribution: str = "normal",
    classes: int | None = None,
) -> Bundle:
    """Resolve every SPEC form except zoo names (see module docstring). `classes`: the model's
    forward is (z, y) with y in [0, classes); it is wrapped behind one packed input
    (gencompress/conditional.py) and `input_shape` is z's."""
    path = Path(spec)
    refuse_inapplicable(spec, input_shape, checkpoint, trust_pickle)
    if classes is not None:
        conditional.check_classes(classes)
        if path.is_dir() or path.suffix == ".onnx" or not IMPORT_SPEC.match(spec):
            raise GencompressError(f"--classes applies to a package.module:callable model whose forward takes (z, y), not {spec}")
    if path.suffix == ".py" and not path.is_dir():  # the user's model code itself, which is imported by name, not read as a file
        raise GencompressError(python_file_hint(spec))
    if path.is_dir():
        bundle = Bundle.load(path)
        if bundle.manifest["architecture"]["kind"] in ("zoo", "import"):
            bundle.model = model_from_bundle(bundle)
        return bundle
    if path.suffix == ".onnx" or (path.exists() and not IMPORT_SPEC.match(spec)):
        if not path.is_file():
            raise GencompressError(f"model file {path} does not exist")
        return _file_bundle(path, input_shape, distribution)
    if IMPORT_SPEC.match(spec):
        if input_shape is None:
            raise GencompressError(f"--input-shape is required with an import spec ({spec})")
        model = call_import_spec(spec)
        if classes is None:
            conditional.check_single_input(model, spec)
        else:
            conditional.check_two_inputs(model, spec)
        step = {"step": "load", "weights": RANDOM_WEIGHTS}
        if getattr(model, TRAINED_WEIGHTS_ATTR, None):  # the callable loaded trained weights itself and says which
            step = {"step": "load", "weights": "built-in", "source": str(getattr(model, TRAINED_WEIGHTS_ATTR))}
        if checkpoint:  # the user's own state dict: loaded before any wrap adds a prefix
            step = load_checkpoint_into(model, checkpoint, trust_pickle)
        arch = {"kind": "import", "spec": spec}
        input_spec = _input_spec(input_shape, distribution)
        if classes is not None:
            z_shape = input_spec["shape"]
            model = conditional.wrap(model, z_shape, classes)
            arch["conditional"] = conditional.architecture_record(z_shape, classes)
            input_spec.update(conditional.input_fields(z_shape, classes))
        bundle = Bundle(new_manifest(arch, input_spec, _output_spec()), model.eval())
        bundle.record(step)
        return bundle
    raise GencompressError(f"model {spec!r} is not a bundle folder, a file, an import spec or a zoo name ({', '.join(zoo.names())})")


def python_file_hint(spec: str) -> str:
    """`--model ./sr_net.py`: say how to name it, with a callable the file defines (read with ast,
    never run): its first public function, else its first class."""
    path, functions, classes = Path(spec), [], []
    try:
        for node in ast.parse(path.read_text(encoding="utf-8", errors="replace")).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                functions.append(node.name)
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                classes.append(node.name)
    except (OSError, SyntaxError, ValueError):
        pass  # a missing or broken file: the example names a generic callable
    example = f"{path.stem}:{(functions + classes + ['make_generator'])[0]}"
    return (f"--model {spec} is a Python file: use package.module:callable, e.g. {example}, run from its folder "
            f"({path.resolve().parent}) with --input-shape")


RANDOM_WEIGHTS = "random"  # a "load" step's weights: the model's own initialisation, no checkpoint
# A model an import spec returns with trained weights already in it names them in this attribute
# (a string: where they came from), so the build records them instead of warning "random weights".
TRAINED_WEIGHTS_ATTR = "gencompress_trained_weights"


def load_checkpoint_into(model: nn.Module, checkpoint: str, trust_pickle: bool = False) -> dict:
    """Load the user's --checkpoint into `model` strictly (every layer present, none extra, each
    of the model's shape: a mismatch is refused by layer name) and return the recipe's load step."""
    load_weights(model, load_checkpoint(checkpoint, trust_pickle), where=f"checkpoint {checkpoint}")
    return {"step": "load", "weights": "checkpoint", "checkpoint": Path(checkpoint).name, "checkpoint_sha256": sha256(Path(checkpoint))}


def refuse_inapplicable(spec: str, input_shape, checkpoint: str | None, trust_pickle: bool) -> None:
    """Options that a model form does not use are errors, never silently ignored: a bundle,
    an ONNX or a TorchScript file carries its own weights, and a bundle its input shape."""
    path = Path(spec)
    kind = "bundle" if path.is_dir() else "ONNX file" if path.suffix == ".onnx" else None
    if kind is None and path.exists() and not IMPORT_SPEC.match(spec):
        kind = "TorchScript file"
    if trust_pickle and not checkpoint:
        raise GencompressError("--trust-pickle applies only to a --checkpoint (it allows unpickling that file); none was given")
    if checkpoint and kind is not None:
        raise GencompressError(f"--checkpoint applies to a zoo name or a package.module:callable; {spec} is a {kind} "
                               "and carries its own weights")
    if input_shape is not None and kind == "bundle":
        shape = Bundle.load(path).manifest["input"]["shape"]
        if list(input_shape[1:]) != list(shape):
            raise GencompressError(f"input shape {describe_shape(input_shape)} does not fit bundle {spec} "
                                   f"(it takes Nx{describe_shape(shape)}, recorded in its manifest)")


def weight_warnings(manifest: dict) -> list[str]:
    """What a report must say about where the weights came from: random ones measure an
    untrained model, which is rarely what was meant."""
    step = last_step(manifest, "load")
    if step is None or step.get("weights") != RANDOM_WEIGHTS:
        return []
    arch = manifest["architecture"]
    what = arch.get("spec") or arch.get("name", "the model")
    how = "no --checkpoint was given" if arch["kind"] == "import" else "--random-init"
    return [f"random weights: {what} was built with its own initialisation ({how}), so this measures an untrained model"]


def _input_spec(shape: tuple[int, ...], distribution: str) -> dict:
    per_sample = list(shape[1:]) if len(shape) > 1 else list(shape)
    return {"name": "latent", "shape": per_sample, "dtype": "float32", "distribution": distribution}


def _output_spec() -> dict:
    return {"name": "image", "range": [-1.0, 1.0], "layout": "NCHW"}


def _file_bundle(path: Path, input_shape, distribution: str) -> Bundle:
    _check_size(path)
    if path.suffix == ".onnx":
        from .onnx_utils import onnx_input_shape

        shape = onnx_input_shape(path)  # validates the graph, whatever --input-shape says
        if input_shape is not None and tuple(input_shape[1:]) != tuple(shape[1:]):
            raise GencompressError(
                f"input shape {describe_shape(input_shape)} does not fit {path} (it takes Nx{describe_shape(shape[1:])})"
            )
        bundle = Bundle(new_manifest({"kind": "onnx", "name": path.name}, _input_spec(shape, distribution), _output_spec()))
        bundle.files[SOURCE_ONNX] = path
        return bundle
    if _looks_like_zip(path):
        check_zip_archive(path)
    if not is_torchscript(path):
        raise GencompressError(
            f"{path} is neither TorchScript nor ONNX; a state-dict checkpoint needs an architecture: "
            "pass --model ZOO_NAME or package.module:callable with --checkpoint"
        )
    if input_shape is None:
        raise GencompressError(f"--input-shape is required with a TorchScript file ({path})")
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise GencompressError(f"cannot load TorchScript {path}: {str(exc).strip().splitlines()[0]}") from None
    arch = {"kind": "torchscript", "name": path.name}
    return Bundle(new_manifest(arch, _input_spec(input_shape, distribution), _output_spec()), model.eval())


def check_generator(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1) -> tuple[int, ...]:
    """Run the model; it must return a finite N x C x H x W float image tensor.

    `batch` is the user's (the first dimension of --input-shape), so an error quotes the
    shape they gave. A second run at another batch checks that the output batch follows
    the input's (the exported graph has a dynamic batch axis). Returns the per-sample
    output shape. Bad shapes and NaN outputs fail here, before any stage spends minutes.
    """
    try:
        out = _run_generator(model, input_shape, batch)
    except GencompressError:
        _check_batch_dimension(model, input_shape, batch)
        raise
    other = 2 if batch != 2 else 1
    if _run_generator(model, input_shape, other, first_batch=batch) != out:
        raise GencompressError(f"model output shape changes with the batch size: {batch} gives Nx{describe_shape(out)}")
    return out


def _check_batch_dimension(model: nn.Module, input_shape: tuple[int, ...], batch: int) -> None:
    """A model that fails on --input-shape 3x64x64 but runs on 1x3x64x64 was given one image's
    shape without the batch: say that, not PyTorch's "Got 3D input"."""
    given = (batch, *input_shape)
    if len(given) != 3:  # an image's C x H x W: the one case where a forgotten batch looks like a shape
        return
    try:
        _run_generator(model, given, 1)
    except GencompressError:
        return  # not that: the caller raises the model's own error
    raise GencompressError(f"input shape {describe_shape(given)} does not fit the model: the shape needs a leading batch dimension, "
                           f"e.g. --input-shape 1x{describe_shape(given)}")


def _run_generator(model: nn.Module, input_shape: tuple[int, ...], batch: int, first_batch: int | None = None) -> tuple[int, ...]:
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            y = model(x)
    except Exception as exc:
        first = first_line(exc)
        if first_batch is not None:  # it ran at the user's batch: only the batch size is at fault
            raise GencompressError(
                f"the model runs at batch {first_batch} but not at batch {batch} ({first}); the exported graph needs any batch size"
            ) from None
        raise GencompressError(f"input shape {describe_shape((batch, *input_shape))} does not fit the model: {first}") from None
    if not isinstance(y, torch.Tensor) or y.dim() != 4 or not y.is_floating_point():
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        # diffusers returns DecoderOutput(sample=...), many nets a tuple: say how to wrap it
        hint = ("; return the image tensor itself, e.g. a wrapper whose forward returns `.sample`"
                if isinstance(getattr(y, "sample", None), torch.Tensor) else
                "; return the image tensor itself, e.g. a wrapper whose forward returns the first item"
                if isinstance(y, (tuple, list)) and y and isinstance(y[0], torch.Tensor) else "")
        raise GencompressError(f"model output is not an N x C x H x W image tensor (got {got}){hint}")
    if y.shape[0] != batch:
        raise GencompressError(f"model output batch {y.shape[0]} does not match input batch {batch}")
    if not torch.isfinite(y).all():
        raise GencompressError("model output contains NaN or Inf")
    return tuple(y.shape[1:])

"""The user's inputs and the model's input/output spec: what every stage runs the model on.

`--data SPEC` names the inputs a generator meets in use:

- `folder:PATH`  images (png, jpg, ...), for image-input generators: each is resized to cover
  the model's H x W and centre-cropped, converted to its channel count (1: grey, 3: RGB) and
  mapped from [0, 1] to the model's declared input range. Images carry no range of their own, so
  both ranges must be declared (`--input-range`, `--output-range`, or the bundle's manifest from
  an earlier stage; a zoo model's are [-1, 1]): a guess would judge a [0, 1] net silently wrong;
- `npz:PATH` or `npz:PATH#key`  an array N x (the model's per-sample input shape), latents or
  images, used as they are (one array in the file, or the named one); for a class-conditional
  model (`--classes N`), arrays `z` (N x z's shape) and `y` (N integer labels in [0, N)), packed
  as its input (gencompress/conditional.py), or one array already packed N x (prod(z) + 1);
- `package.module:callable`  returns an iterable of batches (tensors or arrays, N x input
  shape): the convention of modelopt's `forward_loop` and NNCF's `Dataset`.

Split rule (one for every command): a seeded random permutation of all the samples (seed
`SPLIT_SEED`, recorded); its first `eval_samples` judge quality (PSNR, the report grid, export
verification) and the rest calibrate INT8 and drive distillation, so the two never overlap and
evaluation sees every part of the data, not the first files in name order (photo_a_*.png only).
The permutation depends on the count and the seed alone, so every command splits the same data
the same way. With fewer than 2 x `eval_samples` samples, half evaluates and half calibrates
(stated in the record); fewer than 2 samples is an error.

The record (`source_record`) names the data in the manifest: kind, path or spec, count and
the sha256 of the float32 inputs after preprocessing (so two bundles calibrated on the same
images show the same hash whatever the files' names).
Without `--data`, inputs are drawn from the input spec (gencompress.data.draw_inputs) and
the record says so.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .conditional import check_labels, pack
from .data import draw_inputs, image_files, read_image, resize_center
from .errors import GencompressError, first_line
from .loading import describe_shape, resolve_import_spec
from .progress import log

INPUT_KINDS = ("latent", "image")
EVAL_SAMPLES = 64  # the evaluation split of commands with no --eval-samples of their own (prune)
MAX_CALLABLE_SAMPLES = 100_000  # a loader that never ends is read this far, no further
SPLIT_SEED = 0  # the evaluation/calibration permutation's: one for every command (see the split rule above)
# Outputs this far outside the declared range (in widths of the range) mean the range is wrong.
OUTPUT_RANGE_SLACK = 0.5
# The FP32 outputs' 0.1-99.9th percentile span should cover this much of the output range, else a
# warning: a [0, 1] net judged on the default [-1, 1] fills at most half of it (PSNR 6 dB too kind).
OUTPUT_FILL_MIN = 0.6
# More than this fraction of the outputs beyond 1% of the range's width outside it: a warning.
OUTPUT_OUTSIDE_MAX = 0.001


@dataclass
class UserData:
    """Disjoint evaluation and calibration inputs from `--data`, and the record naming them."""

    evaluation: torch.Tensor
    rest: torch.Tensor  # calibration and distillation inputs
    record: dict

    def calibration(self, n: int) -> torch.Tensor:
        return self.rest[:n]

    def describe(self, use: str, n: int) -> str:
        return f"{n} {use} inputs from {self.record['kind']}:{self.record['path']} (sha256 {self.record['sha256'][:12]})"


# --- specs ----------------------------------------------------------------------------


def parse_range(text: str, what: str, allow_measured: bool = False) -> list[float] | str:
    """'0,1' -> [0.0, 1.0] (low < high, finite); 'measured' where allowed."""
    if allow_measured and text.strip().lower() == "measured":
        return "measured"
    parts = text.replace(":", ",").split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise GencompressError(f"{what} {text!r} is not like 0,1 (low,high){' or measured' if allow_measured else ''}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise GencompressError(f"{what} {text!r}: need finite low < high")
    return [low, high]


def apply_io_spec(manifest: dict, input_kind: str | None = None, input_range: list[float] | None = None,
                  input_std: float | None = None, output_range: list[float] | str | None = None) -> None:
    """Write the user's input/output spec into a manifest (only what was given changes)."""
    spec, out = manifest["input"], manifest["output"]
    if input_range is not None and input_std is not None:
        raise GencompressError("--input-range and --input-std exclude each other (a uniform range or a normal spread)")
    if input_std is not None and not (math.isfinite(input_std) and input_std > 0):
        raise GencompressError(f"--input-std must be a positive number (got {input_std})")
    if input_kind is not None:
        if input_kind not in INPUT_KINDS:
            raise GencompressError(f"--input-kind must be one of {', '.join(INPUT_KINDS)}")
        spec["kind"] = input_kind
        spec["name"] = "latent" if input_kind == "latent" else "input_image"  # the ONNX input's name; "image" is the output's
        if input_kind == "image" and input_std is None:
            spec["distribution"] = "uniform"  # an image input is drawn uniformly over its range
            spec.setdefault("range", [-1.0, 1.0])
    if input_range is not None:
        spec["distribution"], spec["range"], spec["range_from"] = "uniform", list(input_range), "declared"
        spec.pop("std", None)
    if input_std is not None:
        spec["distribution"], spec["std"] = "normal", float(input_std)
        spec.pop("range", None)
        spec.pop("range_from", None)
    if output_range == "measured":
        out["range_from"] = "measured"
    elif output_range is not None:
        out["range"], out["range_from"] = list(output_range), "declared"
    if spec.get("kind") == "image" and len(spec["shape"]) != 3:
        raise GencompressError(f"--input-kind image needs a C x H x W input; the model takes {describe_shape(spec['shape'])}")


def input_range(manifest: dict) -> tuple[float, float]:
    low, high = manifest["input"].get("range", (-1.0, 1.0))
    return float(low), float(high)


def output_range(manifest: dict) -> tuple[float, float]:
    low, high = manifest["output"].get("range", (-1.0, 1.0))
    return float(low), float(high)


def peak(manifest: dict) -> float:
    """PSNR's peak-to-peak value: the width of the output range."""
    low, high = output_range(manifest)
    return high - low


def settle_output_range(manifest: dict, outputs: np.ndarray) -> None:
    """Measure the output range where asked (`measured`); refuse one the user declared that the
    outputs far exceed. The default [-1, 1] is an assumption, not a declaration: models without a
    Tanh (an SD VAE decoder) overshoot it and are judged on it, as before."""
    lo, hi = float(np.min(outputs)), float(np.max(outputs))
    if manifest["output"].get("range_from") == "measured":
        manifest["output"]["range"] = [lo, hi] if hi > lo else [lo, lo + 1.0]
        return
    if manifest["output"].get("range_from") != "declared":
        return
    low, high = output_range(manifest)
    slack = OUTPUT_RANGE_SLACK * (high - low)
    if lo < low - slack or hi > high + slack:
        raise GencompressError(f"model outputs span [{lo:.3g}, {hi:.3g}], far outside the output range [{low:g}, {high:g}]; "
                               "pass --output-range LOW,HIGH or --output-range measured")


def output_range_warnings(manifest: dict, outputs: np.ndarray) -> list[str]:
    """What the build says when the FP32 outputs do not fit the output range they are judged on:
    filling only part of it (PSNR's peak too wide, grid washed out) or spilling past it (under the
    far-outside error of settle_output_range). A measured range fits by construction."""
    if manifest["output"].get("range_from") == "measured":
        return []
    low, high = output_range(manifest)
    width = high - low
    given = "" if manifest["output"].get("range_from") == "declared" else ", the default (no --output-range was given)"
    fix = f"PSNR's peak ({width:g}) and the grid assume that range; pass --output-range LOW,HIGH or --output-range measured"
    p_lo, p_hi = (float(q) for q in np.quantile(outputs, [0.001, 0.999]))
    warnings = []
    if (p_hi - p_lo) < OUTPUT_FILL_MIN * width:
        warnings.append(f"the FP32 outputs fill only {(p_hi - p_lo) / width:.0%} of the output range [{low:g}, {high:g}]{given} "
                        f"(0.1-99.9th percentiles {p_lo:.3g} to {p_hi:.3g}): {fix}")
    outside = float(np.mean((outputs < low - 0.01 * width) | (outputs > high + 0.01 * width)))
    if outside > OUTPUT_OUTSIDE_MAX:
        warnings.append(f"{outside:.1%} of the FP32 outputs lie outside the output range [{low:g}, {high:g}]{given} "
                        f"(they span {float(np.min(outputs)):.3g} to {float(np.max(outputs)):.3g}): {fix}")
    return warnings


def require_ranges_for_images(manifest: dict) -> None:
    """Folder images carry no range of their own: mapped to a guessed input range and judged on a
    guessed output range, a [0, 1] net reads photos as [-1, 1] and scores PSNR with a peak of 2,
    and nothing shows it. So the ranges must be declared (now, or in the bundle's manifest by an
    earlier stage); a zoo model's are its own ([-1, 1], trained on digits mapped there)."""
    if manifest.get("architecture", {}).get("kind") == "zoo":
        return
    missing = [option for option, known in (("--input-range", manifest["input"].get("range_from") == "declared"),
                                            ("--output-range", manifest["output"].get("range_from") in ("declared", "measured")))
               if not known]
    if missing:
        unit, signed = (" ".join(f"{option} {r}" for option in missing) for r in ("0,1", "-1,1"))
        raise GencompressError(f"folder images need the model's {' and '.join(m.removeprefix('--') for m in missing)}: "
                               f"pass {unit} for a [0, 1] net, or {signed} for a [-1, 1] net")


# --- --data ---------------------------------------------------------------------------


def parse_data_spec(text: str) -> tuple[str, str, str | None]:
    """'folder:PATH' | 'npz:PATH[#key]' | 'pkg.module:callable' -> (kind, path or spec, key);
    a bare existing folder or .npz file reads as folder:PATH or npz:PATH (prepare_inputs says so)."""
    kind, sep, rest = text.partition(":")
    if kind == "folder" and rest:
        return "folder", rest, None
    if kind == "npz" and rest:
        path, _, key = rest.partition("#")
        return "npz", path, key or None
    from .loading import IMPORT_SPEC

    if sep and IMPORT_SPEC.match(text):
        return "callable", text, None
    if Path(text).is_dir():
        return "folder", text, None
    if Path(text).suffix == ".npz" and Path(text).is_file():
        return "npz", text, None
    raise GencompressError(f"--data {text!r} is not folder:PATH, npz:PATH[#key] or package.module:callable")


def load_data(text: str, input_spec: dict, max_samples: int = MAX_CALLABLE_SAMPLES) -> tuple[torch.Tensor, dict]:
    """All inputs `text` names, checked against the model's input spec, and their record."""
    kind, where, key = parse_data_spec(text)
    shape = tuple(input_spec["shape"])
    classes = input_spec.get("classes")
    if kind == "folder":
        _refuse_folder_for_classes(where, input_spec)
        inputs = _folder(Path(where), shape, input_range({"input": input_spec}))
    elif kind == "npz" and classes and key is None and _has_z_and_y(Path(where)):
        inputs = _npz_z_y(Path(where), input_spec)
    elif kind == "npz":
        inputs = _npz(Path(where), key, shape)
    else:
        inputs = _callable(where, shape, max_samples)
    if not torch.isfinite(inputs).all():
        raise GencompressError(f"--data {text}: the inputs contain NaN or Inf")
    if classes:  # packed inputs given whole (npz array or callable) must carry valid class indices too
        check_labels(inputs[:, -1], int(classes), f"--data {text}")
    inputs = inputs.float().contiguous()
    record = {"kind": kind, "path": str(Path(where).resolve()) if kind != "callable" else where, "count": int(len(inputs)),
              "sha256": hashlib.sha256(inputs.numpy().tobytes()).hexdigest(), "hashed": "float32 inputs after preprocessing"}
    if key:
        record["key"] = key
    if classes:
        record["packing"] = input_spec["packing"]
    return inputs, record


def _refuse_folder_for_classes(where: str, input_spec: dict) -> None:
    if input_spec.get("classes"):
        raise GencompressError(f"--data folder:{where} gives images; a class-conditional model (--classes) takes "
                               "latents and labels: pass npz:FILE with arrays z and y")


def _has_z_and_y(path: Path) -> bool:
    """An npz naming a conditional model's latents `z` and labels `y` (else: one packed array)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {"z", "y"} <= set(npz.keys())
    except (OSError, ValueError, EOFError):
        return False  # _npz reports the unreadable file


def _npz_z_y(path: Path, input_spec: dict) -> torch.Tensor:
    """Arrays z (N x z_shape) and y (N integer labels) packed as the wrapper's input."""
    z = _npz(path, "z", tuple(input_spec["z_shape"]))
    with np.load(path, allow_pickle=False) as npz:
        y = npz["y"]
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise GencompressError(f"npz:{path}: y must be one integer label per sample (got {y.dtype} of shape {describe_shape(y.shape)})")
    if len(y) != len(z):
        raise GencompressError(f"npz:{path}: y has {len(y)} labels but z has {len(z)} latents; they must match")
    check_labels(y, int(input_spec["classes"]), f"npz:{path} y")
    return pack(z, torch.from_numpy(y.astype(np.float64)))


def _check_image_input(path: Path | str, shape: tuple[int, ...]) -> None:
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise GencompressError(f"--data folder:{path} gives images (1 or 3 x H x W); the model takes {describe_shape(shape)} inputs")


def _folder(path: Path, shape: tuple[int, ...], value_range: tuple[float, float]) -> torch.Tensor:
    _check_image_input(path, shape)
    channels, size = shape[0], (shape[1], shape[2])
    images = [resize_center(read_image(f, channels).unsqueeze(0), size)[0] for f in image_files(path)]
    low, high = value_range
    return torch.stack(images) * (high - low) + low


def _npz(path: Path, key: str | None, shape: tuple[int, ...]) -> torch.Tensor:
    if not path.is_file():
        raise GencompressError(f"--data npz:{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            if key is None and len(keys) != 1:
                raise GencompressError(f"{path} holds arrays {keys}; name one: npz:{path}#KEY")
            if key is not None and key not in keys:
                raise GencompressError(f"{path} has no array {key!r} (it holds {keys})")
            arr = npz[key or keys[0]]
    except (OSError, ValueError, EOFError) as exc:
        raise GencompressError(f"cannot read npz {path}: {first_line(exc)}") from None
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise GencompressError(f"{path}: array of {arr.dtype} is not numbers")
    return _check_batch(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), shape, f"npz:{path}")


def _check_batch(x: torch.Tensor, shape: tuple[int, ...], where: str) -> torch.Tensor:
    if x.dim() != len(shape) + 1:
        raise GencompressError(f"{where}: inputs of shape {describe_shape(x.shape)} (rank {x.dim()}) do not fit the model's "
                               f"input Nx{describe_shape(shape)} (rank {len(shape) + 1})")
    if tuple(x.shape[1:]) != shape:
        raise GencompressError(f"{where}: inputs of shape Nx{describe_shape(x.shape[1:])} do not fit the model's input "
                               f"Nx{describe_shape(shape)}")
    if len(x) == 0:
        raise GencompressError(f"{where} holds no samples")
    return x


def _callable(spec: str, shape: tuple[int, ...], max_samples: int) -> torch.Tensor:
    func = resolve_import_spec(spec)
    batches, count = [], 0
    try:
        for batch in func():
            x = batch if isinstance(batch, torch.Tensor) else torch.as_tensor(np.asarray(batch, dtype=np.float32))
            batches.append(_check_batch(x.detach().float().cpu(), shape, f"{spec} batch {len(batches)}"))
            count += len(x)
            if count >= max_samples:
                break
    except GencompressError:
        raise
    except (Exception, SystemExit) as exc:  # the user's loader: any failure is theirs to fix
        raise GencompressError(f"--data {spec} failed: {type(exc).__name__}: {first_line(exc)}") from None
    if not batches:
        raise GencompressError(f"--data {spec} yielded no batches")
    return torch.cat(batches)[:max_samples]


def split(inputs: torch.Tensor, eval_samples: int, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(evaluation, rest, rule): a random eval_samples of all the samples evaluate, the others
    calibrate, in the order of one seeded permutation (see module docstring)."""
    n = len(inputs)
    if n < 2:
        raise GencompressError(f"--data has {n} sample; it needs at least 2 (one to evaluate on, one to calibrate on)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = eval_samples if n >= 2 * eval_samples else n // 2
    rule = f"a random {k} of the {n} (seed {seed}) evaluate, the other {n - k} calibrate"
    if k < eval_samples:
        rule = f"only {n} samples (< 2 x {eval_samples}): {rule}"
    return inputs[order[:k]], inputs[order[k:]], rule


def user_data(spec: str | None, input_spec: dict, eval_samples: int, max_samples: int = MAX_CALLABLE_SAMPLES) -> UserData | None:
    """`--data SPEC` loaded, checked and split; None without --data (inputs are then drawn)."""
    if not spec:
        return None
    inputs, record = load_data(spec, input_spec, max_samples)
    evaluation, rest, rule = split(inputs, eval_samples)
    record.update({"evaluation_samples": len(evaluation), "calibration_samples": len(rest), "split": rule,
                   "split_seed": SPLIT_SEED})
    return UserData(evaluation, rest, record)


def prepare_inputs(manifest: dict, data_spec: str | None, io_spec: dict, eval_samples: int) -> UserData | None:
    """Apply the user's input/output spec to a manifest, then load and split --data; the
    manifest names the data. Every command calls this before any work."""
    kind, where, _ = parse_data_spec(data_spec) if data_spec else (None, None, None)
    if kind in ("folder", "npz") and not data_spec.startswith(f"{kind}:"):
        log(f"--data {data_spec}: reading it as {kind}:{data_spec}")
    if kind == "folder":  # named before --input-kind image would be refused for the packed shape
        _refuse_folder_for_classes(where, manifest["input"])
    if kind == "folder" and not io_spec.get("input_kind"):
        io_spec = {**io_spec, "input_kind": "image"}  # a folder of images feeds an image input
    apply_io_spec(manifest, **io_spec)
    if kind == "folder":  # a model that takes no images hears that first, a missing or empty folder next; then the ranges
        _check_image_input(where, tuple(manifest["input"]["shape"]))
        image_files(Path(where))
        require_ranges_for_images(manifest)
    data = user_data(data_spec, manifest["input"], eval_samples)
    if data is not None:
        manifest["data"] = data.record
    return data


def evaluation_inputs(data: UserData | None, input_spec: dict, n: int, seed: int) -> tuple[np.ndarray, dict]:
    """What quality is judged on: the user's evaluation samples, or n inputs drawn from the spec."""
    if data is not None:
        return data.evaluation.numpy(), data.record
    return draw_inputs(tuple(input_spec["shape"]), n, input_spec, seed).numpy(), drawn_record(input_spec, n, seed)


def drawn_record(input_spec: dict, n: int, seed: int) -> dict:
    dist = input_spec["distribution"]
    how = f"N(0, {input_spec.get('std', 1.0):g}^2)" if dist == "normal" else "U({:g}, {:g})".format(*input_spec.get("range", (-1, 1)))
    record = {"kind": "drawn", "distribution": how, "count": n, "seed": seed}
    if input_spec.get("classes"):
        how += f", class uniform in 0..{input_spec['classes'] - 1}"
        record.update(distribution=how, packing=input_spec["packing"])
    return record


def describe_record(record: dict) -> str:
    """One line for reports: where the inputs came from."""
    packed = f"; each input is packed: {record['packing']}" if record.get("packing") else ""
    if record["kind"] == "drawn":
        return f"{record['count']} inputs drawn {record['distribution']} (seed {record['seed']}), not the user's data{packed}"
    return f"{record['kind']}:{record['path']} ({record['count']} samples, sha256 {record['sha256'][:12]}; {record['split']}{packed})"

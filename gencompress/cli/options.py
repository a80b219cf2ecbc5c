"""Reusable option groups (after Polygraphy): commands subscribe to what they need."""
from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
from click.core import ParameterSource

from gencompress import defaults
from gencompress.atomic import check_output_dir, claim_output
from gencompress.errors import GencompressError


def shape_option(ctx, param, value):
    if value is None:
        return None
    from gencompress.loading import parse_shape  # imports torch: not at --help time

    try:
        return parse_shape(value)
    except GencompressError as exc:
        raise click.BadParameter(str(exc)) from None


def fraction(ctx, param, value):
    """A ratio option such as --prune: a fraction in (0, 1), said in the option's own name."""
    if value is not None and not 0.0 < value < 1.0:
        raise click.BadParameter(f"{value:g} is not a fraction in (0, 1); 0.5 removes half of each layer's channels")
    return value


def model_options(f):
    for decorator in reversed(
        [
            click.option("--model", "model", default=None, metavar="SPEC",
                         help="Bundle folder, zoo name, package.module:callable, TorchScript or .onnx file. Default: the zoo DCGAN, shipped trained on digits."),
            click.option("--input-shape", callback=shape_option, metavar="NxCxHxW",
                         help="Input shape with batch, e.g. 1x100x1x1 (from the manifest for bundles and zoo names)."),
            click.option("--checkpoint", type=click.Path(dir_okay=False),
                         help="Weights (safetensors or weights-only .pt) for a zoo name or an import spec, loaded strictly: "
                              "a missing, unexpected or mis-shaped layer is refused by name."),
            click.option("--trust-pickle", is_flag=True, help="Allow full unpickling of --checkpoint. Runs code from the file: only for files you trust."),
            click.option("--random-init", is_flag=True, help="With a zoo name: its own random initialisation instead of the shipped digits-trained weights."),
            click.option("--classes", type=int, default=None, metavar="N",
                         help="Class-conditional model: forward(z, y) with y in [0, N). Its input becomes one packed tensor "
                              "[z flattened, class index]; --input-shape gives z's shape."),
        ]
    ):
        f = decorator(f)
    return f


SHORTHANDS = {f"--{p}": p for p in defaults.PRECISIONS}  # `build --int8`: the spelling the toolkit is known by


def precision_option(default: str | None = "int8", help: str = "Precision of the graph written."):
    """--precision int8|fp16|fp32, the one name of a graph's precision (`sweep` takes a list of them),
    with its shorthands --int8, --fp16, --fp32: `build --int8` is `build --precision int8`.
    Two different precisions given together are a usage error, never the last one silently."""

    def decorate(f):
        @functools.wraps(f)
        def command(*args, precision, **kwargs):
            chosen = {precision} if precision is not None and given(click.get_current_context(), "precision") else set()
            chosen |= {p for p in defaults.PRECISIONS if kwargs.pop(f"precision_{p}")}
            if len(chosen) > 1:
                raise click.UsageError(f"{' and '.join(sorted(chosen))} contradict each other; give one precision")
            return f(*args, precision=chosen.pop() if chosen else precision, **kwargs)

        for p in reversed(defaults.PRECISIONS):
            command = click.option(f"--{p}", f"precision_{p}", is_flag=True, help=f"Same as --precision {p}.")(command)
        return click.option("--precision", type=click.Choice(defaults.PRECISIONS), default=default, show_default=default is not None,
                            help=help)(command)

    return decorate


def _is_main_rank() -> bool:
    """Under torchrun, RANK names this process; rank 0 alone writes outputs."""
    return os.environ.get("RANK", "0") == "0"


def writes_output(f):
    """The command writes the folder its `out` parameter names: check it and hold its lock
    for the whole run, before any work (gencompress.atomic.claim_output). A second run
    naming the same folder meanwhile is refused, exit 2, rather than silently overwritten
    or overwriting. Under torchrun the other ranks only check it."""

    @functools.wraps(f)
    def command(*args, **kwargs):
        if not _is_main_rank():
            check_output_dir(kwargs["out"])
            return f(*args, **kwargs)
        with claim_output(kwargs["out"]):
            return f(*args, **kwargs)

    return command


def device_profile_option(default: str | None = None, help: str = "Device profile of the roofline estimate (see `gencompress estimate --list-devices`)."):
    """--device PROFILE: a device profile of benchmarks/devices.py, the one meaning of --device in build and estimate."""
    return click.option("--device", "device", default=default, show_default=default is not None, metavar="PROFILE", help=help)


def emit_json(data) -> None:
    """Results go to stdout as JSON (non-finite floats as strings); progress and messages went to stderr."""
    from gencompress.benchmarks.results_io import dumps

    sys.stdout.write(dumps(data))


def calib_from_option(f):
    """--calib-from: where INT8 calibration inputs come from (compress/calibration.py)."""
    return click.option(
        "--calib-from", type=click.Choice(["auto", "latents", "encoder"]), default="auto", show_default=True,
        help="Calibration inputs: latents drawn like the model's, or real data through a VAE bundle's encoder "
             "(auto: the encoder where the bundle has one).",
    )(f)


@dataclass
class DataOptions:
    """What the shared data options parsed: --data SPEC and apply_io_spec's keywords."""

    spec: str | None = None
    io_spec: dict = field(default_factory=dict)


def _range_option(allow_measured: bool, what: str):
    def parse(ctx, param, value):
        if value is None:
            return None
        from gencompress.inputs import parse_range

        try:
            return parse_range(value, what, allow_measured)
        except GencompressError as exc:
            raise click.BadParameter(str(exc)) from None

    return parse


def data_options(f):
    """The user's data and the model's input/output spec (gencompress/inputs.py), for every
    command that runs the model; the command receives one `data: DataOptions`."""

    @functools.wraps(f)
    def wrapper(*args, data, input_kind, input_range, input_std, output_range, **kwargs):
        given = {"input_kind": input_kind, "input_range": input_range, "input_std": input_std, "output_range": output_range}
        return f(*args, data=DataOptions(data, {k: v for k, v in given.items() if v is not None}), **kwargs)

    for decorator in reversed(
        [
            click.option("--data", "data", default=None, metavar="SPEC",
                         help="Your inputs: folder:PATH (images), npz:PATH[#key] (N x input shape) or package.module:callable "
                              "(yields batches). The first --eval-samples judge quality, the rest calibrate and distil."),
            click.option("--input-kind", type=click.Choice(["latent", "image"]), default=None,
                         help="What the model takes (image: drawn uniformly over --input-range; shown in the report grid)."),
            click.option("--input-range", callback=_range_option(False, "--input-range"), metavar="LOW,HIGH",
                         help="Input range, e.g. 0,1 for images (folder images are mapped to it; drawn inputs are uniform in it)."),
            click.option("--input-std", type=float, default=None, help="Spread of N(0, std^2) latents, e.g. 5 for an SD VAE's latents."),
            click.option("--output-range", callback=_range_option(True, "--output-range"), metavar="LOW,HIGH|measured",
                         help="Output range (default -1,1): PSNR's peak and the grid's scale. measured: from the FP32 outputs."),
        ]
    ):
        wrapper = decorator(wrapper)
    return wrapper



# --- value lists ------------------------------------------------------------------------


def int_list(ctx, param, value):
    try:
        return tuple(int(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None


def str_list(ctx, param, value):
    return tuple(v.strip() for v in str(value).split(",") if v.strip())


def float_list(ctx, param, value):
    try:
        return tuple(float(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None


def _options(f, decorators):
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


# --- output: --out DIR and --json FILE ------------------------------------------------------


def out_option(default: str | None = None, help: str = "Output bundle folder (written atomically)."):
    # a plain string: writes_output checks the path (gencompress.atomic), with messages click's Path lacks (a NUL byte, a link)
    return click.option("--out", default=default, required=default is None, show_default=default is not None, metavar="DIR", help=help)


def _json_target(ctx, param, value):
    """--json FILE is checked before any work: a run of minutes must not end unable to write it."""
    if value is None or value == "-":
        return value
    if value.startswith("-"):  # `--json --out x`: the old flag spelling, not a file named "--out"
        raise click.BadParameter(f"takes a FILE (- for stdout), not {value}")
    if "\0" in value:
        raise click.BadParameter("the path holds a NUL byte")
    path = Path(value)
    if path.is_dir():
        raise click.BadParameter(f"{value} is a folder; name a file (or - for stdout)")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise click.BadParameter(f"folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise click.BadParameter(f"folder {parent} is not writable")
    return value


def json_option(what: str = "the results", required: bool = False):
    """--json FILE, in every command that has results: FILE written atomically, - for stdout."""
    return click.option("--json", "json_out", default=None, required=required, metavar="FILE", callback=_json_target,
                        help=f"Write {what} as JSON to FILE (- for stdout).")


def shows_progress(json_out: str | None) -> bool:
    """Progress bars and stage notes on stderr, unless --json - puts the results on stdout: a run whose
    output another program reads (`... --json - | jq`) is not watched, so it stays quiet."""
    return json_out != "-"


def write_json(json_out: str, data) -> None:
    """--json's FILE (atomically, non-finite floats as strings), or stdout for '-'."""
    from gencompress.atomic import atomic_write_text
    from gencompress.benchmarks.results_io import dumps

    if json_out == "-":
        emit_json(data)
        return
    atomic_write_text(json_out, dumps(data))
    click.echo(f"wrote {json_out}", err=True)


# --- timing: batches, calls, time cap, threads ---------------------------------------------


def threads_option(default: int = 2):
    return click.option("--threads", default=default, show_default=True, type=click.IntRange(min=1),
                        help="CPU threads of ONNX Runtime / PyTorch while timing and running.")


def batch_option(default: str):
    return click.option("--batch", "batches", default=default, show_default=True, callback=int_list, metavar="N[,N...]",
                        help="Comma-separated batch sizes to time.")


def timing_options(batches: str = "1,8,32", iters: int = 50, warmup: int = 10, seconds: float = 10.0, note: str = ""):
    """How latency is timed (one timing function serves build, bench and sweep)."""
    return lambda f: _options(f, [
        batch_option(batches),
        click.option("--iters", default=iters, show_default=True, type=click.IntRange(min=1), help="Timed calls per latency row."),
        click.option("--warmup", default=warmup, show_default=True, type=click.IntRange(min=0), help="Untimed calls first."),
        click.option("--bench-seconds", default=seconds, show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help=f"Time cap of each latency row: --iters calls or this long, whichever ends first (at least 3 calls){note}."),
        threads_option(),
    ])


# --- samples: --eval-samples and FID/KID ---------------------------------------------------


def eval_samples_option(default: int | None, help: str):
    """--eval-samples: the inputs that judge quality against the original (PSNR/SSIM), with --data its first ones."""
    return click.option("--eval-samples", default=default, show_default=default is not None, type=click.IntRange(min=1), help=help)


def fid_samples_option(default: int, minimum: int = 0, help: str = "Generated samples for FID/KID against real data (0: skip)."):
    return click.option("--fid-samples", default=default, show_default=True, type=click.IntRange(min=minimum), help=help)


def fid_options(default: int, minimum: int = 0, help: str = "Generated samples for FID/KID against real data (0: skip)."):
    """--fid-samples and --inception-weights: FID/KID against real data, no download."""
    return lambda f: _options(f, [
        fid_samples_option(default, minimum, help),
        click.option("--inception-weights", default=None, type=click.Path(dir_okay=False),
                     help="Local TorchScript Inception feature extractor for FID/KID (default: one trained for the data, cached)."),
    ])


def realtime_options(f):
    return _options(f, [
        click.option("--fps", type=float, default=None, help="Real-time verdict against this frame rate."),
        click.option("--budget-ms", type=float, default=None, help="Real-time verdict against this per-frame budget."),
    ])


# --- compression: pruning, distillation, INT8 ----------------------------------------------


def prune_option(required: bool = False):
    """--prune FRACTION: the channel ratio removed (a list in `sweep`, which sweeps it)."""
    return click.option("--prune", "prune_ratio", type=float, default=None, required=required, callback=fraction, metavar="FRACTION",
                        help="Prune this fraction of each layer's channels (Torch-Pruning), then distil.")


def distill_steps_option(default: int = defaults.DISTILL_STEPS):
    return click.option("--distill-steps", default=default, show_default=True, type=click.IntRange(min=0),
                        help="Distillation steps after pruning (0: none).")


def seed_option(default: int = 0):
    return click.option("--seed", default=default, show_default=True, type=int, help="Random seed.")


def target_option(f):
    return click.option("--target", type=click.Choice(defaults.TARGETS), default=defaults.DEFAULT_TARGET, show_default=True,
                        help="Where it will run: ops are checked for it; Jetson targets add build_engine.sh, run_bench.sh, README.md.")(f)


def int8_options(calib_samples: int | None):
    """How INT8 is calibrated and which layers stay float under the quality floor (build, quantize)."""
    calib_help = ("Calibration inputs for INT8" + ("." if calib_samples else
                  " [default: 256, fewer for a big model: about 1000 GMAC in all, at least 32]."))
    return lambda f: _options(f, [
        click.option("--calibrator", type=click.Choice(defaults.CALIBRATOR_CHOICES), default=defaults.DEFAULT_CALIBRATOR, show_default=True,
                     help="INT8 range calibration (auto: the best on held-out inputs; mse is modelopt-only, not --target cpu)."),
        click.option("--calib-samples", default=calib_samples, show_default=calib_samples is not None, type=click.IntRange(min=1), help=calib_help),
        calib_from_option,
        click.option("--deconv-weight-axis", type=click.Choice(["0", "1"]), default="1", show_default=True,
                     help="Per-channel axis of ConvTranspose weight scales (1: output channels)."),
        click.option("--min-psnr", type=float, default=None,
                     help="Quality floor in dB vs FP32, replacing the default (PSNR >= 35 dB and SSIM >= 0.97): "
                          "the fewest most sensitive layers stay float."),
        click.option("--no-quality-floor", "no_floor", is_flag=True, help="Keep every layer INT8, whatever the quality (no floor, no search)."),
        click.option("--bias-correction", is_flag=True,
                     help="Empirical bias correction after calibration, kept where it scores better (modelopt form: not --target cpu)."),
        click.option("--qat-steps", default=0, show_default=True, type=click.IntRange(min=0),
                     help="Quantisation-aware fine-tuning steps distilled from FP32 (modelopt form: not --target cpu)."),
    ])


def checkpointing_options(what: str):
    """--checkpoint-dir, --checkpoint-every, --resume: long runs that survive an interruption."""
    return lambda f: _options(f, [
        click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None, help=f"{what}. Default: OUT.ckpt."),
        click.option("--checkpoint-every", default=200, show_default=True, type=click.IntRange(min=1), help="Steps between checkpoints."),
        click.option("--resume", is_flag=True, help="Continue from the newest complete checkpoint."),
    ])


# --- options that do not apply -----------------------------------------------------------


def given(ctx: click.Context, name: str) -> bool:
    """The user named this option (not its default): an option that does not apply is refused, never ignored."""
    source = ctx.get_parameter_source(name)
    return source is not None and source not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def refuse_unless(ctx: click.Context, applies: bool, names: tuple[str, ...], why: str) -> None:
    """A usage error (exit 2, before any work) for the first of `names` given where it does not apply."""
    if applies:
        return
    for name in names:
        if given(ctx, name):
            raise click.UsageError(f"--{name.replace('_', '-')} does not apply here: {why}", ctx)


# Spellings removed when each idea got one name: a hint after click's "no such option".
# (command or None for every command, old spelling) -> what to write now.
RENAMED = {
    ("prune", "--ratio"): "--prune", ("export", "--min-psnr"): "--verify-psnr", ("export", "--verify-samples"): "--eval-samples",
    ("bench", "--quality-samples"): "--eval-samples", ("bench", "--data-samples"): "--fid-samples", ("sweep", "--data-samples"): "--fid-samples",
    ("bench", "--device"): "--torch-device", ("bench", "--precision"): "--torch-dtype", ("sweep", "--estimate"): "--device",
    ("train", "--eval-samples"): "--fid-samples",
}


def renamed_hint(command: str | None, option: str | None) -> str:
    new = RENAMED.get((command, option)) or RENAMED.get((None, option))
    return f" ({option} is now {new})" if new else ""

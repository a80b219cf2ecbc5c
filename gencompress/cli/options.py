"""Reusable option groups (after Polygraphy): commands subscribe to what they need."""
from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass, field

import click

from gencompress.atomic import check_output_dir, claim_output
from gencompress.errors import GencompressError
from gencompress.loading import parse_shape


def shape_option(ctx, param, value):
    if value is None:
        return None
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
                         help="Bundle folder, zoo name, package.module:callable, TorchScript or .onnx file. Default: the zoo DCGAN trained on digits."),
            click.option("--input-shape", callback=shape_option, metavar="NxCxHxW",
                         help="Input shape with batch, e.g. 1x100x1x1 (from the manifest for bundles and zoo names)."),
            click.option("--checkpoint", type=click.Path(dir_okay=False), help="State dict for an import spec (safetensors or weights-only .pt)."),
            click.option("--trust-pickle", is_flag=True, help="Allow full unpickling of --checkpoint. Runs code from the file: only for files you trust."),
            click.option("--random-init", is_flag=True, help="With a zoo name: random weights instead of training on digits."),
            click.option("--classes", type=int, default=None, metavar="N",
                         help="Class-conditional model: forward(z, y) with y in [0, N). Its input becomes one packed tensor "
                              "[z flattened, class index]; --input-shape gives z's shape."),
        ]
    ):
        f = decorator(f)
    return f


PRECISIONS = ("int8", "fp16", "fp32")
_PRECISION_HELP = {"int8": "INT8 (Q/DQ).", "fp16": "FP16.", "fp32": "FP32."}


def precision_option(default: str = "int8"):
    """--int8 | --fp16 | --fp32, passed on as `precision`. Naming two is a usage error:
    click's shared flag_value would silently keep the last one given."""

    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kwargs):
            chosen = [p for p in PRECISIONS if kwargs.pop(f"precision_{p}")]
            if len(chosen) > 1:
                raise click.UsageError(f"{' and '.join('--' + p for p in chosen)} contradict each other; give one precision")
            return f(*args, precision=chosen[0] if chosen else default, **kwargs)

        for p in reversed(PRECISIONS):
            help_text = _PRECISION_HELP[p] + (" (default)" if p == default else "")
            command = click.option(f"--{p}", f"precision_{p}", is_flag=True, help=help_text)(command)
        return command

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
    """Results go to stdout as JSON; progress and messages went to stderr."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


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

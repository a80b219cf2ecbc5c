"""Reusable option groups (after Polygraphy): commands subscribe to what they need."""
from __future__ import annotations

import functools
import json
import os
import sys

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

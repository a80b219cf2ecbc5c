"""Reusable option groups (after Polygraphy): commands subscribe to what they need."""
from __future__ import annotations

import json
import sys

import click

from gencompress.errors import GencompressError
from gencompress.loading import parse_shape


def shape_option(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_shape(value)
    except GencompressError as exc:
        raise click.BadParameter(str(exc)) from None


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


def precision_option(default: str = "int8"):
    def decorate(f):
        f = click.option("--int8", "precision", flag_value="int8", default=default == "int8", help="INT8 (Q/DQ).")(f)
        f = click.option("--fp16", "precision", flag_value="fp16", default=default == "fp16", help="FP16.")(f)
        f = click.option("--fp32", "precision", flag_value="fp32", default=default == "fp32", help="FP32.")(f)
        return f

    return decorate


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

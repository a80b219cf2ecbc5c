"""PyTorch -> ONNX, with explicit Q/DQ for fake-quantised models.

Fake-quantised (modelopt) models export through the TorchScript exporter
(`dynamo=False`): it turns each TensorQuantizer into a QuantizeLinear/DequantizeLinear
pair, which is the form TensorRT's explicit quantisation reads.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gencompress.bundle import ONNX, Bundle
from gencompress.errors import GencompressError, first_line
from gencompress.onnx_utils import load_onnx

MIN_OPSET = 17  # per-channel Q/DQ on weights needs opset >= 13; 17 is what TensorRT 10 documents


@dataclass
class OnnxConfig:
    opset: int = 17
    dynamic_batch: bool = True
    input_name: str = "latent"
    output_name: str = "image"
    slim: bool = True  # onnxslim, kept only when Q/DQ pairs survive (see checks.slim)

    def validate(self) -> None:
        if self.opset < MIN_OPSET:
            raise GencompressError(f"--opset must be at least {MIN_OPSET}")


def export_module(model: nn.Module, input_shape, path: Path, cfg: OnnxConfig) -> Path:
    """Export `model` (per-sample `input_shape`) to `path` and fully check the result."""
    cfg.validate()
    dummy = torch.zeros(1, *input_shape)
    axes = {cfg.input_name: {0: "batch"}, cfg.output_name: {0: "batch"}} if cfg.dynamic_batch else None
    # The TorchScript exporter warns about tracing Python conditionals in modelopt's
    # quantisers and about its own deprecation; neither changes the graph it writes.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model.eval(),
                (dummy,),
                str(path),
                dynamo=False,
                opset_version=cfg.opset,
                input_names=[cfg.input_name],
                output_names=[cfg.output_name],
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        except (RuntimeError, TypeError, ValueError) as exc:  # what the exporter raises for a model it cannot trace or convert
            _refuse_computed_weights(model, dummy)
            first = first_line(exc)
            raise GencompressError(f"ONNX export failed: {first[:300]}") from None
    if cfg.slim:
        _slim_in_place(path)
    load_onnx(path, check=True)
    return path


def _slim_in_place(path: Path) -> str:
    import onnx

    from .checks import slim

    model, note = slim(load_onnx(path, check=False))
    onnx.save(model, str(path))
    return note


def to_onnx(bundle: Bundle, cfg: OnnxConfig | None, workdir: Path) -> Bundle:
    """Stage function: add model.onnx to the bundle (from its PyTorch model), written in
    `workdir`, which the caller owns and removes once the bundle is saved."""
    cfg = cfg or OnnxConfig()
    if bundle.model is None:
        raise GencompressError("to_onnx needs a PyTorch model")
    workdir = Path(workdir)
    path = export_module(bundle.model, bundle.input_shape, workdir / ONNX, cfg)
    out = bundle.derive({"step": "export", "format": "onnx", "opset": cfg.opset, "dynamic_batch": cfg.dynamic_batch})
    out.files[ONNX] = path
    out.manifest["input"]["name"] = cfg.input_name
    out.manifest["output"]["name"] = cfg.output_name
    return out


def _refuse_computed_weights(model, dummy) -> None:
    """A failed export of a convolution whose kernel is computed per sample (StyleGAN2's modulated
    convs: batch-grouped, so its shape follows the dynamic batch) gets a message naming the layer."""
    from gencompress.compress.modconv import computed_weight_convs

    try:
        found = computed_weight_convs(model, dummy)
    except (RuntimeError, TypeError, ValueError):  # the model's own failure: the caller reports the export error
        return
    if found:
        name, cls = found[0]
        raise GencompressError(
            f"cannot export {name} ({cls}) to ONNX: it convolves with weights computed per sample, whose shape follows "
            "the dynamic batch; write it as StyleGAN2's fused_modconv=False form (scale the input by the style, convolve "
            "with the shared weight, scale the output by the demodulation coefficients)")

"""INT8 post-training quantisation with NVIDIA Model Optimizer (nvidia-modelopt).

The result is a PyTorch model with fake-quant TensorQuantizers whose ONNX export is
TensorRT's explicit-quantisation form: symmetric INT8, zero-point 0, per-tensor
activation scales, per-channel weight scales.

Two traps this module handles on purpose:
- modelopt quantises ConvTranspose weights per channel along axis 0 (the *input*
  channels of a deconvolution's weight) by default. Which axis TensorRT wants for
  deconvolution has changed across versions, so the axis is a recorded choice
  (`deconv_weight_axis`, default 1: the output channels, as pytorch-quantization did).
- modelopt's default config disables quantisers by module name (`*output_layer*`,
  `*proj_out.*`, `*lm_head*`, ...). We keep its rules but report each layer's real
  precision afterwards, read off the quantisers themselves.
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from gencompress.bundle import Bundle
from gencompress.data import draw_inputs
from gencompress.errors import GencompressError
from gencompress.progress import bar
from gencompress.loading import build_architecture, load_weights

CALIBRATORS = ("max",)
QUANTIZABLE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


@dataclass
class QuantConfig:
    calibrator: str = "max"
    calib_samples: int = 256
    calib_batch: int = 32
    deconv_weight_axis: int = 1
    seed: int = 1234
    # Module names (fnmatch patterns) kept in FP32/FP16, e.g. from a sensitivity search.
    keep_float: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.calibrator not in CALIBRATORS:
            raise GencompressError(f"unknown calibrator {self.calibrator!r}; known: {', '.join(CALIBRATORS)}")
        if self.calib_samples < 1:
            raise GencompressError("--calib-samples must be at least 1")
        if self.deconv_weight_axis not in (0, 1):
            raise GencompressError("--deconv-weight-axis must be 0 or 1")


def _mtq():
    # modelopt prints a warning about `transformers` on import; it is irrelevant here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import modelopt.torch.quantization as mtq
    return mtq


def modelopt_config(cfg: QuantConfig) -> dict:
    mtq = _mtq()
    config = copy.deepcopy(mtq.INT8_DEFAULT_CFG)
    rules = config["quant_cfg"]
    for cls in ("nn.ConvTranspose1d", "nn.ConvTranspose2d", "nn.ConvTranspose3d"):
        rules.append(
            {"quantizer_name": "*weight_quantizer", "parent_class": cls, "cfg": {"num_bits": 8, "axis": cfg.deconv_weight_axis}}
        )
    for pattern in cfg.keep_float:
        rules.append({"quantizer_name": f"{pattern}.*", "enable": False})
    config["algorithm"] = cfg.calibrator
    return config


def _quiet():
    """modelopt prints per-quantizer chatter to stdout; keep stdout for results."""
    return contextlib.redirect_stdout(io.StringIO())


def quantize_module(model: nn.Module, input_shape, distribution: str, cfg: QuantConfig, progress: bool = True) -> nn.Module:
    """Fake-quantise a copy of `model`, calibrated on inputs drawn like its own."""
    cfg.validate()
    mtq = _mtq()
    qmodel = copy.deepcopy(model).eval()
    latents = draw_inputs(tuple(input_shape), cfg.calib_samples, distribution, cfg.seed)
    batches = list(latents.split(cfg.calib_batch))

    def forward_loop(m: nn.Module) -> None:
        with torch.no_grad():
            for chunk in bar(batches, "calibrate", progress, leave=False):
                m(chunk)

    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qmodel = mtq.quantize(qmodel, modelopt_config(cfg), forward_loop)
    return qmodel.eval()


def layer_precisions(qmodel: nn.Module) -> dict[str, str]:
    """Each Conv/ConvTranspose/Linear layer's precision, read off its quantisers."""
    result = {}
    for name, module in qmodel.named_modules():
        if not isinstance(module, QUANTIZABLE):
            continue
        wq = getattr(module, "weight_quantizer", None)
        iq = getattr(module, "input_quantizer", None)
        on = [q is not None and getattr(q, "is_enabled", False) for q in (wq, iq)]
        result[name] = "int8" if all(on) else ("int8-weight-only" if on[0] else "fp32")
    return result


def quantize(bundle: Bundle, cfg: QuantConfig, progress: bool = True) -> Bundle:
    """Stage function: a bundle with a PyTorch model -> the same, INT8 fake-quantised."""
    if bundle.model is None:
        raise GencompressError("quantize needs a PyTorch model; for an ONNX model use export's ONNX quantisation")
    qmodel = quantize_module(bundle.model, bundle.input_shape, bundle.input_distribution, cfg, progress)
    step = {"step": "quantize", "tool": "nvidia-modelopt", "format": "qdq-symmetric-int8", **asdict(cfg)}
    step["keep_float"] = list(cfg.keep_float)
    out = bundle.derive(step, qmodel)
    out.manifest["precision"] = layer_precisions(qmodel)
    return out


def restore_quantized(bundle: Bundle) -> nn.Module:
    """Rebuild a saved INT8 bundle's fake-quant model from its recipe and amax values.

    We replay `quantize` with no calibration data (weights are calibrated from the
    weights themselves), then set each activation quantiser's saved amax.
    """
    steps = [s for s in bundle.manifest["recipe"] if s["step"] == "quantize"]
    if not steps:
        raise GencompressError("bundle is not quantised")
    fields = {k: v for k, v in steps[-1].items() if k in QuantConfig.__dataclass_fields__}
    fields["keep_float"] = tuple(fields.get("keep_float", ()))
    cfg = QuantConfig(**fields)
    state = bundle.state_dict()
    model = build_architecture(bundle.manifest["architecture"])
    load_weights(model, {k: v for k, v in state.items() if "_quantizer." not in k})
    mtq = _mtq()
    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mtq.quantize(model.eval(), modelopt_config(cfg), None)
    for key, value in state.items():
        if key.endswith("_quantizer._amax"):
            quantizer = model.get_submodule(key.removesuffix("._amax"))
            quantizer.amax = value.clone()
    return model.eval()

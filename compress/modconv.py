"""StyleGAN2's modulated convolutions, rewritten from per-sample weights to one shared weight.

A modulated convolution scales its weight by a per-sample style and renormalises it
(demodulation). The ports run it fused, as one grouped convolution over the batch with a
weight computed per sample (the official NVlabs code's `modulated_conv2d(fused_modconv=True)`,
what its synthesis blocks pick in eval at FP32; rosinality's `ModulatedConv2d(fused=True)`;
benchmarks/architectures.py's ModulatedConv2d). That weight's shape follows the batch, so
ONNX export, INT8 and pruning cannot take it. The same function with one shared weight:

    out = demod * conv(x * style, W)         demod[n, o] = rsqrt(sum_{i,k} (W[o, i, k] * style[n, i])^2 + eps)
                                             = rsqrt((style^2 @ sum_k W^2 .T)[n, o] + eps)

(demodulation is a per-output-channel scale, so it moves past the convolution and any
per-channel blur after it). Each recognised module is replaced by one that runs that form with
an nn.Conv2d / nn.ConvTranspose2d holding W, which modelopt quantises, ONNX Runtime turns into
an integer conv and Torch-Pruning prunes; its state dict keeps the original's keys and shapes,
so saved weights load into the user's own class. Modules whose forward takes `fused_modconv`
(NVlabs' SynthesisLayer, ToRGBLayer) are switched to their own non-fused path instead, noise
from their constant buffer. Every rewrite is checked in float64 against the original on random
inputs (max abs difference <= TOLERANCE x the output's scale) and refused by module name
otherwise; a per-sample-weight conv none of the forms recognises is left alone (export then
refuses it by name).
"""
from __future__ import annotations

import copy
import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from gencompress.errors import GencompressError

TOLERANCE = 1e-10
DEMOD_EPS = 1e-8  # all three ports add 1e-8 under the square root


class SharedWeightModConv(nn.Module):
    """x * style -> one convolution with the shared weight (after nearest 2x upsampling, or as a
    stride-2 transposed convolution then the port's blur) -> * demodulation."""

    def __init__(self, style_name: str, style: nn.Module, conv: nn.Module, gain: float | None, demodulate: bool,
                 upsample_nearest: bool = False, blur: nn.Module | None = None, weight_layout: str = "oikk"):
        super().__init__()
        self.style_name, self.gain, self.demodulate, self.upsample_nearest = style_name, gain, demodulate, upsample_nearest
        setattr(self, style_name, style)  # the original's attribute name: its state-dict keys stay
        self.conv = conv
        self.blur = blur
        self.weight_layout = weight_layout  # how the original stores W: "oikk", or "1oikk" (rosinality)
        self._register_state_dict_hook(_save_as_original)
        self._register_load_state_dict_pre_hook(self._load_from_original)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        weight = self.shared_weight()  # O x I x k x k
        # gain None: 1 / sqrt(fan_in) of the input it meets (benchmarks/architectures.py divides at run time)
        gain = self.gain if self.gain is not None else 1.0 / math.sqrt(x.shape[1] * weight[0, 0].numel())
        style = getattr(self, self.style_name)(w) * gain  # N x I
        x = x * style[:, :, None, None]
        if self.upsample_nearest:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        out = self.conv(x)
        if self.blur is not None:
            out = self.blur(out)
        if self.demodulate:
            # The style enters the coefficients detached: through this matrix product Torch-Pruning's
            # graph would tie the style's channels (the conv's inputs) to the output's, and prune no
            # conv at all. The value is the same; distillation after pruning trains the style through
            # the input scaling only.
            # A product and a sum, not a MatMul: ONNX Runtime would quantise a MatMul, and an energy
            # rounded towards 0 blows up under rsqrt (20 dB on a rosinality generator).
            energy = (style.detach().square()[:, None, :] * weight.square().sum(dim=(2, 3))[None]).sum(dim=2)  # N x O
            out = out * torch.rsqrt(energy + DEMOD_EPS)[:, :, None, None]
        return out

    def shared_weight(self) -> torch.Tensor:
        w = self.conv.weight
        return w.transpose(0, 1) if isinstance(self.conv, nn.ConvTranspose2d) else w

    def _load_from_original(self, state_dict, prefix, *_args) -> None:
        key = prefix + "weight"
        if key in state_dict:
            w = state_dict.pop(key)
            w = w[0] if self.weight_layout == "1oikk" else w
            state_dict[prefix + "conv.weight"] = w.transpose(0, 1) if isinstance(self.conv, nn.ConvTranspose2d) else w


def _save_as_original(module: SharedWeightModConv, state_dict, prefix, _metadata) -> None:
    """The conv's weight saved under the original's key and layout. Not where the caller asked
    for the parameters themselves (keep_vars: the ONNX exporter maps the graph's parameters by them)."""
    if isinstance(state_dict.get(prefix + "conv.weight"), nn.Parameter):
        return
    w = state_dict.pop(prefix + "conv.weight")
    w = w.transpose(0, 1) if isinstance(module.conv, nn.ConvTranspose2d) else w
    state_dict[prefix + "weight"] = w[None] if module.weight_layout == "1oikk" else w


def _conv(weight: torch.Tensor, padding: int) -> nn.Conv2d:
    out_ch, in_ch, kh, kw = weight.shape
    conv = nn.Conv2d(in_ch, out_ch, (kh, kw), padding=padding, bias=False)
    conv.weight = nn.Parameter(weight.detach().clone())
    return conv


def _transposed(weight: torch.Tensor) -> nn.ConvTranspose2d:
    out_ch, in_ch, kh, kw = weight.shape
    conv = nn.ConvTranspose2d(in_ch, out_ch, (kh, kw), stride=2, padding=0, bias=False)
    conv.weight = nn.Parameter(weight.detach().transpose(0, 1).clone())
    return conv


WEIGHTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
CONV_FUNCTIONS = (F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)


def computed_weight_convs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """(name, class) of each module that runs a convolution whose weight is not a conv layer's own
    parameter but computed in forward (StyleGAN2's modulated convolutions, per-sample weights)."""
    from torch.overrides import TorchFunctionMode

    own = {id(m.weight) for m in model.modules() if isinstance(m, WEIGHTED_LAYERS)}
    stack: list[nn.Module] = []
    found: dict[nn.Module, None] = {}

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in CONV_FUNCTIONS and stack:
                weight = args[1] if len(args) > 1 else kwargs.get("weight")
                if id(weight) not in own:
                    found.setdefault(stack[-1])
            return func(*args, **kwargs)

    def enter(module, _inputs):
        stack.append(module)

    def leave(_module, _inputs, _output):  # returns None: the output stays as it is
        stack.pop()

    hooks = [h for m in model.modules() for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        with torch.no_grad(), Watch():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    names = {m: n for n, m in model.named_modules()}
    return [(names[m], type(m).__name__) for m in found]


# --- the forms ----------------------------------------------------------------------------


def _gencompress_form(m: nn.Module) -> nn.Module | None:
    """benchmarks/architectures.py: weight O x I x k x k, `affine` style, nearest 2x before the conv."""
    if not (isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 4 and isinstance(getattr(m, "affine", None), nn.Module)
            and all(hasattr(m, a) for a in ("demodulate", "upsample", "padding"))):
        return None
    return SharedWeightModConv("affine", m.affine, _conv(m.weight, m.padding), None, bool(m.demodulate), upsample_nearest=bool(m.upsample))


def _rosinality_form(m: nn.Module) -> nn.Module | None:
    """rosinality/stylegan2-pytorch: weight 1 x O x I x k x k, `modulation` style, `scale`; upsampling
    as a stride-2 transposed convolution then `blur`. (Its downsampling form is a discriminator's.)"""
    if not (isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 5 and m.weight.shape[0] == 1
            and isinstance(getattr(m, "modulation", None), nn.Module) and all(hasattr(m, a) for a in ("scale", "demodulate", "upsample"))):
        return None
    if getattr(m, "downsample", False):
        return None
    if m.upsample:
        return SharedWeightModConv("modulation", m.modulation, _transposed(m.weight[0]), float(m.scale), bool(m.demodulate),
                                   blur=m.blur, weight_layout="1oikk")
    return SharedWeightModConv("modulation", m.modulation, _conv(m.weight[0], m.padding), float(m.scale), bool(m.demodulate),
                               weight_layout="1oikk")


def _non_fused_kwargs(_module, args, kwargs):
    """NVlabs' layers: their own shared-weight path, and the noise of their constant buffer."""
    kwargs = {**kwargs, "fused_modconv": False}
    if "noise_mode" in inspect.signature(_module.forward).parameters and kwargs.get("noise_mode", "random") == "random":
        kwargs["noise_mode"] = "const"
    return args, kwargs


def _nvlabs_form(m: nn.Module) -> nn.Module | None:
    """stylegan2-ada-pytorch / stylegan3: a layer whose forward takes `fused_modconv`."""
    if "fused_modconv" not in inspect.signature(m.forward).parameters:
        return None
    switched = copy.copy(m)  # the same parameters; its own hook dict, so the original stays as it was
    switched._forward_pre_hooks = type(m._forward_pre_hooks)(m._forward_pre_hooks)
    switched._forward_pre_hooks_with_kwargs = type(m._forward_pre_hooks_with_kwargs)(m._forward_pre_hooks_with_kwargs)
    switched.register_forward_pre_hook(_non_fused_kwargs, with_kwargs=True)
    return switched


FORMS = {"stylegan2-ada (NVlabs), non-fused path": _nvlabs_form, "rosinality": _rosinality_form, "gencompress": _gencompress_form}


# --- the rewrite ----------------------------------------------------------------------------


def _calls(model: nn.Module, example: torch.Tensor, names: list[str]) -> dict[str, tuple[tuple, dict]]:
    """The positional and keyword arguments each named module is first called with."""
    seen: dict[str, tuple[tuple, dict]] = {}

    def hook(name):
        def record(_m, args, kwargs):
            seen.setdefault(name, (args, kwargs))
        return record

    handles = [model.get_submodule(n).register_forward_pre_hook(hook(n), with_kwargs=True) for n in names]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return seen


def _random_like(value, generator: torch.Generator):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return torch.randn(value.shape, generator=generator, dtype=torch.float64)
    return value


def float64_difference(original: nn.Module, rewritten: nn.Module, args: tuple, kwargs: dict, seed: int = 0) -> float:
    """Max abs difference of the two modules' outputs in float64 on random inputs shaped like
    `args`/`kwargs`, relative to the original output's scale (at least 1)."""
    g = torch.Generator().manual_seed(seed)
    args = tuple(_random_like(a, g) for a in args)
    kwargs = {k: _random_like(v, g) for k, v in kwargs.items()}
    with torch.no_grad():
        if "noise_mode" in inspect.signature(original.forward).parameters and kwargs.get("noise_mode", "random") == "random":
            kwargs["noise_mode"] = "const"  # the original's random noise would differ between the two runs
        a = _tensors(original.double()(*args, **kwargs))
        b = _tensors(rewritten.double()(*args, **kwargs))
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return math.inf
    return max(float((x - y).abs().max()) / max(1.0, float(x.abs().max())) for x, y in zip(a, b))


def _tensors(out) -> list[torch.Tensor]:
    """A module's output as a list of tensors (NVlabs' synthesis block returns (x, img))."""
    return [out] if isinstance(out, torch.Tensor) else [t for t in out if isinstance(t, torch.Tensor)]


def _form_of(module: nn.Module) -> tuple[str, nn.Module] | None:
    for form, build in FORMS.items():
        rewritten = build(module)
        if rewritten is not None:
            return form, rewritten
    return None


def shared_weight_form(model: nn.Module, example: torch.Tensor) -> list[dict]:
    """Rewrite, in place, every modulated convolution of `model` that runs per-sample weights
    (found on `example`, a batch of at least 2 inputs) and that one of FORMS recognises; each is
    checked in float64 against the original first. Returns one record per rewritten module."""
    if isinstance(model, torch.jit.ScriptModule):  # a TorchScript graph is run as it is: no hooks, no module swaps
        return []
    found = computed_weight_convs(model, example)
    if not found:
        return []
    calls = _calls(model, example, [n for n, _ in found])
    records = []
    for name, cls in found:
        module = model.get_submodule(name)
        recognised = _form_of(module)
        if recognised is None or name not in calls:
            continue  # export refuses it by name, as before
        form, rewritten = recognised
        check = _form_of(copy.deepcopy(module).double())[1]
        diff = float64_difference(copy.deepcopy(module), check, *calls[name])
        if not diff <= TOLERANCE:
            raise GencompressError(f"cannot rewrite {name} ({cls}) into the shared-weight form of a modulated convolution: in float64 it "
                                   f"differs from the original by {diff:.2e} (over {TOLERANCE:g}); write it as StyleGAN2's "
                                   "fused_modconv=False form")
        _replace(model, name, rewritten.to(module_dtype(module)))
        records.append({"module": name, "class": cls, "form": form, "float64_max_rel_diff": diff})
    return records


def module_dtype(module: nn.Module) -> torch.dtype:
    return next((p.dtype for p in module.parameters()), torch.float32)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)

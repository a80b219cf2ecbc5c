"""Per-layer INT8 sensitivity, a mixed-precision search under a PSNR budget, and QAT.

Whole-network INT8 can ruin a generator while one or two layers cause most of the damage
(published GAN work keeps such layers in FP16). We measure each layer's sensitivity by
quantising it alone (every other quantiser off) and reading the PSNR of the output against
FP32. Then, most sensitive first, layers go back to float until the whole model meets the
budget. Calibration happens once: amax values were collected with quantisation off, so
they do not depend on which other layers are quantised, and toggling is exact.

The search is greedy by single-layer sensitivity, so "fewest" means fewest in that order;
it evaluates at most one candidate per layer.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from gencompress.batching import MAX_BATCH, forward_batched
from gencompress.errors import GencompressError
from gencompress.floor import QualityFloor, fewest_meeting, finite_db, not_met
from gencompress.metrics import psnr
from gencompress.progress import bar

from .distill import DistillConfig, distill


def int8_layers(qmodel: nn.Module) -> dict[str, list[nn.Module]]:
    """Layer name -> its enabled quantisers (input and weight)."""
    found: dict[str, list[nn.Module]] = {}
    for name, module in qmodel.named_modules():
        qs = [getattr(module, a, None) for a in ("input_quantizer", "weight_quantizer")]
        qs = [q for q in qs if q is not None and getattr(q, "is_enabled", False)]
        if qs:
            found[name] = qs
    return found


def set_int8(layers: dict[str, list[nn.Module]], on: set[str]) -> None:
    for name, quantizers in layers.items():
        for q in quantizers:
            q.enable() if name in on else q.disable()


def _psnr_of(qmodel: nn.Module, x: torch.Tensor, reference: torch.Tensor, batch: int = MAX_BATCH) -> float:
    return psnr(reference, forward_batched(qmodel, x, batch))


def layer_sensitivity(qmodel, layers, x, reference, progress: bool, batch: int = MAX_BATCH) -> dict[str, float]:
    """PSNR (dB) against FP32 with only that layer quantised; lower is more sensitive."""
    result = {}
    for name in bar(list(layers), "sensitivity", progress, leave=False):
        set_int8(layers, {name})
        result[name] = _psnr_of(qmodel, x, reference, batch)
    set_int8(layers, set(layers))
    return result


def choose_mix(qmodel: nn.Module, x: torch.Tensor, reference: torch.Tensor, floor: QualityFloor, progress: bool = True,
               batch: int = MAX_BATCH, margin_db: float = 0.0) -> dict:
    """Leave the fewest most-sensitive layers in float so the model meets `floor` on the
    held-out latents `x` (FP32 outputs `reference`).

    Modifies `qmodel`'s quantisers in place. At least one layer stays INT8; if even then
    the floor fails, a one-line error gives the best reached. The search aims `margin_db`
    above the floor where it can (floor.fewest_meeting). Each layer's sensitivity is
    measured (and reported) even when the all-INT8 model already meets the floor.
    """
    layers = int8_layers(qmodel)
    if not layers:
        raise GencompressError("the quantised model has no enabled quantiser to search over")
    sens = layer_sensitivity(qmodel, layers, x, reference, progress, batch)
    order = sorted(sens, key=lambda n: sens[n])  # most sensitive first
    probes: dict[int, dict] = {}

    def scores(k: int) -> dict:
        if k not in probes:
            set_int8(layers, set(layers) - set(order[:k]))
            probes[k] = {"float_layers": k, **floor.measure(reference, forward_batched(qmodel, x, batch))}
        return probes[k]

    k = fewest_meeting(len(order) - 1, scores, floor, margin_db)  # at least one layer stays INT8
    tried = [probes[i] for i in sorted(probes)]
    if k is not None:
        set_int8(layers, set(layers) - set(order[:k]))
        return {"budget_db": floor.min_psnr, "floor": floor.as_dict(), "psnr_db": probes[k]["psnr_db"], "ssim": probes[k]["ssim"],
                "keep_float": order[:k], "layer_psnr_db": {n: finite_db(v) for n, v in sens.items()}, "tried": tried}
    best = max(tried, key=lambda t: t["psnr_db"])
    raise not_met(floor, best, f"{best['float_layers']} of {len(order)} layers float, the most sensitive first")


def _finite(value: float) -> float:
    return finite_db(value)


def qat(qmodel: nn.Module, fp32: nn.Module, input_shape, distribution: str, cfg, held: torch.Tensor, reference: torch.Tensor,
        progress: bool = True, pool: torch.Tensor | None = None) -> dict:
    """Quantisation-aware fine-tuning: the fake-quant model learns the FP32 output (L1).

    Each step's batch is drawn from `pool` (the user's inputs, `--data`), else like the model's
    own inputs; before and after are judged on `held` (FP32 outputs `reference`), the inputs
    the calibrator and the float layers were chosen on. modelopt's quantisers pass gradients
    straight through; BatchNorm statistics stay frozen so the calibrated ranges keep
    describing the activations.
    """
    before = _psnr_of(qmodel.eval(), held, reference, cfg.calib_batch)
    dcfg = DistillConfig(steps=cfg.qat_steps, batch=cfg.qat_batch, lr=cfg.qat_lr, feature_weight=0.0, seed=cfg.seed)
    with trainable_attention():
        log = distill(qmodel, fp32, input_shape, distribution, dcfg, progress, update_norm_stats=False, pool=pool)
    after = _psnr_of(qmodel.eval(), held, reference, cfg.calib_batch)
    return {"steps": cfg.qat_steps, "lr": cfg.qat_lr, "data": "the user's inputs (--data)" if pool is not None else f"drawn {distribution} inputs",
            "psnr_before_db": _finite(before), "psnr_after_db": _finite(after), "final_output_l1": log["final_output_l1"]}


@contextlib.contextmanager
def trainable_attention():
    """modelopt's diffusers plugin runs a quantised Attention's scaled_dot_product_attention through
    FP8SDPA, an ONNX-export op with no backward (QAT of an SD-VAE decoder failed in backward()). Its
    forward is the plain SDPA, ignoring the scales: while training, that SDPA is called directly."""
    try:
        from modelopt.torch.quantization.plugins.diffusion import diffusers as plugin
    except ImportError:  # diffusers absent: no plugin, nothing to patch
        yield
        return
    export_op = plugin.FP8SDPA.apply

    def plain_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, *quantizer_scales):
        return plugin.original_scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                                            is_causal=is_causal, scale=scale)

    plugin.FP8SDPA.apply = plain_sdpa
    try:
        yield
    finally:
        plugin.FP8SDPA.apply = export_op

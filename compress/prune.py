"""Structured channel pruning with Torch-Pruning, then distillation from the original.

Torch-Pruning traces the model once into a dependency graph, so removing a channel of
one layer removes the matching slices of every layer coupled to it (BatchNorm,
GroupNorm, InstanceNorm, the next convolution, a residual sum). What we add:

- the interface is protected: the latent width (first layer's input) is never pruned, and
  the layer that writes the image is in `ignored_layers`, so image channels stay;
- a Linear -> unflatten -> conv stem (upsample+conv generators) is a group Torch-Pruning
  links through a reshape but does not prune from the Linear's side; we prune it from the
  side of the 4-D consumer, where one channel is `k` consecutive Linear rows;
- attention blocks keep their q/k/v widths (a softmax scale read from `q.shape[-1]` would
  change silently if head dimensions were pruned);
- a GroupNorm keeps its group count (Torch-Pruning prunes each group alike; round_to is
  applied per group, so it is divided by gcd(round_to, groups));
- a group that would lose every channel, or a model that no longer runs after pruning
  (an op Torch-Pruning could not trace), is a one-line error naming the layer.

The pruned weights are plain safetensors with narrower tensors;
`gencompress.loading.load_weights` rebuilds the narrower layers from their saved shapes.
"""
from __future__ import annotations

import copy
import json
import math
import warnings
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from gencompress import defaults
from gencompress.bundle import Bundle
from gencompress.data import draw_inputs
from gencompress.errors import GencompressError, first_line
from gencompress.inputs import UserData
from gencompress.model_stats import count_macs, count_params

from .data_quality import data_judge
from .distill import Checkpoints, DistillConfig, distill, load_discriminator, state_digest
from .modconv import WEIGHTED_LAYERS, computed_weight_convs, shared_weight_form

PRUNABLE = WEIGHTED_LAYERS


def _tp():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch_pruning

    return torch_pruning


def _importance(name: str):
    tp = _tp()
    return {
        "l1": lambda: tp.importance.MagnitudeImportance(p=1),
        "l2": lambda: tp.importance.MagnitudeImportance(p=2),
        "taylor": lambda: tp.importance.TaylorImportance(),
    }[name]()


IMPORTANCES = ("l1", "l2", "taylor")
# A distillation batch costs about DISTILL_BATCH_GMAC forward: 32 samples of a digits GAN, 4 of a
# 17.7-GMAC latent decoder at 256 px, whose batch of 32 took 20 s a step on 2 cores.
DISTILL_BATCH_GMAC = 64.0
MIN_DISTILL_BATCH, MAX_DISTILL_BATCH = 4, 32


def distill_batch_for(macs_per_sample: int) -> int:
    """The distillation batch for a model of `macs_per_sample`: DISTILL_BATCH_GMAC per batch, within bounds."""
    fit = int(DISTILL_BATCH_GMAC * 1e9 // max(macs_per_sample, 1))
    return max(MIN_DISTILL_BATCH, min(MAX_DISTILL_BATCH, fit))


@dataclass
class PruneConfig:
    ratio: float = 0.5  # fraction of each prunable group's channels removed
    importance: str = "l1"
    round_to: int = 8  # kept channel counts are multiples of this (tensor-core friendly)
    protect: tuple[str, ...] = ()  # extra module names whose output channels are kept
    seed: int = 0
    distill_steps: int = defaults.DISTILL_STEPS  # 0: no distillation (quality usually collapses)
    distill_batch: int | None = None  # None: sized by the model's MACs (distill_batch_for)
    distill_lr: float = 1e-3
    feature_weight: float = 1.0
    gan_weight: float = 0.0  # > 0: adversarial distillation against the bundle's discriminator

    def validate(self) -> None:
        if not 0.0 < self.ratio < 1.0:
            raise GencompressError(f"--prune must be strictly between 0 and 1 (got {self.ratio})")
        if self.importance not in IMPORTANCES:
            raise GencompressError(f"unknown importance {self.importance!r}; known: {', '.join(IMPORTANCES)}")
        if self.round_to < 1:
            raise GencompressError("--round-to must be at least 1")
        if self.distill_steps < 0:
            raise GencompressError("--distill-steps must be 0 or more")
        self.distill_config().validate()

    def distill_config(self) -> DistillConfig:
        return DistillConfig(steps=self.distill_steps, batch=self.distill_batch or MAX_DISTILL_BATCH, lr=self.distill_lr,
                             feature_weight=self.feature_weight, seed=self.seed, gan_weight=self.gan_weight)


# --- tracing helpers ------------------------------------------------------------------


def run_naming_failure(model: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
    """Run `model(x)`; if it fails, raise a one-line error naming the layer that failed."""
    state = {"last": None}
    names = {m: n for n, m in model.named_modules()}
    hooks = [m.register_forward_pre_hook(lambda mod, _a: state.__setitem__("last", mod)) for m in model.modules() if not list(m.children())]
    try:
        return model(x)
    except Exception as exc:
        layer = state["last"]
        where = f"layer {names.get(layer, '?')} ({type(layer).__name__})" if layer is not None else "the model"
        first = first_line(exc)
        raise GencompressError(f"{what} at {where}: {first[:200]}") from None
    finally:
        for hook in hooks:
            hook.remove()


def execution_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the prunable layers in the order the forward pass runs them."""
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o, n=n: order.append(n)) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    try:
        with torch.no_grad():
            run_naming_failure(model, x, "the model does not run")
    finally:
        for hook in hooks:
            hook.remove()
    return order


def _attention_layers(model: nn.Module) -> list[nn.Module]:
    """Linear/conv layers inside attention blocks: their widths stay (see module docstring)."""
    keep = []
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower():
            keep.append(module)
            keep.extend(m for m in module.modules() if isinstance(m, PRUNABLE))
    return keep


def _group_norm_round_to(model: nn.Module, round_to: int) -> int:
    """Torch-Pruning prunes a GroupNorm's channels group by group and applies round_to to
    each group's count; kept totals stay multiples of round_to when the per-group rounding
    is round_to / gcd(round_to, groups)."""
    for module in model.modules():
        if isinstance(module, nn.GroupNorm):
            round_to = max(1, round_to // math.gcd(round_to, module.num_groups))
    return round_to


def _kept(channels: int, ratio: float, round_to: int) -> int:
    """Torch-Pruning's rule: remove int(C * ratio), then round the kept count down."""
    kept = channels - int(channels * ratio)
    return kept - kept % round_to


# --- the reshape stem -----------------------------------------------------------------


def _reshape_stems(dg, ignored: set) -> list[tuple[nn.Module, nn.Module, int]]:
    """(linear, 4-D consumer, rows per channel) for each Linear -> reshape -> layer stem."""
    stems = []
    for module, node in dg.module2node.items():
        if not isinstance(module, nn.Linear) or module in ignored:
            continue
        for out in node.outputs:
            if type(out.module).__name__ != "_ReshapeOp":
                continue
            for consumer in out.outputs:
                width = _in_width(consumer.module)
                if width and module.out_features % width == 0 and module.out_features != width:
                    stems.append((module, consumer.module, module.out_features // width))
    return stems


def _in_width(module: nn.Module) -> int | None:
    if isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)):
        return module.num_features
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return module.in_channels
    return None


def _prune_stem(dg, linear: nn.Linear, consumer: nn.Module, rows: int, cfg: PruneConfig, round_to: int, name: str) -> None:
    tp = _tp()
    channels = linear.out_features // rows
    kept = _kept(channels, cfg.ratio, round_to)
    if kept <= 0:
        raise GencompressError(f"pruning {cfg.ratio:.0%} with round_to {round_to} would remove every channel of layer {name} ({channels} channels)")
    weight = linear.weight.detach().reshape(channels, -1)
    if cfg.importance == "taylor" and linear.weight.grad is not None:
        score = (linear.weight.detach() * linear.weight.grad).abs().reshape(channels, -1).sum(1)
    else:
        score = weight.abs().pow(2 if cfg.importance == "l2" else 1).sum(1)
    drop = sorted(torch.argsort(score)[: channels - kept].tolist())
    if isinstance(consumer, (nn.Conv2d, nn.ConvTranspose2d)):
        fn = tp.prune_conv_in_channels if isinstance(consumer, nn.Conv2d) else tp.prune_deconv_in_channels
    else:
        fn = dg.get_pruner_of_module(consumer).prune_out_channels
    group = dg.get_pruning_group(consumer, fn, idxs=drop)
    if not dg.check_pruning_group(group):
        raise GencompressError(f"cannot prune the stem {name}: Torch-Pruning rejects the group")
    group.prune()


# --- the stage ------------------------------------------------------------------------


def _taylor_gradients(model: nn.Module, x: torch.Tensor) -> None:
    """Data-free Taylor scores: gradients of the output energy on random latents.

    A generator has no label loss; the first-order change of ||G(z)||^2 when a channel
    is removed is what |w * dL/dw| then estimates.
    """
    model.zero_grad(set_to_none=True)
    model(x).pow(2).mean().backward()


def _check_groups(pruner, cfg: PruneConfig, round_to: int, names: dict) -> None:
    """Refuse (before touching anything) a ratio that empties any group."""
    tp = _tp()
    for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=[tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR]):
        dep, idxs = group[0]
        layer = dep.target.module
        if _kept(len(idxs), cfg.ratio, round_to) <= 0:
            raise GencompressError(
                f"pruning {cfg.ratio:.0%} with round_to {round_to} would remove every channel of layer "
                f"{names.get(layer, '?')} ({len(idxs)} channels); lower --prune or --round-to"
            )


def prune_module(model: nn.Module, input_shape, distribution: str, cfg: PruneConfig) -> tuple[nn.Module, dict]:
    """A pruned copy of `model` (never distilled) and the record of what was done."""
    cfg.validate()
    tp = _tp()
    torch.manual_seed(cfg.seed)
    student = copy.deepcopy(model).eval()
    names = {m: n for n, m in student.named_modules()}
    x = draw_inputs(tuple(input_shape), 8, distribution, cfg.seed)
    if shared_weight_form(student, x[:2]):  # StyleGAN2's fused modulated convs as shared-weight convs (compress/modconv.py)
        names = {m: n for n, m in student.named_modules()}
    order = execution_order(student, x)
    if not order:
        raise GencompressError("the model has no Conv/ConvTranspose/Linear layer to prune")
    computed = computed_weight_convs(student, x[:2])
    if computed:  # refused before tracing: Torch-Pruning's graph of a batch-grouped conv grows without end
        name, cls = computed[0]
        raise GencompressError(
            f"cannot prune {name} ({cls}): it convolves with weights computed per sample (a modulated convolution), "
            "which Torch-Pruning cannot slice; compress this model with `build --precision int8` without --prune (such layers stay float)")
    protected = {order[-1], *cfg.protect}
    unknown = set(cfg.protect) - set(names.values())
    if unknown:
        raise GencompressError(f"--protect names no layer of the model: {sorted(unknown)[0]}")
    ignored = [student.get_submodule(n) for n in protected] + _attention_layers(student)
    round_to = _group_norm_round_to(student, cfg.round_to)
    if cfg.importance == "taylor":
        _taylor_gradients(student, x)
    pruner = _make_pruner(tp, student, x, cfg, ignored, round_to, names)
    stems = _reshape_stems(pruner.DG, set(ignored))
    pruner.ignored_layers.extend(linear for linear, _c, _r in stems)
    _check_groups(pruner, cfg, round_to, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner.step()
        for linear, consumer, rows in stems:
            _prune_stem(pruner.DG, linear, consumer, rows, cfg, round_to, names[linear])
    student.zero_grad(set_to_none=True)
    with torch.no_grad():
        run_naming_failure(student, x, "Torch-Pruning could not trace this architecture: the pruned model fails")
    record = {"protected": sorted(protected), "round_to": round_to, "history": _history(pruner.DG)}
    return student.eval(), record


def _make_pruner(tp, model, x, cfg, ignored, round_to, names):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tp.pruner.BasePruner(model, x, _importance(cfg.importance), pruning_ratio=cfg.ratio,
                                        ignored_layers=ignored, round_to=round_to)
    except GencompressError:
        raise
    except Exception as exc:
        first = first_line(exc)
        raise GencompressError(f"Torch-Pruning cannot trace this architecture: {first[:200]}") from None


def _history(dg) -> list[list]:
    """Torch-Pruning's replayable history as JSON: [layer, out_channels?, removed indices]."""
    return [[name, bool(out), [int(i) for i in idxs]] for name, out, idxs in dg.pruning_history()]


def prune(bundle: Bundle, cfg: PruneConfig, progress: bool = True, checkpoints: Checkpoints | None = None,
          fid_samples: int = 1000, data: UserData | None = None) -> Bundle:
    """Stage function: prune the bundle's model, then distil it from the original
    (checkpointed and resumable when `checkpoints` is given; its key is filled in here).
    Where the recipe names loadable training data, FID/KID of the original, the pruned
    model and the distilled one go into the pruning metrics (`fid_samples` 0: skip).
    With the user's `data`, distillation draws its batches from the calibration part."""
    cfg.validate()
    if bundle.model is None:
        raise GencompressError("prune needs a PyTorch model (a bundle, zoo name or import spec), not ONNX")
    if bundle.form.is_int8:
        raise GencompressError("prune a model before quantising it, not after")
    teacher = bundle.model.eval()
    shape = bundle.input_shape
    student, record = prune_module(teacher, shape, bundle.manifest["input"], cfg)
    stats = {
        "params_before": count_params(teacher), "params_after": count_params(student),
        "macs_before": count_macs(teacher, shape), "macs_after": count_macs(student, shape),
    }
    stats["macs_reduction"] = stats["macs_before"] / max(stats["macs_after"], 1)
    if cfg.distill_batch is None:  # the teacher's cost per sample (count_macs counts one) sizes the batch
        cfg = replace(cfg, distill_batch=distill_batch_for(stats["macs_before"]))
    step = {"step": "prune", "tool": "torch-pruning", **asdict(cfg), **stats, **record}
    step["protect"] = list(cfg.protect)
    out = bundle.derive(step, student)
    judge = data_judge(bundle, fid_samples)
    if judge is not None:
        stats["data_quality"] = {"data": judge.data, "samples": len(judge.latents), "original": judge(teacher),
                                 "pruned_no_distill": judge(student)}
    if cfg.distill_steps:
        if checkpoints is not None:  # a checkpoint resumes only the same pruning of the same teacher
            key = {**asdict(cfg), "teacher": state_digest(teacher), "data": data.record["sha256"] if data else None}
            checkpoints.key = json.loads(json.dumps(key))
        discriminator = load_discriminator(bundle) if cfg.gan_weight > 0 else None
        log = distill(student, teacher, shape, bundle.manifest["input"], cfg.distill_config(), progress, checkpoints=checkpoints,
                      discriminator=discriminator, pool=data.rest if data else None)
        inputs = {"data": data.record} if data else {"inputs": "drawn from the input spec"}
        out.record({"step": "distill", **asdict(cfg.distill_config()), **log, **inputs})
        if judge is not None:
            stats["data_quality"]["pruned_distilled"] = judge(student)
    out.manifest["metrics"]["prune"] = stats
    return out

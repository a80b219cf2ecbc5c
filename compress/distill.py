"""Distillation: a compressed student learns to reproduce its original (the teacher).

As in GAN Compression (Li et al. 2020): the student sees random latents drawn like the
model's own inputs and matches the teacher's image (L1) and its intermediate feature maps,
through learned 1x1 convolutions that map the student's narrower maps to the teacher's
width (the mappings are thrown away afterwards). No data set is needed.

The original discriminator is not used: bundles store the generator only, and the
output and feature losses alone bring a 50%-pruned DCGAN back (see benchmarks).
The same loop with `feature_weight=0` is quantisation-aware training (QAT).

Long runs checkpoint (`Checkpoints`): the student, the 1x1 mappings, Adam, the schedule
and the RNG, through the training stage's crash-safe checkpoint folders. Each step's
latents come from (seed, step) alone, so a resumed run sees the same latents as an
uninterrupted one.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gencompress.data import draw_inputs
from gencompress.errors import GencompressError
from gencompress.progress import bar

FEATURE_LAYERS = (nn.Conv2d, nn.ConvTranspose2d)


@dataclass
class DistillConfig:
    steps: int = 1500
    batch: int = 32
    lr: float = 1e-3
    feature_weight: float = 1.0  # 0: output loss only
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 0 or self.batch < 1 or self.lr <= 0:
            raise GencompressError("distillation needs steps >= 0, batch >= 1 and a positive learning rate")


@dataclass
class Checkpoints:
    """Where and how often distillation saves its state, and whether it resumes from it."""

    root: Path
    every: int = 200  # steps
    resume: bool = False
    key: dict = field(default_factory=dict)  # what a checkpoint must match to be resumed


def state_digest(model: nn.Module) -> str:
    """sha256 over a model's parameters and buffers: which teacher a checkpoint belongs to."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**31 - 1)


class _Features:
    """Forward hooks that keep the latest output of the named layers."""

    def __init__(self, model: nn.Module, names: list[str]):
        self.maps: dict[str, torch.Tensor] = {}
        self.hooks = [model.get_submodule(n).register_forward_hook(self._keep(n)) for n in names]

    def _keep(self, name):
        def hook(_module, _inputs, output):
            self.maps[name] = output

        return hook

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()


def feature_layers(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Hidden conv layers present in both (pruning keeps names); the image layer excluded."""
    names = [n for n, m in student.named_modules() if isinstance(m, FEATURE_LAYERS)]
    teacher_names = {n for n, m in teacher.named_modules() if isinstance(m, FEATURE_LAYERS)}
    return [n for n in names[:-1] if n in teacher_names]


def _mappings(student: nn.Module, teacher: nn.Module, names: list[str]) -> nn.ModuleDict:
    """One learned 1x1 conv per matched layer: student width -> teacher width."""
    maps = nn.ModuleDict()
    for name in names:
        s_out = _out_channels(student.get_submodule(name))
        t_out = _out_channels(teacher.get_submodule(name))
        maps[name.replace(".", "_")] = nn.Conv2d(s_out, t_out, 1, bias=False)
    return maps


def _out_channels(layer: nn.Module) -> int:
    return layer.out_channels


def _student_train_mode(student: nn.Module, update_norm_stats: bool) -> None:
    student.train()
    if not update_norm_stats:  # QAT: keep the calibrated statistics fixed
        for m in student.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def distill(student: nn.Module, teacher: nn.Module, input_shape, distribution: str, cfg: DistillConfig,
            progress: bool = True, update_norm_stats: bool = True, checkpoints: Checkpoints | None = None) -> dict:
    """Train `student` in place to match `teacher`; returns the loss record."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    teacher = teacher.eval()
    names = feature_layers(student, teacher) if cfg.feature_weight > 0 else []
    maps = _mappings(student, teacher, names)
    s_feats, t_feats = _Features(student, names), _Features(teacher, names)
    params = [p for p in student.parameters() if p.requires_grad] + list(maps.parameters())
    opt = torch.optim.Adam(params, cfg.lr, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cfg.steps, 1))
    modules, optimizers = {"student": student, "mappings": maps}, {"adam": opt, "cosine": sched}
    start, first = _maybe_resume(checkpoints, modules, optimizers)
    _student_train_mode(student, update_norm_stats)
    last = None
    try:
        for step in bar(range(start, cfg.steps), "distill", progress, initial=start, total=cfg.steps):
            z = draw_inputs(tuple(input_shape), cfg.batch, distribution, step_seed(cfg.seed, step))
            with torch.no_grad():
                target = teacher(z)
            out_loss = F.l1_loss(student(z), target)
            feat_loss = sum((F.mse_loss(maps[n.replace(".", "_")](s_feats.maps[n]), t_feats.maps[n]) for n in names), torch.zeros(()))
            loss = out_loss + cfg.feature_weight * feat_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if not torch.isfinite(loss):
                raise GencompressError(f"distillation diverged at step {step} (loss is not finite); lower the learning rate")
            last = (out_loss.item(), float(feat_loss.detach()))
            first = first or last
            done = step + 1
            if checkpoints is not None and (done % checkpoints.every == 0 or done == cfg.steps):
                _save(checkpoints, done, modules, optimizers, first)
    finally:
        s_feats.close()
        t_feats.close()
        student.eval()
    return {"feature_layers": names, "first_output_l1": first and first[0], "final_output_l1": last and last[0],
            "final_feature_mse": last and last[1], "resumed_at_step": start}


def _save(checkpoints: Checkpoints, step: int, modules: dict, optimizers: dict, first) -> None:
    from gencompress.train import checkpoint

    checkpoint.save(checkpoints.root, step, modules, optimizers, {"resume_key": checkpoints.key, "first": first})


def _maybe_resume(checkpoints: Checkpoints | None, modules: dict, optimizers: dict) -> tuple[int, tuple | None]:
    """The step to start from and the first losses seen: (0, None) for a fresh run."""
    if checkpoints is None or not checkpoints.resume:
        return 0, None
    from gencompress.train import checkpoint

    found = checkpoint.latest(checkpoints.root)
    if found is None:
        raise GencompressError(f"--resume: no complete distillation checkpoint in {checkpoints.root}")
    path, meta = found
    checkpoint.restore(path, meta, modules, optimizers, checkpoints.key)
    print(f"gencompress: distillation resumed from {path} (step {meta['step']})", file=sys.stderr)
    first = meta.get("first")
    return int(meta["step"]), tuple(first) if first else None

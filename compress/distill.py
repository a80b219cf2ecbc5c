"""Distillation: a compressed student learns to reproduce its original (the teacher).

As in GAN Compression (Li et al. 2020): the student sees random latents drawn like the
model's own inputs (or batches of the user's `--data`) and matches the teacher's image (L1) and its intermediate feature maps,
through learned 1x1 convolutions that map the student's narrower maps to the teacher's
width (the mappings are thrown away afterwards). No data set is needed.

With `gan_weight > 0` and a bundle that carries its original discriminator (bundles of
`gencompress train` and of the zoo do), the student also learns to fool that discriminator,
which is fine-tuned alongside to tell the teacher's images (real) from the student's (fake):
GAN Compression's adversarial term, with the teacher standing in for the data set, so no
data is needed here either. Off by default: the output and feature losses alone bring a
50%-pruned DCGAN back (benchmarks/results/compress_quality.json).
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

from gencompress import defaults
from gencompress.data import draw_inputs
from gencompress.errors import GencompressError
from gencompress.progress import bar

FEATURE_LAYERS = (nn.Conv2d, nn.ConvTranspose2d)


@dataclass
class DistillConfig:
    steps: int = defaults.DISTILL_STEPS
    batch: int = 32
    lr: float = 1e-3
    feature_weight: float = 1.0  # 0: output loss only
    seed: int = 0
    gan_weight: float = 0.0  # > 0: also fool the original discriminator (needs one)
    d_lr: float = 2e-4  # the discriminator's learning rate (DCGAN's)

    def validate(self) -> None:
        if self.steps < 0 or self.batch < 1 or self.lr <= 0:
            raise GencompressError("distillation needs steps >= 0, batch >= 1 and a positive learning rate")
        if self.gan_weight < 0 or self.d_lr <= 0:
            raise GencompressError("--gan-weight must be 0 or more and the discriminator learning rate positive")


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


DISCRIMINATOR = "discriminator.safetensors"


def load_discriminator(bundle) -> nn.Module | None:
    """The bundle's original discriminator, or None where it carries none (a zoo
    architecture trained by gencompress records how to rebuild it in its train step)."""
    from gencompress import zoo
    from gencompress.bundle import load_safetensors

    arch = bundle.manifest["architecture"]
    train = bundle.last_step("train", having="discriminator_kwargs")
    if DISCRIMINATOR not in bundle.files or arch["kind"] != "zoo" or train is None:
        return None
    factory = zoo.get(arch["name"]).discriminator
    if factory is None:
        return None
    disc = factory(**train["discriminator_kwargs"])
    try:
        disc.load_state_dict(load_safetensors(bundle.files[DISCRIMINATOR]))
    except RuntimeError as exc:
        raise GencompressError(f"{DISCRIMINATOR} does not fit the {arch['name']} discriminator: {str(exc).splitlines()[0]}") from None
    return disc


class _Adversary:
    """The original discriminator, fine-tuned to tell the teacher's images (real) from the
    student's (fake); the student learns to fool it. Non-saturating losses (Goodfellow et al.)."""

    def __init__(self, discriminator: nn.Module, lr: float):
        self.d = discriminator.train()
        self.opt = torch.optim.Adam(self.d.parameters(), lr, betas=(0.5, 0.999))

    def step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        loss = F.softplus(-self.d(real)).mean() + F.softplus(self.d(fake.detach())).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()

    def fool(self, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-self.d(fake)).mean()


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
            progress: bool = True, update_norm_stats: bool = True, checkpoints: Checkpoints | None = None,
            discriminator: nn.Module | None = None, pool: torch.Tensor | None = None) -> dict:
    """Train `student` in place to match `teacher`; returns the loss record.

    `pool`: the user's inputs (`--data`); each step's batch is drawn from it, with replacement,
    by (seed, step) alone like the drawn latents, so a resumed run sees the same batches."""
    cfg.validate()
    if cfg.gan_weight > 0 and discriminator is None:
        raise GencompressError("--gan-weight needs the original discriminator, and this bundle carries none "
                               "(bundles from `gencompress train` and the zoo have discriminator.safetensors)")
    torch.manual_seed(cfg.seed)
    teacher = teacher.eval()
    names = feature_layers(student, teacher) if cfg.feature_weight > 0 else []
    maps = _mappings(student, teacher, names)
    s_feats, t_feats = _Features(student, names), _Features(teacher, names)
    params = [p for p in student.parameters() if p.requires_grad] + list(maps.parameters())
    opt = torch.optim.Adam(params, cfg.lr, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cfg.steps, 1))
    modules, optimizers = {"student": student, "mappings": maps}, {"adam": opt, "cosine": sched}
    adversary = _Adversary(discriminator, cfg.d_lr) if cfg.gan_weight > 0 else None
    if adversary is not None:
        modules["discriminator"], optimizers["adam_d"] = adversary.d, adversary.opt
    start, first = _maybe_resume(checkpoints, modules, optimizers)
    _student_train_mode(student, update_norm_stats)
    last, d_loss = None, None
    try:
        for step in bar(range(start, cfg.steps), "distill", progress, initial=start, total=cfg.steps):
            z = _batch(pool, input_shape, distribution, cfg.batch, step_seed(cfg.seed, step))
            with torch.no_grad():
                target = teacher(z)
            image = student(z)
            out_loss = F.l1_loss(image, target)
            feat_loss = sum((F.mse_loss(maps[n.replace(".", "_")](s_feats.maps[n]), t_feats.maps[n]) for n in names), torch.zeros(()))
            loss = out_loss + cfg.feature_weight * feat_loss
            if adversary is not None:
                d_loss = adversary.step(target, image)
                loss = loss + cfg.gan_weight * adversary.fool(image)
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
            "final_feature_mse": last and last[1], "resumed_at_step": start, "adversarial": adversary is not None,
            "final_discriminator_loss": d_loss}


def _batch(pool: torch.Tensor | None, input_shape, distribution, batch: int, seed: int) -> torch.Tensor:
    if pool is None:
        return draw_inputs(tuple(input_shape), batch, distribution, seed)
    pick = torch.randint(0, len(pool), (batch,), generator=torch.Generator().manual_seed(seed))
    return pool[pick]


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

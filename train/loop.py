"""`fit(cfg) -> Bundle`: train a zoo generator (GAN objectives) or a VAE on real data.

One step is one generator (or VAE) update; a GAN step first makes `n_critic` critic
updates, each on a fresh real batch. Every random draw comes from a generator seeded by
(seed, rank, step) and the data order from (seed, epoch), so a run resumed from a
checkpoint repeats the uninterrupted run bit for bit.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import hashlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from gencompress import zoo
from gencompress.atomic import atomic_write_bytes
from gencompress.bundle import Bundle, new_manifest
from gencompress.errors import GencompressError
from gencompress.progress import bar

from . import checkpoint, distributed
from .config import TrainConfig
from .datasets import Dataset, load_dataset
from .objectives import Objective, elbo_loss, get_objective, gradient_penalty, make_optimizer
from .vae import VAEEncoder, reparameterize

GRID = 64  # samples in the fixed-latent grid


def seeded(*parts) -> torch.Generator:
    """A torch.Generator seeded from a tuple: independent streams per (seed, purpose, rank, step)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def draw(shape, n: int, distribution: str, gen: torch.Generator) -> torch.Tensor:
    if distribution == "uniform":
        return torch.rand((n, *shape), generator=gen) * 2 - 1
    return torch.randn((n, *shape), generator=gen)


@dataclass
class Run:
    cfg: TrainConfig
    obj: Objective
    data: Dataset
    ctx: distributed.Context
    generator: nn.Module  # DDP-wrapped when distributed; the VAE's decoder for elbo
    critic: nn.Module | None  # the discriminator, or the VAE's encoder
    ema: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    kwargs: dict
    step: int = 0
    batches: int = 0  # real batches drawn by this rank so far
    log: "Logs | None" = None
    last_checkpoint: Path | None = None
    _perm: tuple[int, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def is_vae(self) -> bool:
        return self.obj.name == "elbo"

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(zoo.input_shape(self.cfg.model, **self.kwargs))

    @property
    def distribution(self) -> str:
        return zoo.get(self.cfg.model).input_distribution

    @property
    def batches_per_epoch(self) -> int:
        return (len(self.data.images) // self.ctx.world) // self.cfg.batch_size

    @property
    def epoch(self) -> int:
        return self.batches // self.batches_per_epoch

    def modules(self) -> dict[str, nn.Module]:
        named = {"generator": distributed.unwrap(self.generator), "ema": self.ema}
        if self.critic is not None:
            named["encoder" if self.is_vae else "critic"] = distributed.unwrap(self.critic)
        return named

    def optimizers(self) -> dict:
        return {"generator": self.opt_g, **({"critic": self.opt_d} if self.opt_d is not None else {})}

    def real_batch(self) -> torch.Tensor:
        """This rank's next batch: a per-epoch permutation (same on all ranks), sharded by rank."""
        epoch, index = divmod(self.batches, self.batches_per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            perm = torch.randperm(len(self.data.images), generator=seeded(self.cfg.seed, "perm", epoch))
            self._perm = (epoch, perm[self.ctx.rank :: self.ctx.world])
        bs = self.cfg.batch_size
        self.batches += 1
        return self.data.images[self._perm[1][index * bs : (index + 1) * bs]]


# --- building ------------------------------------------------------------------------


def resolve_objective(cfg: TrainConfig) -> Objective:
    entry = zoo.get(cfg.model)
    vae = "vae" in entry.tags
    obj = get_objective(cfg.objective or ("elbo" if vae else "gan"))
    if vae and obj.name != "elbo":
        raise GencompressError(f"{cfg.model} is a VAE decoder: train it with --objective elbo, not {obj.name}")
    if not vae and obj.name == "elbo":
        raise GencompressError(f"--objective elbo trains a VAE (model vae_decoder), not {cfg.model}")
    if not vae and entry.discriminator is None:
        raise GencompressError(f"zoo model {cfg.model!r} has no discriminator to train it against")
    return obj


def build_run(cfg: TrainConfig, ctx: distributed.Context) -> Run:
    obj = resolve_objective(cfg)
    data = load_dataset(cfg.data)
    entry = zoo.get(cfg.model)
    kwargs = {"nc": data.channels} if "nc" in entry.defaults else {}
    if len(data.images) // ctx.world < cfg.batch_size:
        raise GencompressError(f"data {data.name} has {len(data.images)} images: fewer than --batch-size {cfg.batch_size} per process")
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    generator = zoo.build(cfg.model, **kwargs)
    if obj.name == "elbo":
        critic: nn.Module = VAEEncoder(nz=zoo.input_shape(cfg.model, **kwargs)[0], nc=data.channels)
        opt_g = make_optimizer(obj, list(generator.parameters()) + list(critic.parameters()), cfg.lr)
        opt_d = None
    else:
        critic = entry.discriminator(**discriminator_kwargs(data.channels, obj))
        opt_g = make_optimizer(obj, generator.parameters(), cfg.lr)
        opt_d = make_optimizer(obj, critic.parameters(), cfg.lr)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    generator, critic = distributed.wrap(generator.train(), ctx), distributed.wrap(critic.train(), ctx)
    return Run(cfg, obj, data, ctx, generator, critic, ema, opt_g, opt_d, kwargs)


# --- one step ------------------------------------------------------------------------


def _check_finite(run: Run, losses: dict[str, float]) -> None:
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        where = f"; the last good checkpoint is {run.last_checkpoint}" if run.last_checkpoint else ""
        raise GencompressError(
            f"{run.obj.name} training diverged at step {run.step + 1}: {', '.join(bad)} is not finite "
            f"(try a lower --lr){where}"
        )


def gan_step(run: Run, gen: torch.Generator) -> dict[str, float]:
    G, D, obj = run.generator, run.critic, run.obj
    for _ in range(obj.n_critic):
        real = run.real_batch()
        fake = G(draw(run.latent_shape, len(real), run.distribution, gen))
        d_real, d_fake = D(real), D(fake.detach())
        loss_d = obj.d_loss(d_real, d_fake)
        logs = {"loss_d": loss_d.item(), "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}
        if obj.gp_weight:
            gp = gradient_penalty(D, real, fake.detach(), torch.rand(len(real), 1, 1, 1, generator=gen))
            loss_d = loss_d + obj.gp_weight * gp
            logs["gp"] = gp.item()
        _check_finite(run, {"discriminator loss": loss_d.item()})
        run.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        run.opt_d.step()
        if obj.clip is not None:
            with torch.no_grad():
                for p in D.parameters():
                    p.clamp_(-obj.clip, obj.clip)
    if obj.n_critic > 1:  # a fresh batch of fakes for the generator after several critic steps
        fake = G(draw(run.latent_shape, run.cfg.batch_size, run.distribution, gen))
    loss_g = obj.g_loss(D(fake))
    _check_finite(run, {"generator loss": loss_g.item()})
    run.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    run.opt_g.step()
    return {**logs, "loss_g": loss_g.item()}


def vae_step(run: Run, gen: torch.Generator) -> dict[str, float]:
    x = run.real_batch()
    mu, logvar = run.critic(x)
    z = reparameterize(mu, logvar, torch.randn(mu.shape, generator=gen))
    x_hat = run.generator(z.view(len(z), *run.latent_shape))
    loss, recon, kl = elbo_loss(x, x_hat, mu, logvar, run.cfg.beta)
    _check_finite(run, {"negative ELBO": loss.item()})
    run.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    run.opt_g.step()
    return {"loss": loss.item(), "recon": recon.item(), "kl": kl.item()}


@torch.no_grad()
def update_ema(run: Run) -> None:
    """EMA of the generator's weights; the warm-up (1+t)/(10+t) keeps early averages current."""
    decay = min(run.cfg.ema_decay, (1 + run.step) / (10 + run.step))
    source = distributed.unwrap(run.generator)
    for p_ema, p in zip(run.ema.parameters(), source.parameters()):
        p_ema.lerp_(p.detach(), 1 - decay)
    for b_ema, b in zip(run.ema.buffers(), source.buffers()):
        b_ema.copy_(b)


# --- logs, samples, checkpoints -------------------------------------------------------


class Logs:
    """losses.csv (every step) and metrics.csv (every evaluation), rank 0 only.

    On resume the rows after the checkpoint's step are dropped: they are about to be
    recomputed, identically.
    """

    def __init__(self, root: Path, keep_until: int | None):
        self.root = root
        (root / "samples").mkdir(parents=True, exist_ok=True)
        for name in ("losses.csv", "metrics.csv"):
            path = root / name
            if keep_until is None or not path.is_file():
                path.unlink(missing_ok=True)
                continue
            rows = list(csv.reader(path.open()))
            kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= keep_until]
            with path.open("w", newline="") as fh:
                csv.writer(fh).writerows(kept)

    def write(self, name: str, row: dict) -> None:
        path = self.root / name
        new = not path.is_file() or path.stat().st_size == 0
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


def save_grid(images: torch.Tensor, path: Path) -> None:
    """An 8-column PNG grid of images in [-1, 1]."""
    from PIL import Image

    n, c, h, w = images.shape
    cols = 8
    rows = math.ceil(n / cols)
    grid = torch.ones(c, rows * (h + 2) + 2, cols * (w + 2) + 2)
    for i, im in enumerate(images.clamp(-1, 1)):
        r, k = divmod(i, cols)
        grid[:, 2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + k * (w + 2) : 2 + k * (w + 2) + w] = im
    arr = ((grid + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if c == 1 else arr).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


@torch.no_grad()
def sample(run: Run, n: int, seed_tag: str, model: nn.Module | None = None) -> torch.Tensor:
    model = model if model is not None else run.ema
    z = draw(run.latent_shape, n, run.distribution, seeded(run.cfg.seed, seed_tag))
    return torch.cat([model(chunk) for chunk in z.split(256)])


def write_checkpoint(run: Run) -> None:
    distributed.sync_buffers(distributed.unwrap(run.generator), run.ctx)
    if run.critic is not None:
        distributed.sync_buffers(distributed.unwrap(run.critic), run.ctx)
    if run.ctx.is_main:
        meta = {"batches": run.batches, "resume_key": run.cfg.resume_key() | {"objective": run.obj.name}}
        run.last_checkpoint = checkpoint.save(run.cfg.ckpt_root, run.step, run.modules(), run.optimizers(), meta)
    distributed.barrier(run.ctx)


def run_key(run: Run) -> dict:
    return run.cfg.resume_key() | {"objective": run.obj.name}


def maybe_resume(run: Run) -> None:
    if not run.cfg.resume:
        return
    found = checkpoint.latest(run.cfg.ckpt_root)
    if found is None:
        raise GencompressError(f"--resume: no complete checkpoint in {run.cfg.ckpt_root}")
    path, meta = found
    modules = run.modules()
    checkpoint.restore(path, meta, modules, run.optimizers(), run_key(run))
    run.step, run.batches, run.last_checkpoint = int(meta["step"]), int(meta["batches"]), path
    if run.ctx.is_main:
        print(f"gencompress: resumed from {path} (step {run.step})", file=sys.stderr)


# --- evaluation ------------------------------------------------------------------------


class Evaluator:
    """FID/KID (and IS on digits) of generated samples against the real data, rank 0."""

    def __init__(self, run: Run):
        from gencompress import fid

        self.fid = fid
        data = run.data
        self.extractor = fid.extractor_for(data.name, data.images, data.fingerprint, run.cfg.inception_weights)
        self.real = fid.real_features(self.extractor, data.images, data.fingerprint)

    def __call__(self, run: Run, model: nn.Module | None = None) -> dict:
        fakes = sample(run, run.cfg.eval_samples, "eval", model)
        return self.fid.quality(self.extractor, self.real, fakes, seed=run.cfg.seed)


@torch.no_grad()
def reconstruction_mse(run: Run, decoder: nn.Module, encoder: nn.Module) -> float:
    """VAE: MSE of decoding the posterior means of (up to) 512 real images."""
    was = encoder.training
    encoder.eval()
    x = run.data.images[:512]
    mu, _ = encoder(x)
    out = float(((decoder(mu.view(len(mu), *run.latent_shape)) - x) ** 2).mean())
    encoder.train(was)
    return out


def end_of_epoch(run: Run, evaluator: Evaluator | None) -> None:
    epoch = run.epoch  # epochs completed
    if run.cfg.samples_every_epoch:
        save_grid(sample(run, GRID, "grid"), run.cfg.ckpt_root / "samples" / f"epoch-{epoch:04d}.png")
    if evaluator is not None and run.cfg.eval_every and epoch % run.cfg.eval_every == 0:
        run.log.write("metrics.csv", {"step": run.step, "epoch": epoch, **evaluator(run)})


# --- the loop --------------------------------------------------------------------------


def total_steps(run: Run) -> int:
    batches_per_step = 1 if run.is_vae else run.obj.n_critic
    by_epochs = math.ceil(run.cfg.epochs * run.batches_per_epoch / batches_per_step)
    return min(by_epochs, run.cfg.max_steps) if run.cfg.max_steps else by_epochs


def train_loop(run: Run, evaluator: Evaluator | None) -> None:
    step_fn = vae_step if run.is_vae else gan_step
    end = total_steps(run)
    steps = bar(range(run.step, end), f"train {run.cfg.model} ({run.obj.name})",
                run.cfg.progress and run.ctx.is_main, initial=run.step, total=end)
    for _ in steps:
        epoch_before = run.epoch
        losses = step_fn(run, seeded(run.cfg.seed, "step", run.ctx.rank, run.step))
        run.step += 1
        update_ema(run)
        if run.ctx.is_main:
            run.log.write("losses.csv", {"step": run.step, "epoch": run.epoch, **{k: f"{v:.6g}" for k, v in losses.items()}})
            if run.epoch > epoch_before:
                end_of_epoch(run, evaluator)
        if run.step % run.cfg.checkpoint_every == 0 and run.step < end:
            write_checkpoint(run)
    write_checkpoint(run)


def fit(cfg: TrainConfig) -> Bundle:
    """Train `cfg.model` with `cfg.objective` on `cfg.data`; write the bundle to `cfg.out` (rank 0)."""
    # Every rank checks before the rendezvous in setup(), so no rank has written anything yet.
    checkpoint.check_root(cfg.ckpt_root, cfg.resume)
    ctx = distributed.setup()
    try:
        with checkpoint.claim_root(cfg.ckpt_root, cfg.resume) if ctx.is_main else contextlib.nullcontext():
            run = build_run(cfg, ctx)
            maybe_resume(run)
            if ctx.is_main:
                run.log = Logs(cfg.ckpt_root, run.step if cfg.resume else None)
            evaluator = Evaluator(run) if ctx.is_main and cfg.evaluate else None
            train_loop(run, evaluator)
            return finish(run, evaluator)
    finally:
        distributed.teardown(ctx)


def finish(run: Run, evaluator: Evaluator | None) -> Bundle:
    replica_diff = distributed.replica_max_diff(distributed.unwrap(run.generator), run.ctx)
    step = {"step": "train", "objective": run.obj.name, "data": run.data.name, "steps": run.step,
            "epochs": run.epoch, "seed": run.cfg.seed, "batch_size": run.cfg.batch_size,
            "world_size": run.ctx.world, "ema_decay": run.cfg.ema_decay, **({"beta": run.cfg.beta} if run.is_vae else {})}
    if not run.is_vae:  # how to rebuild the discriminator bundled beside the generator
        step["discriminator_kwargs"] = discriminator_kwargs(run.data.channels, run.obj)
    bundle = zoo_bundle(run.cfg.model, run.ema, **run.kwargs)
    bundle.record(step)
    if not run.ctx.is_main:
        return bundle
    metrics = {"replica_max_abs_diff": replica_diff}
    if evaluator is not None:
        metrics["ema"] = evaluator(run)
        metrics["raw"] = evaluator(run, distributed.unwrap(run.generator).eval())
        run.log.write("metrics.csv", {"step": run.step, "epoch": run.epoch, **metrics["ema"]})
    if run.is_vae:
        metrics["recon_mse"] = reconstruction_mse(run, run.ema, distributed.unwrap(run.critic))
    bundle.manifest["metrics"]["train"] = metrics
    return _attach_files(run, bundle).save(run.cfg.out)


def zoo_bundle(name: str, model: nn.Module, **kwargs) -> Bundle:
    """An in-memory bundle for a zoo model (trained or not)."""
    entry = zoo.get(name)
    merged = {**entry.defaults, **kwargs}
    shape = list(entry.input_shape(merged))
    manifest = new_manifest(
        architecture={"kind": "zoo", "name": name, "kwargs": merged},
        input_spec={"name": "latent", "shape": shape, "dtype": "float32", "distribution": entry.input_distribution},
        output_spec={"name": "image", "range": [-1.0, 1.0], "layout": "NCHW"},
    )
    return Bundle(manifest, model.eval())


def _attach_files(run: Run, bundle: Bundle) -> Bundle:
    root = run.cfg.ckpt_root
    save_grid(sample(run, GRID, "grid"), root / "samples" / "final.png")
    bundle.files["report/samples.png"] = root / "samples" / "final.png"
    for name in ("losses.csv", "metrics.csv"):
        if (root / name).is_file():
            bundle.files[f"report/{name}"] = root / name
    # The VAE's encoder travels with the decoder (calibration from real data); a GAN's
    # discriminator with the generator (adversarial distillation after pruning).
    name = "encoder.safetensors" if run.is_vae else "discriminator.safetensors"
    bundle.files[name] = save_state(distributed.unwrap(run.critic), root / name)
    return bundle


def save_state(module: nn.Module, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}, str(path))
    return path


def discriminator_kwargs(channels: int, obj: Objective) -> dict:
    return {"nc": channels, **({"norm": obj.disc_norm} if obj.disc_norm else {})}

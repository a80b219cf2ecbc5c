"""`gencompress train`: train a zoo generator (GAN objectives) or a VAE on real data."""
from __future__ import annotations

import click

from gencompress.cli.options import writes_output
from gencompress.train.config import TrainConfig
from gencompress.train.objectives import OBJECTIVES


@click.command()
@click.argument("model", default="dcgan")
@click.option("--objective", type=click.Choice(list(OBJECTIVES)), default=None,
              help="Loss. Default: gan, or elbo for vae_decoder.")
@click.option("--data", default="digits", show_default=True, metavar="digits|folder:PATH|npz:PATH", help="Training images.")
@click.option("--out", default="gencompress-train", show_default=True, type=click.Path(file_okay=False), help="Bundle folder written at the end.")
@click.option("--epochs", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--max-steps", default=None, type=click.IntRange(min=1), help="Stop after this many generator steps (whichever of this and --epochs ends first).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="Per process.")
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True), help="Default: the objective's paper setting.")
@click.option("--beta", default=1.0, show_default=True, type=click.FloatRange(min=0), help="VAE: weight of the KL term.")
@click.option("--ema-decay", default=0.999, show_default=True, type=click.FloatRange(0, 1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--resume", is_flag=True, help="Continue bit for bit from the newest checkpoint.")
@click.option("--checkpoint-every", default=200, show_default=True, type=click.IntRange(min=1), help="Steps between checkpoints.")
@click.option("--checkpoint-dir", default=None, type=click.Path(file_okay=False), help="Checkpoints, logs, sample grids. Default: OUT.ckpt")
@click.option("--no-eval", is_flag=True, help="Skip FID/KID evaluation (faster).")
@click.option("--eval-every", default=10, show_default=True, type=click.IntRange(min=0), help="Epochs between FID/KID evaluations (0: only at the end).")
@click.option("--eval-samples", default=1000, show_default=True, type=click.IntRange(min=2))
@click.option("--inception-weights", default=None, type=click.Path(dir_okay=False), help="Local TorchScript Inception feature extractor for FID/KID.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@writes_output
def train(model, objective, data, out, epochs, max_steps, batch_size, lr, beta, ema_decay, seed, resume,
          checkpoint_every, checkpoint_dir, no_eval, eval_every, eval_samples, inception_weights, no_progress):
    """Train MODEL (a zoo name) on DATA; writes a bundle to --out.

    Under `torchrun --nproc_per_node N -m gencompress train ...` it trains with
    DistributedDataParallel; rank 0 writes checkpoints, logs, samples and the bundle.
    """
    from gencompress.train import fit

    cfg = TrainConfig(
        model=model, out=out, objective=objective, data=data, epochs=epochs, max_steps=max_steps,
        batch_size=batch_size, lr=lr, beta=beta, ema_decay=ema_decay, seed=seed, resume=resume,
        checkpoint_every=checkpoint_every, checkpoint_dir=checkpoint_dir, evaluate=not no_eval, eval_every=eval_every,
        eval_samples=eval_samples, inception_weights=inception_weights, progress=not no_progress,
    )
    bundle = fit(cfg)
    if bundle.path is not None:
        m = bundle.manifest["metrics"]["train"]
        quality = f"FID {m['ema']['fid']:.2f} ({m['ema']['extractor']})" if "ema" in m else ""
        click.echo(f"wrote {bundle.path}: {bundle.last_step('train')['steps']} steps, {quality}")

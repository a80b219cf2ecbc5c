"""`gencompress train`: train a zoo generator (GAN objectives) or a VAE on real data."""
from __future__ import annotations

import click

from gencompress.cli.options import checkpointing_options, fid_options, out_option, refuse_unless, seed_option, writes_output
from gencompress.train.config import TrainConfig
from gencompress.train.objectives import OBJECTIVES


@click.command()
@click.argument("model", default="dcgan")
@click.option("--objective", type=click.Choice(list(OBJECTIVES)), default=None,
              help="Loss. Default: gan, or elbo for vae_decoder.")
@click.option("--data", default="digits", show_default=True, metavar="digits|folder:PATH|npz:PATH", help="Training images.")
@out_option("gencompress-train", "Bundle folder written at the end (atomically).")
@click.option("--epochs", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--max-steps", default=None, type=click.IntRange(min=1), help="Stop after this many generator steps (whichever of this and --epochs ends first).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="Per process.")
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True), help="Default: the objective's paper setting.")
@click.option("--beta", default=1.0, show_default=True, type=click.FloatRange(min=0), help="VAE: weight of the KL term.")
@click.option("--ema-decay", default=0.999, show_default=True, type=click.FloatRange(0, 1))
@seed_option(0)
@checkpointing_options("Checkpoints, logs, sample grids")
@click.option("--no-eval", is_flag=True, help="Skip FID/KID evaluation (faster).")
@click.option("--eval-every", default=10, show_default=True, type=click.IntRange(min=0), help="Epochs between FID/KID evaluations (0: only at the end).")
@fid_options(1000, minimum=2, help="Generated samples for each FID/KID evaluation.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@writes_output
@click.pass_context
def train(ctx, model, objective, data, out, epochs, max_steps, batch_size, lr, beta, ema_decay, seed, checkpoint_dir, checkpoint_every, resume,
          no_eval, eval_every, fid_samples, inception_weights, no_progress):
    """Train MODEL (a zoo name) on DATA; writes a bundle to --out.

    Under `torchrun --nproc_per_node N -m gencompress train ...` it trains with
    DistributedDataParallel; rank 0 writes checkpoints, logs, samples and the bundle.
    """
    from gencompress.train import fit

    refuse_unless(ctx, not no_eval, ("eval_every", "fid_samples", "inception_weights"), "--no-eval skips FID/KID")
    cfg = TrainConfig(
        model=model, out=out, objective=objective, data=data, epochs=epochs, max_steps=max_steps,
        batch_size=batch_size, lr=lr, beta=beta, ema_decay=ema_decay, seed=seed, resume=resume,
        checkpoint_every=checkpoint_every, checkpoint_dir=checkpoint_dir, evaluate=not no_eval, eval_every=eval_every,
        eval_samples=fid_samples, inception_weights=inception_weights, progress=not no_progress,
    )
    bundle = fit(cfg)
    if bundle.path is not None:
        m = bundle.manifest["metrics"]["train"]
        quality = f"FID {m['ema']['fid']:.2f} ({m['ema']['extractor']})" if "ema" in m else ""
        click.echo(f"wrote {bundle.path}: {bundle.last_step('train')['steps']} steps, {quality}")

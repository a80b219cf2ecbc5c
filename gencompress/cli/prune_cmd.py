"""`gencompress prune`: structured channel pruning (Torch-Pruning), then distillation."""
from __future__ import annotations

import tempfile
from pathlib import Path

import click

from gencompress.benchmarks.report import prune_markdown
from gencompress.cli.models import is_zoo_name, load_model
from gencompress.cli.options import (checkpointing_options, data_options, distill_steps_option, fid_samples_option, json_option, out_option,
                                     prune_option, refuse_unless, seed_option, shows_progress, write_json, writes_output)
from gencompress.errors import GencompressError


def load_source(spec: str, out: str, progress: bool = True):
    """A bundle folder, or a zoo name (trained on digits on first use). Never the output."""
    from gencompress import zoo

    if Path(out).resolve() == Path(spec).resolve():
        raise GencompressError("--out must differ from the input bundle (the input is never modified)")
    if not is_zoo_name(spec) and not Path(spec).is_dir():
        raise GencompressError(f"{spec} is not a bundle folder or a zoo name ({', '.join(zoo.names())})")
    return load_model(spec, progress)


@click.command()
@click.argument("bundle", metavar="BUNDLE")
@prune_option(required=True)
@click.option("--importance", type=click.Choice(["l1", "l2", "taylor"]), default="l1", show_default=True, help="Channel importance.")
@click.option("--round-to", default=8, show_default=True, type=int, help="Kept channel counts are multiples of this.")
@click.option("--protect", multiple=True, metavar="LAYER", help="Keep this layer's output channels (repeatable).")
@distill_steps_option()
@click.option("--distill-lr", default=1e-3, show_default=True, type=float, help="Distillation learning rate.")
@click.option("--feature-weight", default=1.0, show_default=True, type=float, help="Weight of the feature-matching loss.")
@fid_samples_option(1000, help="Samples for FID/KID against the bundle's training data, before and after distillation (0: skip).")
@click.option("--gan-weight", default=0.0, show_default=True, type=float,
              help="Weight of the adversarial loss against the bundle's original discriminator (0: off).")
@seed_option(0)
@data_options
@checkpointing_options("Distillation checkpoints")
@out_option()
@json_option("the pruning record")
@writes_output
@click.pass_context
def prune(ctx, bundle, prune_ratio, importance, round_to, protect, distill_steps, distill_lr, feature_weight, fid_samples, gan_weight, seed,
          checkpoint_dir, checkpoint_every, resume, out, json_out, data):
    """Prune BUNDLE's channels by --prune and distil it from the original."""
    from gencompress.compress import PruneConfig
    from gencompress.compress import prune as run_prune
    from gencompress.compress.distill import Checkpoints
    from gencompress.inputs import EVAL_SAMPLES, prepare_inputs
    from gencompress.train import checkpoint

    refuse_unless(ctx, distill_steps > 0, ("distill_lr", "feature_weight", "gan_weight", "checkpoint_dir", "checkpoint_every", "resume"),
                  "it sets the distillation, and --distill-steps is 0")
    cfg = PruneConfig(ratio=prune_ratio, importance=importance, round_to=round_to, protect=tuple(protect), seed=seed,
                      distill_steps=distill_steps, distill_lr=distill_lr, feature_weight=feature_weight,
                      gan_weight=gan_weight)
    cfg.validate()  # before any model is loaded or trained
    checkpoints = Checkpoints(Path(checkpoint_dir or f"{Path(out)}.ckpt"), checkpoint_every, resume)
    if resume and checkpoint.latest(checkpoints.root) is None:  # before any model is loaded or trained
        raise GencompressError(f"--resume: no distillation checkpoint in {checkpoints.root}")
    with checkpoint.claim_root(checkpoints.root, resume):  # a fresh run never writes into another run's checkpoints
        progress = shows_progress(json_out)
        source = load_source(bundle, out, progress)
        # the first EVAL_SAMPLES stay out of distillation, as in build (they judge quality there)
        user = prepare_inputs(source.manifest, data.spec, data.io_spec, EVAL_SAMPLES)
        pruned = run_prune(source, cfg, progress=progress, checkpoints=checkpoints, fid_samples=fid_samples, data=user)
    stats = pruned.manifest["metrics"]["prune"]
    with tempfile.TemporaryDirectory(prefix="gencompress-prune-") as work:
        report = Path(work) / "prune.md"
        report.write_text(f"# gencompress prune report\n\nRatio {prune_ratio:g}, importance {importance}, round_to {round_to}, "
                          f"{distill_steps} distillation steps.\n\n{prune_markdown(stats)}")
        pruned.files["report/prune.md"] = report
        saved = pruned.save(out)
    if json_out:
        write_json(json_out, {"out": str(saved.path), **stats})
    if json_out == "-":
        return
    click.echo(f"wrote {saved.path}: MACs {stats['macs_before']:,} -> {stats['macs_after']:,} "
               f"({stats['macs_reduction']:.2f}x fewer), params {stats['params_before']:,} -> {stats['params_after']:,}")
    dq = stats.get("data_quality")
    if dq:
        fids = ", ".join(f"{label} {dq[key]['fid']:.3f}" for label, key in
                         [("original", "original"), ("pruned", "pruned_no_distill"), ("distilled", "pruned_distilled")] if key in dq)
        click.echo(f"FID vs {dq['data']} ({dq['original']['extractor']}): {fids}")

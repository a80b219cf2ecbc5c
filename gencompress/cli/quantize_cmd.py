"""`gencompress quantize`: INT8 PTQ (modelopt), optional PSNR budget and QAT."""
from __future__ import annotations

import click

from gencompress import defaults
from gencompress.cli.options import (data_options, eval_samples_option, int8_options, json_option, out_option, refuse_unless, seed_option,
                                     shows_progress, write_json, writes_output)
from gencompress.cli.prune_cmd import load_source


@click.command()
@click.argument("bundle", metavar="BUNDLE")
@int8_options(calib_samples=defaults.CALIB_SAMPLES)
@click.option("--percentile", default=99.99, show_default=True, type=float, help="For --calibrator percentile.")
@eval_samples_option(defaults.EVAL_SAMPLES, "Held-out inputs that choose the calibrator and the float layers (with --data: its first ones).")
@data_options
@click.option("--keep-float", multiple=True, metavar="LAYER", help="Keep this layer in float (repeatable, fnmatch pattern).")
@click.option("--qat-lr", default=1e-5, show_default=True, type=float, help="Learning rate of --qat-steps.")
@seed_option(1234)
@out_option()
@json_option("layer precisions and the search")
@writes_output
@click.pass_context
def quantize(ctx, bundle, calibrator, calib_samples, calib_from, deconv_weight_axis, min_psnr, no_floor, bias_correction, qat_steps,
             percentile, eval_samples, keep_float, qat_lr, seed, out, json_out, data):
    """INT8-quantise BUNDLE (fake-quant, TensorRT's Q/DQ form on export)."""
    from gencompress.compress import QuantConfig
    from gencompress.compress import quantize as run_quantize
    from gencompress.inputs import prepare_inputs

    refuse_unless(ctx, calibrator in ("percentile", "auto"), ("percentile",), "it sets --calibrator percentile (or auto's percentile candidate)")
    refuse_unless(ctx, qat_steps > 0, ("qat_lr",), "it sets the QAT of --qat-steps N")
    if data.spec is not None and calib_from != "auto":
        raise click.UsageError(f"--calib-from {calib_from} does not apply with --data: your data calibrates", ctx)
    cfg = QuantConfig(calibrator=calibrator, percentile=percentile, calib_samples=calib_samples, calib_from=calib_from,
                      deconv_weight_axis=int(deconv_weight_axis), keep_float=tuple(keep_float), min_psnr=min_psnr, no_floor=no_floor,
                      qat_steps=qat_steps, qat_lr=qat_lr, seed=seed, bias_correction=bias_correction, eval_samples=eval_samples)
    cfg.validate()
    progress = shows_progress(json_out)
    source = load_source(bundle, out, progress)
    user = prepare_inputs(source.manifest, data.spec, data.io_spec, cfg.eval_samples)
    saved = run_quantize(source, cfg, progress, data=user).save(out)
    step = saved.last_step("quantize")
    search = step.get("sensitivity")
    if json_out:
        write_json(json_out, {"out": str(saved.path), "precision": saved.manifest["precision"], "sensitivity": search, "qat": step.get("qat"),
                              "calibrators": step.get("calibrators"), "floor": step.get("floor")})
    if json_out == "-":
        return
    for layer, prec in saved.manifest["precision"].items():
        sens = f"  alone: {search['layer_psnr_db'][layer]:.2f} dB" if search and layer in search["layer_psnr_db"] else ""
        click.echo(f"{layer:30s} {prec}{sens}")
    cal = step["calibrators"]
    scores = ", ".join(f"{k} {v['psnr_db']:.2f} dB" for k, v in cal["scores"].items())
    click.echo(f"calibrator {cal['chosen']} (held-out PSNR: {scores})")
    summary = (f", PSNR {search['psnr_db']:.2f} dB, SSIM {search['ssim']:.4f} on held-out latents: meets {cfg.floor().describe()} "
               f"with {len(search['keep_float'])} float layer(s)") if search else ", no quality floor"
    click.echo(f"wrote {saved.path}{summary}")

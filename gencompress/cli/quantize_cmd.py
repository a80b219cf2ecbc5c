"""`gencompress quantize`: INT8 PTQ (modelopt), optional PSNR budget and QAT."""
from __future__ import annotations

import click

from gencompress import defaults
from gencompress.cli.options import calib_from_option, data_options, emit_json, writes_output
from gencompress.cli.prune_cmd import load_source


@click.command()
@click.argument("bundle", metavar="BUNDLE")
@click.option("--int8", "precision", flag_value="int8", default=True, help="INT8 (the only precision here).")
@click.option("--calibrator", type=click.Choice(defaults.CALIBRATOR_CHOICES), default=defaults.DEFAULT_CALIBRATOR, show_default=True,
              help="auto: calibrate with each and keep the best on held-out latents.")
@click.option("--percentile", default=99.99, show_default=True, type=float, help="For --calibrator percentile.")
@click.option("--calib-samples", default=defaults.CALIB_SAMPLES, show_default=True, type=click.IntRange(min=1))
@calib_from_option
@data_options
@click.option("--deconv-weight-axis", type=click.Choice(["0", "1"]), default="1", show_default=True,
              help="Per-channel axis of ConvTranspose weight scales (1: output channels).")
@click.option("--keep-float", multiple=True, metavar="LAYER", help="Keep this layer in float (repeatable, fnmatch pattern).")
@click.option("--min-psnr", type=float, default=None,
              help="Quality floor in dB vs FP32, replacing the default (PSNR >= 35 dB and SSIM >= 0.97): keep the fewest most sensitive layers float.")
@click.option("--no-quality-floor", "no_floor", is_flag=True, help="Keep every layer INT8, whatever the quality.")
@click.option("--bias-correction", is_flag=True, help="Empirical bias correction after calibration, kept where it scores better.")
@click.option("--qat-steps", default=0, show_default=True, type=click.IntRange(min=0), help="QAT steps distilled from FP32.")
@click.option("--qat-lr", default=1e-5, show_default=True, type=float)
@click.option("--seed", default=1234, show_default=True, type=int)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output bundle folder (written atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print layer precisions and the search as JSON on stdout.")
@writes_output
def quantize(bundle, precision, calibrator, percentile, calib_samples, calib_from, deconv_weight_axis, keep_float, min_psnr, no_floor,
             bias_correction, qat_steps, qat_lr, seed, out, as_json, data):
    """INT8-quantise BUNDLE (fake-quant, TensorRT's Q/DQ form on export)."""
    from gencompress.compress import QuantConfig
    from gencompress.compress import quantize as run_quantize
    from gencompress.inputs import prepare_inputs

    cfg = QuantConfig(calibrator=calibrator, percentile=percentile, calib_samples=calib_samples, calib_from=calib_from,
                      deconv_weight_axis=int(deconv_weight_axis), keep_float=tuple(keep_float), min_psnr=min_psnr, no_floor=no_floor,
                      qat_steps=qat_steps, qat_lr=qat_lr, seed=seed, bias_correction=bias_correction)
    cfg.validate()
    source = load_source(bundle, out)
    user = prepare_inputs(source.manifest, data.spec, data.io_spec, cfg.eval_samples)
    saved = run_quantize(source, cfg, data=user).save(out)
    step = saved.last_step("quantize")
    search = step.get("sensitivity")
    if as_json:
        emit_json({"out": str(saved.path), "precision": saved.manifest["precision"], "sensitivity": search, "qat": step.get("qat"),
                   "calibrators": step.get("calibrators"), "floor": step.get("floor")})
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

"""`gencompress export`: a bundle -> checked, verified ONNX (or a TensorRT engine)."""
from __future__ import annotations

import click

from gencompress.cli.options import (data_options, eval_samples_option, json_option, out_option, precision_option, refuse_unless, target_option,
                                     write_json, writes_output)
from gencompress.errors import GencompressError


def _profile(ctx, param, value):
    from gencompress.export.profiles import BatchProfile

    try:
        return BatchProfile.parse(value)
    except GencompressError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("bundle", metavar="BUNDLE")
@click.option("--format", "fmt", type=click.Choice(["onnx", "engine"]), default="onnx", show_default=True,
              help="onnx: checked and verified ONNX; engine: TensorRT engine.plan from the bundle's ONNX (needs TensorRT).")
@precision_option(None, "Precision of the graph written. Default: int8 for a quantised bundle, else fp32.")
@click.option("--opset", default=17, show_default=True, type=int, help="ONNX opset (17 or later).")
@click.option("--dynamic-batch", "batch", default="1:8:32", show_default=True, callback=_profile, metavar="MIN:OPT:MAX",
              help="Batch range (a single N for a fixed batch).")
@target_option
@click.option("--verify-psnr", default=40.0, show_default=True, type=float,
              help="Verification threshold: fail (exit 1) when ONNX Runtime vs PyTorch falls under this PSNR in dB.")
@eval_samples_option(16, "Inputs that verify ONNX Runtime against PyTorch (with --data: its first ones).")
@data_options
@click.option("--no-slim", is_flag=True, help="Skip onnxslim simplification.")
@click.option("--workspace-mib", default=1024, show_default=True, type=click.IntRange(min=64), help="TensorRT builder workspace (--format engine).")
@out_option()
@json_option("the manifest's export results")
@writes_output
@click.pass_context
def export(ctx, bundle, fmt, precision, opset, batch, target, verify_psnr, eval_samples, no_slim, workspace_mib, out, json_out, data):
    """Export BUNDLE (a bundle folder or an .onnx file) to ONNX or a TensorRT engine."""
    from gencompress.export import ExportConfig
    from gencompress.export import export as run_export

    refuse_unless(ctx, fmt == "engine", ("workspace_mib",), "it sizes the TensorRT builder of --format engine")
    cfg = ExportConfig(source=bundle, out=out, format=fmt, precision=precision, opset=opset, batch=batch, target=target,
                       min_psnr=verify_psnr, verify_samples=eval_samples, slim=not no_slim, workspace_mib=workspace_mib,
                       data=data.spec, io_spec=data.io_spec)
    saved = run_export(cfg)
    metrics = saved.manifest["metrics"]
    if json_out:
        write_json(json_out, {"out": str(saved.path), "recipe_step": saved.recipe[-1],
                              **{k: metrics[k] for k in metrics if k in ("export_verification", "engine", "deployment")}})
    if json_out != "-":
        click.echo(f"wrote {saved.path} ({', '.join(sorted(saved.manifest['files']))})")

"""`gencompress export`: a bundle -> checked, verified ONNX (or a TensorRT engine)."""
from __future__ import annotations

import click

from gencompress import defaults
from gencompress.cli.options import data_options, emit_json, writes_output
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
@click.option("--precision", type=click.Choice(defaults.PRECISIONS), default=None,
              help="Default: int8 for a quantised bundle, else fp32.")
@click.option("--opset", default=17, show_default=True, type=int, help="ONNX opset (17 or later).")
@click.option("--dynamic-batch", "batch", default="1:8:32", show_default=True, callback=_profile, metavar="MIN:OPT:MAX",
              help="Batch range (a single N for a fixed batch).")
@click.option("--target", default=defaults.DEFAULT_TARGET, show_default=True, type=click.Choice(defaults.TARGETS),
              help="Where it will run: ops are checked for it; Jetson targets add build_engine.sh, run_bench.sh, README.md.")
@click.option("--min-psnr", default=40.0, show_default=True, type=float, help="Fail (exit 1) when ORT vs PyTorch falls under this PSNR.")
@click.option("--verify-samples", default=16, show_default=True, type=click.IntRange(min=1),
              help="Fixed latents for verification (with --data: its first ones).")
@data_options
@click.option("--no-slim", is_flag=True, help="Skip onnxslim simplification.")
@click.option("--workspace-mib", default=1024, show_default=True, type=click.IntRange(min=64), help="TensorRT builder workspace.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output bundle folder (written atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest's export results as JSON on stdout.")
@writes_output
def export(bundle, fmt, precision, opset, batch, target, min_psnr, verify_samples, no_slim, workspace_mib, out, as_json, data):
    """Export BUNDLE (a bundle folder or an .onnx file) to ONNX or a TensorRT engine."""
    from gencompress.export import ExportConfig
    from gencompress.export import export as run_export

    cfg = ExportConfig(source=bundle, out=out, format=fmt, precision=precision, opset=opset, batch=batch, target=target,
                       min_psnr=min_psnr, verify_samples=verify_samples, slim=not no_slim, workspace_mib=workspace_mib,
                       data=data.spec, io_spec=data.io_spec)
    saved = run_export(cfg)
    metrics = saved.manifest["metrics"]
    if as_json:
        emit_json({"out": str(saved.path), "recipe_step": saved.recipe[-1], **{k: metrics[k] for k in metrics if k in ("export_verification", "engine", "deployment")}})
    else:
        click.echo(f"wrote {saved.path} ({', '.join(sorted(saved.manifest['files']))})")

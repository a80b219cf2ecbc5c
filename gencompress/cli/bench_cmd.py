"""`gencompress bench BUNDLE...`: latency, memory and quality per backend and batch."""
from __future__ import annotations

import click

from gencompress.cli.options import emit_json


def int_list(ctx, param, value):
    try:
        return tuple(int(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None


def str_list(ctx, param, value):
    return tuple(v.strip() for v in str(value).split(",") if v.strip())


def load_bundle(spec: str, progress: bool = True):
    """A bundle folder, an .onnx file, or a zoo name (the zoo model trained on digits)."""
    from pathlib import Path

    from gencompress import zoo
    from gencompress.loading import load_spec

    if spec in zoo.names() and not Path(spec).exists():
        from gencompress.train.pretrained import get_or_train

        spec = str(get_or_train(spec, progress=progress).path)
    return load_spec(spec)


@click.command()
@click.argument("bundles", nargs=-1, required=True, metavar="BUNDLE...")
@click.option("--backend", "backends", default="ort", show_default=True, callback=str_list,
              help="Comma-separated: torch, torch-compile, cuda-graph, ort, trt, openvino.")
@click.option("--batch", "batches", default="1,8,32", show_default=True, callback=int_list, help="Comma-separated batch sizes.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
              help="PyTorch backends' dtype (ONNX backends run the bundle's own graph and report its precision).")
@click.option("--channels-last", is_flag=True, help="PyTorch backends: channels_last memory format.")
@click.option("--iters", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0))
@click.option("--bench-seconds", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Time cap of each latency timing: at least --iters calls, but stop after this many seconds (at least 3 calls).")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--quality-samples", default=64, show_default=True, type=click.IntRange(min=1),
              help="Fixed latents for PSNR/SSIM against the original model.")
@click.option("--data-samples", default=0, show_default=True, type=click.IntRange(min=0),
              help="Generated samples for FID/KID/IS against real data (0: skip).")
@click.option("--reference", default=None, metavar="BUNDLE", help="Original model to compare with (default: the bundle's own FP32 weights).")
@click.option("--fps", type=float, default=None, help="Real-time verdict against this frame rate.")
@click.option("--budget-ms", type=float, default=None, help="Real-time verdict against this per-frame budget.")
@click.option("--json", "json_out", default=None, metavar="FILE", help="Write the results JSON here (else to stdout).")
def bench(bundles, backends, batches, device, precision, channels_last, iters, warmup, bench_seconds, threads, quality_samples,
          data_samples, reference, fps, budget_ms, json_out):
    """Time BUNDLE(s) on each backend and batch; judge quality against the original."""
    from gencompress.benchmarks.bench import BenchConfig, run
    from gencompress.benchmarks.results_io import merge, write_json

    cfg = BenchConfig(backends=backends, batches=batches, device=device, precision=precision, channels_last=channels_last,
                      iters=iters, warmup=warmup, seconds=bench_seconds, threads=threads, quality_samples=quality_samples, data_samples=data_samples,
                      fps=fps, budget_ms=budget_ms)
    ref = load_bundle(reference) if reference else None
    result = merge([run(load_bundle(spec), cfg, ref) for spec in bundles])
    if json_out:
        write_json(json_out, result)
        click.echo(f"wrote {json_out}: {len(result['rows'])} rows", err=True)
    else:
        emit_json({k: v for k, v in result.items() if k != "sample_grids"})

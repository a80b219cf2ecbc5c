"""`gencompress bench BUNDLE...`: latency, memory and quality per backend and batch."""
from __future__ import annotations

import click

from gencompress.cli.options import (data_options, emit_json, eval_samples_option, fid_options, json_option, realtime_options, refuse_unless,
                                     shows_progress, str_list, timing_options, write_json)
from gencompress.cli.models import load_model


def load_bundle(spec: str, progress: bool = True):
    """A bundle folder, an .onnx file, or a zoo name (the zoo model trained on digits)."""
    return load_model(spec, progress)


@click.command()
@click.argument("bundles", nargs=-1, required=True, metavar="BUNDLE...")
@click.option("--backend", "backends", default="ort", show_default=True, callback=str_list,
              help="Comma-separated: torch, torch-compile, cuda-graph, ort, trt, openvino.")
@timing_options(batches="1,8,32", iters=50, warmup=10, seconds=10.0)
@click.option("--torch-device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="PyTorch backends' device.")
@click.option("--torch-dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
              help="PyTorch backends' dtype (ONNX backends run the bundle's own graph and report its precision).")
@click.option("--channels-last", is_flag=True, help="PyTorch backends: channels_last memory format.")
@eval_samples_option(64, "Inputs for PSNR/SSIM against the original model (with --data: its first ones).")
@fid_options(0)
@click.option("--reference", default=None, metavar="BUNDLE", help="Original model to compare with (default: the bundle's own FP32 weights).")
@data_options
@click.option("--ref-data", default=None, metavar="folder:PATH|npz:PATH",
              help="FID/KID (with --fid-samples) against these images, on an extractor trained for them (cached).")
@realtime_options
@json_option("the results")
@click.pass_context
def bench(ctx, bundles, backends, batches, iters, warmup, bench_seconds, threads, torch_device, torch_dtype, channels_last, eval_samples,
          fid_samples, inception_weights, reference, fps, budget_ms, json_out, data, ref_data):
    """Time BUNDLE(s) on each backend and batch; judge quality against the original."""
    from gencompress.benchmarks.bench import BenchConfig, results_table, run
    from gencompress.benchmarks.bench import TORCH_BACKENDS
    from gencompress.benchmarks.results_io import merge

    refuse_unless(ctx, any(b in TORCH_BACKENDS for b in backends), ("torch_device", "torch_dtype", "channels_last"),
                  f"it sets the PyTorch backends ({', '.join(TORCH_BACKENDS)}), and --backend names none")
    refuse_unless(ctx, fid_samples > 0, ("ref_data", "inception_weights"), "FID/KID runs only with --fid-samples N")
    cfg = BenchConfig(backends=backends, batches=batches, device=torch_device, precision=torch_dtype, channels_last=channels_last,
                      iters=iters, warmup=warmup, seconds=bench_seconds, threads=threads, quality_samples=eval_samples, data_samples=fid_samples,
                      fps=fps, budget_ms=budget_ms, data=data.spec, io_spec=data.io_spec,
                      ref_data=ref_data, inception_weights=inception_weights, progress=shows_progress(json_out))
    ref = load_bundle(reference, cfg.progress) if reference else None
    result = merge([run(load_bundle(spec, cfg.progress), cfg, ref) for spec in bundles])
    # the table is for a person: on stdout unless stdout carries the JSON
    to_stdout = json_out in (None, "-")
    click.echo(results_table(result), err=to_stdout)
    if to_stdout:  # the sample grids (PNG data) go to a file only
        emit_json({k: v for k, v in result.items() if k != "sample_grids"})
    else:
        write_json(json_out, result)

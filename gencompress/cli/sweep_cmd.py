"""`gencompress sweep BUNDLE`: pruning ratio x precision, measured, with the Pareto front."""
from __future__ import annotations

import click

from gencompress.cli.bench_cmd import int_list, load_bundle, str_list


def float_list(ctx, param, value):
    try:
        return tuple(float(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None


@click.command()
@click.argument("bundle", metavar="BUNDLE")
@click.option("--prune", "ratios", default="0,0.25,0.5,0.75", show_default=True, callback=float_list, help="Pruning ratios (0: none).")
@click.option("--precision", "precisions", default="fp32,fp16,int8", show_default=True, callback=str_list,
              help="Comma-separated: fp32, fp16, int8 (TensorRT Q/DQ form), int8-cpu (ONNX Runtime's CPU integer form).")
@click.option("--backend", default="ort", show_default=True, help="Backend that times the variants.")
@click.option("--batch", "batches", default="1,8,32", show_default=True, callback=int_list)
@click.option("--iters", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0))
@click.option("--bench-seconds", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Time cap of each latency timing: at least --iters calls, but stop after this many seconds (at least 3 calls).")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--distill-steps", default=300, show_default=True, type=click.IntRange(min=0), help="Distillation after each pruning.")
@click.option("--baselines", default="torch,torch-channels-last,torch-compile", show_default=True, callback=str_list,
              help="PyTorch configurations of the original to time beside the variants ('' for none).")
@click.option("--estimate", "profiles", default="cpu-epyc-2c,jetson-orin-nano", show_default=True, callback=str_list,
              help="Device profiles to add roofline estimates for.")
@click.option("--fps", type=float, default=None, help="Real-time verdict against this frame rate.")
@click.option("--budget-ms", type=float, default=None)
@click.option("--data-samples", default=0, show_default=True, type=click.IntRange(min=0), help="FID/KID/IS samples per variant (0: skip).")
@click.option("--json", "json_out", required=True, metavar="FILE", help="Where to write the sweep's results JSON.")
def sweep(bundle, ratios, precisions, backend, batches, iters, warmup, bench_seconds, threads, distill_steps, baselines, profiles,
          fps, budget_ms, data_samples, json_out):
    """Build every (prune ratio x precision) variant of BUNDLE, measure each, mark the Pareto front."""
    from gencompress.benchmarks.results_io import write_json
    from gencompress.benchmarks.sweep import SweepConfig, sweep as run_sweep

    cfg = SweepConfig(prune=ratios, precisions=precisions, backend=backend, batches=batches, iters=iters, warmup=warmup, seconds=bench_seconds,
                      threads=threads, distill_steps=distill_steps, baselines=baselines, estimate_profiles=profiles,
                      fps=fps, budget_ms=budget_ms, data_samples=data_samples)
    result = run_sweep(load_bundle(bundle), cfg)
    write_json(json_out, result)
    click.echo(f"wrote {json_out}: {len(result['rows'])} rows; Pareto front: {'; '.join(result['pareto_front'])}")

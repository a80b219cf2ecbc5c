"""`gencompress sweep BUNDLE`: pruning ratio x precision, measured, with the Pareto front."""
from __future__ import annotations

import click

from gencompress.cli.bench_cmd import load_bundle
from gencompress.cli.options import (data_options, distill_steps_option, fid_samples_option, float_list, json_option, realtime_options, shows_progress, str_list,
                                     timing_options, write_json)


@click.command()
@click.argument("bundle", metavar="BUNDLE")
@click.option("--prune", "ratios", default="0,0.25,0.5,0.75", show_default=True, callback=float_list, metavar="FRACTION[,...]",
              help="Pruning ratios to sweep (0: none).")
@click.option("--precision", "precisions", default="fp32,fp16,int8", show_default=True, callback=str_list, metavar="PRECISION[,...]",
              help="Precisions to sweep: fp32, fp16, int8 (TensorRT Q/DQ form), int8-cpu (ONNX Runtime's CPU integer form).")
@click.option("--backend", default="ort", show_default=True, help="Backend that times the variants.")
@timing_options(batches="1,8,32", iters=50, warmup=10, seconds=10.0)
@distill_steps_option(300)
@click.option("--baselines", default="torch,torch-channels-last,torch-compile", show_default=True, callback=str_list,
              help="PyTorch configurations of the original to time beside the variants ('' for none).")
@click.option("--device", "profiles", default="cpu,jetson-orin-nano", show_default=True, callback=str_list, metavar="PROFILE[,...]",
              help="Device profiles to add roofline estimates for (see `gencompress estimate --list-devices`).")
@realtime_options
@fid_samples_option(0, help="FID/KID/IS samples per variant (0: skip).")
@data_options
@json_option("the sweep's results", required=True)
def sweep(bundle, ratios, precisions, backend, batches, iters, warmup, bench_seconds, threads, distill_steps, baselines, profiles,
          fps, budget_ms, fid_samples, json_out, data):
    """Build every (prune ratio x precision) variant of BUNDLE, measure each, mark the Pareto front."""
    from gencompress.benchmarks.sweep import SweepConfig, summary_line, sweep as run_sweep

    cfg = SweepConfig(prune=ratios, precisions=precisions, backend=backend, batches=batches, iters=iters, warmup=warmup, seconds=bench_seconds,
                      threads=threads, distill_steps=distill_steps, baselines=baselines, estimate_profiles=profiles,
                      fps=fps, budget_ms=budget_ms, data_samples=fid_samples, data=data.spec, io_spec=data.io_spec,
                      progress=shows_progress(json_out))
    result = run_sweep(load_bundle(bundle, cfg.progress), cfg)
    write_json(json_out, result)
    click.echo(summary_line(result), err=json_out == "-")

"""`gencompress estimate BUNDLE --device PROFILE`: per-layer roofline latency (an estimate)."""
from __future__ import annotations

import click

from gencompress.cli.bench_cmd import int_list, load_bundle
from gencompress.cli.options import device_profile_option, emit_json


@click.command()
@click.argument("bundle", metavar="BUNDLE", required=False)
@device_profile_option("jetson-orin-nano")
@click.option("--batch", "batches", default="1,8", show_default=True, callback=int_list, help="Comma-separated batch sizes.")
@click.option("--no-compare", is_flag=True, help="Do not measure ONNX Runtime beside a CPU profile's estimate.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print the estimate (with every layer) as JSON.")
@click.option("--list-devices", is_flag=True, help="List the device profiles and their sources, then exit.")
def estimate(bundle, device, batches, no_compare, threads, as_json, list_devices):
    """Roofline latency estimate per layer from the bundle's ONNX graph (FLOPs and bytes)."""
    from gencompress.benchmarks import devices
    from gencompress.benchmarks.estimate import EstimateConfig, estimate_bundle, format_table

    if list_devices:
        for key in devices.names():
            p = devices.get(key)
            click.echo(f"{key:<18} {p.name}: FP16 {p.fp16_tflops} TFLOPS, INT8 {p.int8_tops} TOPS, {p.mem_bw_gbs} GB/s  [{p.source}]")
        return
    if bundle is None:
        raise click.UsageError("BUNDLE is required (or --list-devices)")
    cfg = EstimateConfig(device=device, batches=batches, compare=not no_compare, threads=threads)
    devices.get(device)  # fail on a bad name before loading anything
    result = estimate_bundle(load_bundle(bundle), cfg)
    if as_json:
        emit_json(result)
    else:
        click.echo(format_table(result))

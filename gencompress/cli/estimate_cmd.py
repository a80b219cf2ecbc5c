"""`gencompress estimate BUNDLE --device PROFILE`: per-layer roofline latency (an estimate)."""
from __future__ import annotations

import click

from gencompress.cli.bench_cmd import load_bundle
from gencompress.cli.options import (batch_option, device_profile_option, json_option, refuse_unless, shows_progress, threads_option,
                                     write_json)


@click.command()
@click.argument("bundle", metavar="BUNDLE", required=False)
@device_profile_option("jetson-orin-nano")
@batch_option("1,8")
@click.option("--no-compare", is_flag=True, help="Do not measure ONNX Runtime beside a CPU profile's estimate.")
@threads_option()
@json_option("the estimate (with every layer)")
@click.option("--list-devices", is_flag=True, help="List the device profiles and their sources, then exit.")
@click.pass_context
def estimate(ctx, bundle, device, batches, no_compare, threads, json_out, list_devices):
    """Roofline latency estimate per layer from the bundle's ONNX graph (FLOPs and bytes)."""
    from gencompress.benchmarks import devices
    from gencompress.benchmarks.estimate import EstimateConfig, estimate_bundle, format_table, list_devices_text

    if list_devices:  # measures nothing: this machine's CPU shows as measured (cached) or not measured yet
        click.echo(list_devices_text(threads))
        return
    if bundle is None:
        raise click.UsageError("BUNDLE is required (or --list-devices)")
    cfg = EstimateConfig(device=device, batches=batches, compare=not no_compare, threads=threads)
    profile = devices.get(device)  # fail on a bad name before loading anything
    refuse_unless(ctx, profile.kind == "cpu", ("no_compare", "threads"),
                  f"ONNX Runtime is measured beside a CPU profile's estimate only, and {device} is a {profile.kind} profile")
    result = estimate_bundle(load_bundle(bundle, shows_progress(json_out)), cfg)
    if json_out:
        write_json(json_out, result)
    if json_out != "-":
        click.echo(format_table(result))

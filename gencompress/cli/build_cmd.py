"""`gencompress build`: the whole pipeline in one command."""
from __future__ import annotations

import click

from gencompress import defaults
from gencompress.cli.options import device_profile_option
from gencompress.cli.options import calib_from_option, data_options, emit_json, fraction, model_options, precision_option, writes_output
from gencompress.cli.pipeline import BuildConfig, build as run_build
from gencompress.export import CPU_RUNTIME_CHOICES
from gencompress.progress import top_stages


@click.command()
@model_options
@data_options
@precision_option("int8")
@click.option("--calib-samples", default=None, type=click.IntRange(min=1),
              help="Calibration inputs for INT8 [default: 256, fewer for a big model: about 1000 GMAC in all, at least 32].")
@calib_from_option
@click.option("--target", type=click.Choice(defaults.TARGETS), default=defaults.DEFAULT_TARGET, show_default=True, help="Deployment target.")
@click.option("--deconv-weight-axis", type=click.Choice(["0", "1"]), default="1", show_default=True,
              help="Per-channel axis of ConvTranspose weight scales (1: output channels).")
@click.option("--prune", "prune_ratio", type=float, default=None, callback=fraction, metavar="FRACTION", help="Prune this fraction of channels (Torch-Pruning), then distil.")
@click.option("--distill-steps", default=defaults.DISTILL_STEPS, show_default=True, type=click.IntRange(min=0), help="Distillation steps after --prune.")
@click.option("--calibrator", type=click.Choice(defaults.CALIBRATOR_CHOICES), default=defaults.DEFAULT_CALIBRATOR, show_default=True,
              help="INT8 range calibration (auto: the best on held-out inputs; mse is modelopt-only, not --target cpu).")
@click.option("--min-psnr", type=float, default=None,
              help="Quality floor in dB vs FP32, replacing the default (PSNR >= 35 dB and SSIM >= 0.97): the most sensitive layers stay float.")
@click.option("--no-quality-floor", "no_floor", is_flag=True, help="Keep every layer INT8, whatever the quality (no floor, no search).")
@click.option("--bias-correction", is_flag=True, help="Empirical bias correction after calibration, kept where it scores better (gpu targets).")
@click.option("--qat-steps", default=0, show_default=True, type=click.IntRange(min=0), help="Quantisation-aware fine-tuning steps (gpu targets).")
@click.option("--eval-samples", default=None, type=click.IntRange(min=1),
              help="Inputs that judge quality (from --data: its first ones) [default: 64, fewer for a big model: about 1000 GMAC, at least 16].")
@click.option("--bench-seconds", default=3.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Time cap of each latency row (the paired INT8/FP32 ratio gets 4x): 30 calls or this long, whichever ends first.")
@click.option("--cpu-runtime", type=click.Choice(CPU_RUNTIME_CHOICES), default="auto", show_default=True,
              help="--target cpu INT8: auto measures ONNX Runtime against OpenVINO (if installed) and keeps the faster "
                   "at equal-or-better quality; onnxruntime skips OpenVINO.")
@click.option("--out", default="gencompress-build", show_default=True, metavar="DIR", help="Output bundle folder (replaced atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print the results summary as JSON on stdout.")
@device_profile_option(help="GPU profile of the INT8 speed estimate for --target gpu [default: h100]; a Jetson target is its "
                            "own profile. See `gencompress estimate --list-devices`.")
@writes_output
def build(model, input_shape, checkpoint, trust_pickle, random_init, classes, precision, calib_samples, calib_from, target, deconv_weight_axis,
          prune_ratio, distill_steps, calibrator, min_psnr, no_floor, bias_correction, qat_steps, eval_samples, bench_seconds, cpu_runtime, out, as_json,
          data, device):
    """Compress a generator end to end: quantise, export ONNX, measure, report.

    With no --model, uses the zoo DCGAN trained on scikit-learn's digits (trained on
    first use, about two minutes on 2 CPU cores, then cached).
    """
    cfg = BuildConfig(
        model=model, out=out, input_shape=input_shape, checkpoint=checkpoint, trust_pickle=trust_pickle,
        precision=precision, target=target, calib_samples=calib_samples, calib_from=calib_from,
        deconv_weight_axis=int(deconv_weight_axis), random_init=random_init, classes=classes,
        prune=prune_ratio, distill_steps=distill_steps, calibrator=calibrator, min_psnr=min_psnr, no_floor=no_floor, bias_correction=bias_correction, qat_steps=qat_steps,
        bench_seconds=bench_seconds, cpu_runtime=cpu_runtime, eval_samples=eval_samples, data=data.spec, io_spec=data.io_spec, device=device,
    )
    summary = run_build(cfg)
    if as_json:
        emit_json(summary)
    else:
        click.echo(headline(summary))
        if "time" in summary:  # where the time went (absent from summaries built elsewhere, e.g. stubs)
            click.echo(f"took {summary['time']['wall_seconds']:.0f} s: {top_stages(summary['time'])}")


def headline(summary: dict) -> str:
    """The line a user reads: the speed that is about their target, then quality.

    On `--target cpu` the chosen CPU runtime is the deployment, so its measured ratio comes with
    the quality. For a TensorRT target the line leads with the labelled roofline estimate on the
    target against the FP16 engine a GPU user would otherwise run; the CPU measurement follows,
    named as ONNX Runtime on this CPU, which is not the target.
    """
    q, precision = summary["quality"], summary["precision"]
    quality = f"{precision} PSNR {q['psnr_db']:.2f} dB vs {q['reference']}"
    line = f"wrote {summary['out']}: {quality}"
    fast, est = summary.get("paired_speedup"), summary.get("target_estimate")  # None for an FP32 build
    if fast and summary["target"] == "cpu":
        runtime = "OpenVINO" if str(fast.get("runtime", "")).startswith("openvino") else "ONNX Runtime"
        line += (f", {fast['speedup_vs_fp32_onnx']:.2f}x the FP32 ONNX Runtime speed at batch {fast['batch']} "
                 f"(measured, {runtime} on this CPU)")
    elif est and est.get("speedup_vs_fp16"):
        line = f"wrote {summary['out']}: {_estimate_text(est, precision, summary['target'])}; {quality}"
        if fast:
            line += (f"; ONNX Runtime on this CPU (a stand-in, not the target): {fast['speedup_vs_fp32_onnx']:.2f}x "
                     "its FP32 speed, which says little about TensorRT's")
    line += _how_line(summary)
    warn = "".join(f"; WARNING: {w}" for w in summary.get("warnings", []))
    return f"{line}; report in {summary['out']}/report/report.md{warn}"


def _estimate_text(est: dict, precision: str, target: str) -> str:
    """The target estimate, named as one and against FP16 (FP32's ratio beside it)."""
    stand_in = ""
    if target == "gpu" and not est.get("device_named"):
        stand_in = " (standing in for your GPU: name it with --device, see `gencompress estimate --list-devices`)"
    return (f"on {est['device']}{stand_in} expect {precision} at about {est['speedup_vs_fp16']:.2f}x the FP16 engine's speed "
            f"({est['speedup_vs_fp32']:.2f}x FP32's) at batch {est['batch']}: an ESTIMATE from a roofline, not a measurement "
            "(time it there with run_bench.sh or `gencompress bench --backend trt`)")


def _how_line(summary: dict) -> str:
    """How the floor was met: the calibrator chosen and the layers kept float."""
    q, cal, sens = summary["quality"], summary.get("calibrators"), summary.get("sensitivity") or {}
    if "floor" not in q:
        return ""
    parts = [f"; meets {q['floor']} (SSIM {q['ssim']:.4f})"]
    if cal:
        parts.append(f" with the {cal['chosen']} calibrator")
    kept = sens.get("keep_float") or []
    parts.append(f", {len(kept)} layer(s) kept float" + (f" ({', '.join(kept)})" if kept else ""))
    return "".join(parts)

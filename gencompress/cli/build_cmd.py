"""`gencompress build`: the whole pipeline in one command."""
from __future__ import annotations

import click

from gencompress.cli.options import device_profile_option
from gencompress.cli.options import (data_options, distill_steps_option, eval_samples_option, int8_options, json_option, model_options,
                                     out_option, precision_option, prune_option, shows_progress, target_option, timing_options, write_json,
                                     writes_output)
from gencompress.cli.pipeline import BuildConfig, build as run_build
from gencompress.export import CPU_RUNTIME_CHOICES
from gencompress.progress import top_stages


@click.command()
@model_options
@data_options
@precision_option("int8")
@target_option
@int8_options(calib_samples=None)
@prune_option()
@distill_steps_option()
@eval_samples_option(None, "Inputs that judge quality (from --data: its first ones) [default: 64, fewer for a big model: about 1000 GMAC, at least 16].")
@timing_options(batches="1,8", iters=30, warmup=5, seconds=3.0, note="; the paired INT8/FP32 ratio gets 4x")
@click.option("--cpu-runtime", type=click.Choice(CPU_RUNTIME_CHOICES), default="auto", show_default=True,
              help="--target cpu INT8: auto measures ONNX Runtime against OpenVINO (if installed) and keeps the faster "
                   "at equal-or-better quality; onnxruntime skips OpenVINO.")
@out_option("gencompress-build", "Output bundle folder (replaced atomically).")
@json_option("the results summary")
@device_profile_option(help="GPU profile of the INT8 speed estimate for --target gpu [default: h100]; a Jetson target is its "
                            "own profile. See `gencompress estimate --list-devices`.")
@writes_output
def build(model, input_shape, checkpoint, trust_pickle, random_init, classes, precision, target, calibrator, calib_samples, calib_from,
          deconv_weight_axis, min_psnr, no_floor, bias_correction, qat_steps, prune_ratio, distill_steps, eval_samples,
          batches, iters, warmup, bench_seconds, threads, cpu_runtime, out, json_out, data, device):
    """Compress a generator end to end: quantise, export ONNX, measure, report.

    With no --model, uses the zoo DCGAN, shipped trained on scikit-learn's digits.
    """
    cfg = BuildConfig(
        model=model, out=out, input_shape=input_shape, checkpoint=checkpoint, trust_pickle=trust_pickle,
        precision=precision, target=target, calib_samples=calib_samples, calib_from=calib_from,
        deconv_weight_axis=int(deconv_weight_axis), random_init=random_init, classes=classes,
        prune=prune_ratio, distill_steps=distill_steps, calibrator=calibrator, min_psnr=min_psnr, no_floor=no_floor, bias_correction=bias_correction, qat_steps=qat_steps,
        latency_batches=batches, latency_iters=iters, latency_warmup=warmup, bench_seconds=bench_seconds, threads=threads,
        cpu_runtime=cpu_runtime, eval_samples=eval_samples, data=data.spec, io_spec=data.io_spec, device=device,
        progress=shows_progress(json_out),
    )
    summary = run_build(cfg)
    if json_out:
        write_json(json_out, summary)
    if json_out != "-":
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
    if summary.get("float_shipped"):  # --target cpu: no INT8 form beat the float model, which shipped
        line += f"; {summary['float_shipped']}"
    else:
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

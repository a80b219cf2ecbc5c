"""`build --int8` on the trained suite of real generator layouts at full size, gpu and cpu targets.

Each layout is the suite's trained model (`gencompress.benchmarks.suite:NAME_trained`, trained on
the shipped photos) built on real inputs from the held-out photos, which no model trained on:

| layout | build data (written to a temporary folder) |
|---|---|
| sr_compact | `--data folder:` 256 held-out 64-px crops, ranges 0,1 |
| unet_pix2pix | `--data folder:` 64 held-out 256-px crops with the training noise (sigma 0.2), ranges -1,1 |
| taesd_decoder, sd_vae_decoder | `--data npz:` latents of 64 held-out 256-px crops through the trained encoder |
| stylegan2_like | the generator's own Gaussian latents (the build's default inputs) |

Each build runs as `gencompress build ... --json -` in its own child process; the parent takes
the child's peak RSS from os.wait4's rusage (ru_maxrss: the child and the processes it waited
for, which includes build's ONNX Runtime timing process) and its wall time. Then, in this
process, the written bundle is judged against the FP32 PyTorch model on SUPPLIED inputs: 16
seeded random crops of the held-out photos (suite.photo_inputs; their sha256 recorded), apart
from the build's own draw. The CPU INT8 speed against FP32 ONNX is the build's paired,
interleaved measurement (export/ort_pair.py). Load averages are recorded before and after every
build: the machine is shared, and wall times move with the load.

    python scripts/real_architectures.py [--only taesd_decoder,sr_compact] [--targets gpu,cpu]
        [--json benchmarks/results/real_architectures.json]

A run merges its rows into an existing JSON (one row per architecture, target and variant), so
the architectures can be measured one at a time. `--prune R --distill-steps N` adds rows of the
variant "prune R": `build --int8 --prune R --distill-steps N` (distilled on the same photo
data), judged against the unpruned FP32 model on the supplied inputs. `--small` builds the
narrow random-weight layouts on random inputs instead: a smoke run of this script.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from gencompress import photos
from gencompress.benchmarks import architectures as A
from gencompress.benchmarks import suite
from gencompress.conditions import describe
from gencompress.metrics import fidelity

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
SUPPLIED_SEED = 20261201
SUPPLIED_SAMPLES = 16
LIMITS = {"wall_seconds": 600.0, "peak_rss_mb": round(2.5e9 / 2**20, 1)}  # the "done when": 10 min, 2.5 GB
BIG_LIMITS = {**LIMITS, "peak_rss_mb": round(4e9 / 2**20, 1)}  # 4 GB for the 54M-parameter U-Net and the SD-VAE layout
BIG = ("unet_pix2pix", "sd_vae_decoder")
VARIANT = ""  # "" for plain builds; --prune sets it
TIMEOUT_S = 1800.0  # --timeout: a build still running after this is stopped and its row says so
SMALL = False  # --small: the narrow random-weight builders (a smoke run of this script)


def shapes() -> dict:
    return A.SMALL_INPUT_SHAPES if SMALL else A.FULL_INPUT_SHAPES


def suite_name(name: str) -> str:
    """The layout's name in the trained suite (taesd_decoder -> taesd)."""
    return suite.TRAINED[f"{name}_trained"][1]


def builder(name: str):
    return getattr(A, f"{name}_small") if SMALL else getattr(suite, f"{name}_trained")


def spec(name: str) -> str:
    return f"gencompress.benchmarks.architectures:{name}_small" if SMALL else f"gencompress.benchmarks.suite:{name}_trained"


def limits(name: str) -> dict:
    return BIG_LIMITS if name in BIG else LIMITS


def supplied_inputs(name: str) -> tuple[np.ndarray, dict]:
    """A fixed draw of real inputs for `name` (the data the PSNR below is taken on) and its record."""
    if SMALL:
        x = torch.randn(SUPPLIED_SAMPLES, *shapes()[name], generator=torch.Generator().manual_seed(SUPPLIED_SEED))
        source = "Gaussian (random-weight smoke run)"
    else:
        x = suite.photo_inputs(suite_name(name), SUPPLIED_SAMPLES, SUPPLIED_SEED)
        source = f"suite.photo_inputs({suite_name(name)!r}, {SUPPLIED_SAMPLES}, {SUPPLIED_SEED}): held-out photos"
    x = x.numpy().astype(np.float32)
    return x, {"source": source, "samples": len(x), "seed": SUPPLIED_SEED, "sha256": hashlib.sha256(x.tobytes()).hexdigest()}


def build_data(name: str, folder: Path) -> tuple[list[str], str]:
    """The build's data options for the trained layout `name`, written into `folder`, and how they were made."""
    if SMALL or name == "stylegan2_like":
        return [], "the build's default inputs"
    if name in ("taesd_decoder", "sd_vae_decoder"):
        path = folder / "latents.npz"
        np.savez(path, latents=suite.held_out_latents(suite_name(name), per_side=4).numpy())
        return ["--data", f"npz:{path}"], f"scripts/train_suite.py latents {suite_name(name)} OUT.npz --per-side 4"
    crops = folder / "crops"
    if name == "sr_compact":
        photos.write_held_out_crops(crops, size=64, per_side=8)
        return (["--data", f"folder:{crops}", "--input-range", "0,1", "--output-range", "0,1"],
                "scripts/train_suite.py crops DIR --size 64 --per-side 8")
    photos.write_held_out_crops(crops, size=256, per_side=4, noise_sigma=suite.NOISE_SIGMA)
    return (["--data", f"folder:{crops}", "--input-range=-1,1", "--output-range=-1,1"],
            f"scripts/train_suite.py crops DIR --size 256 --per-side 4 --noise {suite.NOISE_SIGMA:g}")


def run_build(name: str, target: str, out: Path, extra: list[str]) -> dict:
    """`gencompress build --int8` in a child process: (summary, wall s, peak RSS MB, exit code, stderr tail)."""
    shape = "x".join(map(str, (1, *shapes()[name])))
    cmd = [sys.executable, "-m", "gencompress", "build", "--model", spec(name), "--input-shape", shape, "--precision", "int8",
           "--target", target, "--out", str(out), "--json", "-", *extra]
    load_before = os.getloadavg()
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        child = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, text=True, start_new_session=True)
        # a build past --timeout is stopped (SIGTERM to its process group: the build cleans up) and recorded as such
        killer = threading.Timer(TIMEOUT_S, lambda: os.killpg(child.pid, signal.SIGTERM))
        killer.start()
        _pid, status, usage = os.wait4(child.pid, 0)
        killer.cancel()
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        stdout, stderr = out_f.read(), err_f.read()
    row = {"architecture": name, "target": target, "variant": VARIANT, "command": " ".join(cmd[1:]), "exit_code": child.returncode,
           "wall_seconds": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: ru_maxrss in KiB
           "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
           "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in os.getloadavg()]}
    if child.returncode != 0:
        row["error"] = (stderr.strip().splitlines() or ["no output"])[-1][:400]
        if wall >= TIMEOUT_S:
            row["error"] = f"stopped after --timeout {TIMEOUT_S:g} s ({row['error']})"
        return row
    row["summary"] = json.loads(stdout)
    return row


def judge(row: dict, name: str, out: Path, inputs: np.ndarray, record: dict) -> None:
    """PSNR of the bundle against the FP32 PyTorch model on the supplied inputs: its model.onnx on
    ONNX Runtime, and, where the CPU runtime choice picked OpenVINO, the OpenVINO IR it deploys.
    A TensorRT Q/DQ graph runs with ONNX Runtime's optimisations off, as the build judges it: its
    CPU integer fusions are not TensorRT's arithmetic (they cost the SD-VAE layout 6.6 dB). A
    bundle that ships the float form (float_shipped) is judged the same way."""
    from gencompress.batching import mini_batch
    from gencompress.export.openvino import BUNDLE_XML, OpenVinoModelFromFile, OpenVinoRunner
    from gencompress.export.runners import OrtRunner, SessionFromOnnx, TorchRunner, run_batches

    model = builder(name)()
    batch = mini_batch(model, shapes()[name])
    reference = run_batches(TorchRunner(model), inputs, batch)
    optimization = "all" if row["target"] == "cpu" else "disable"
    got = run_batches(OrtRunner(SessionFromOnnx(out / "model.onnx", 2, optimization)), inputs, batch)
    row["supplied_data"] = {**record, "onnxruntime_optimization": optimization, **fidelity(reference, got)}
    if (out / BUNDLE_XML).is_file():
        deployed = run_batches(OpenVinoRunner(OpenVinoModelFromFile(out / BUNDLE_XML, 2)), inputs, batch)
        row["supplied_data"]["openvino_ir"] = fidelity(reference, deployed)


SAMPLES_DIR: Path | None = None  # --samples: where each build's report grid (report/samples.png) is copied


def build_and_judge(name: str, target: str, extra: list[str], inputs: np.ndarray, record: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="gencompress-real-") as tmp:
        out = Path(tmp) / "bundle"
        print(f"build {name} --target {target} ...", file=sys.stderr, flush=True)
        row = run_build(name, target, out, extra)
        if row["exit_code"] == 0:
            judge(row, name, out, inputs, record)
            if SAMPLES_DIR is not None:
                grid = SAMPLES_DIR / f"{name}-{target}{'-pruned' if VARIANT else ''}.png"
                grid.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out / "report" / "samples.png", grid)
                row["samples_png"] = grid.name
        row = compact(row)
    if not VARIANT:
        bound = limits(name)
        row["within_issue_limits"] = (row["exit_code"] == 0 and row["wall_seconds"] <= bound["wall_seconds"]
                                      and row["peak_rss_mb"] <= bound["peak_rss_mb"])
    return row


def compact(row: dict) -> dict:
    """The row without the build summary's bulk (per-layer tables), with what the README quotes on top."""
    s = row.pop("summary", None)
    if s is None:
        return row
    paired = s.get("paired_speedup") or {}
    row.update({
        "macs": s["macs"], "gmac_per_image": round(s["macs"] / 1e9, 2), "params": s["params"], "samples": s.get("samples"),
        "floor": s["quality"].get("floor"), "layer_precision_counts": _counts(s.get("layer_precision") or {}), "psnr_db_build_eval": s["quality"]["psnr_db"],
        "build_eval_samples": s["quality"]["samples"], "quant_form": s["quant_form"], "mini_batch": s.get("mini_batch"),
        "int8_vs_fp32_onnx_paired": paired.get("speedup_vs_fp32_onnx"), "paired_batch": paired.get("batch"),
        "paired_median_ms": paired.get("median_ms"), "paired_method": paired.get("method"),
        "cpu_runtime": _runtime(s.get("cpu_runtime")), "float_shipped": s.get("float_shipped"),
        "float_layers": s.get("float_layers"),  # gpu/Jetson: FP16 outside the INT8 layers where the gate's floor held
        "prune": s.get("prune"),
        "time": s["time"], "latency": s["latency"], "export_checks": {k: v for k, v in s["export_checks"].items() if k != "io"},
        "conditions": s["conditions"],
    })
    return row


def _runtime(choice: dict | None) -> dict | None:
    """--target cpu's runtime choice: the winner and each candidate's speed and quality."""
    if not choice:
        return None
    return {"chosen": choice["candidate"], "speedup_vs_fp32_ort": choice["speedup_vs_fp32_ort"], "method": choice["method"],
            "candidates": {c["name"]: {"speedup_vs_fp32_ort": c["speedup_vs_fp32_ort"], "psnr_db": c["psnr_db"]} for c in choice["candidates"]}}


def _counts(precisions: dict) -> dict:
    out: dict = {}
    for value in precisions.values():
        out[value] = out.get(value, 0) + 1
    return out


def _supplied_psnr(row: dict) -> str:
    """The supplied-data PSNR of what the bundle deploys (the OpenVINO IR where it won, else model.onnx)."""
    data = row["supplied_data"]
    ir = data.get("openvino_ir")
    return f"{ir['psnr_db']:.1f} dB (OpenVINO IR)" if ir else f"{data['psnr_db']:.1f} dB"


def _label(row: dict) -> str:
    return f"{row['architecture']} ({row['variant']})" if row.get("variant") else row["architecture"]


def _deployed(r: dict) -> str:
    """What the bundle runs: the CPU runtime the build chose by measurement, else its quantised form."""
    runtime = r.get("cpu_runtime")
    if runtime:
        return runtime["chosen"]
    float_layers = r.get("float_layers")  # gpu/Jetson: the precision of what the Q/DQ graph keeps float
    form = r["quant_form"].split(":")[0]
    return f"{form}, float in {float_layers['precision'].upper()}" if float_layers else form


def _int8_layers(r: dict) -> str:
    counts = r.get("layer_precision_counts") or {}
    total = sum(counts.values())
    return f"{counts.get('int8', 0)} of {total}" if total else "-"


def table_markdown(result: dict) -> str:
    """The README's table, from the JSON."""
    head = ("| layout (trained) | target | GMAC/image | build wall s | peak RSS MB | load (1 min) | INT8 layers | "
            "PSNR vs FP32: build's held-out / supplied inputs | deployed | INT8 vs FP32 ONNX (paired, CPU) | within limits |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in result["rows"]:
        limits_met = {True: "yes", False: "no"}.get(r.get("within_issue_limits"), "-")
        if r["exit_code"] != 0:
            lines.append(f"| {_label(r)} | {r['target']} | | {r['wall_seconds']} | {r['peak_rss_mb']} | {r['load_before'][0]} | | "
                         f"failed: {r.get('error', '')[:80]} | | | {limits_met} |")
            continue
        speed = r.get("int8_vs_fp32_onnx_paired")
        lines.append(f"| {_label(r)} | {r['target']} | {r['gmac_per_image']:.2f} | {r['wall_seconds']} | {r['peak_rss_mb']} | "
                     f"{r['load_before'][0]}-{r['load_after'][0]} | {_int8_layers(r)} | "
                     f"{r['psnr_db_build_eval']:.1f} / {_supplied_psnr(r)} | {_deployed(r)} | "
                     + (f"{speed:.2f}x at batch {r['paired_batch']}" if speed else "-") + f" | {limits_met} |")
    return "\n".join(lines)


def readme_markdown(result: dict, own_quality: dict[str, str]) -> str:
    """The README's short form of the table: plain builds only, what a user asks first, beside
    each trained model's own quality (`own_quality`: layout -> text, from trained_suite.json)."""
    lines = ["| layout (trained) | its own quality | target | wall s, peak RSS MB | INT8 PSNR vs FP32, held-out inputs | runs on | "
             "speed vs FP32 ONNX Runtime |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r.get("variant"):
            continue
        name = f"{r['architecture']} | {own_quality.get(suite_name(r['architecture']), '-')}"
        if r["exit_code"] != 0:
            lines.append(f"| {name} | {r['target']} | {r['wall_seconds']}, {r['peak_rss_mb']:.0f} | failed | | |")
            continue
        speed = r.get("int8_vs_fp32_onnx_paired")
        # a gpu row's paired speed times the TensorRT graph on ONNX Runtime's CPU provider: not its runtime
        speed_cell = f"{speed:.2f}x (batch {r['paired_batch']})" if speed and r["target"] == "cpu" else "no GPU here"
        lines.append(f"| {name} | {r['target']} | {r['wall_seconds']:.0f}, {r['peak_rss_mb']:.0f} | {_supplied_psnr(r)} | "
                     f"{_deployed(r)} | {speed_cell} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    global SMALL, TIMEOUT_S, VARIANT, SAMPLES_DIR
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(A.NAMES), help="Comma-separated architectures.")
    parser.add_argument("--targets", default="gpu,cpu")
    parser.add_argument("--json", default=str(RESULTS / "real_architectures.json"))
    parser.add_argument("--build-args", default="", help="Extra build options, space-separated (e.g. '--calib-samples 64').")
    parser.add_argument("--small", action="store_true", help="The narrow test builders (a smoke run; write elsewhere with --json).")
    parser.add_argument("--table", action="store_true", help="Print the README table from --json and exit.")
    parser.add_argument("--prune", type=float, help="Rows of build --int8 --prune RATIO (variant 'prune RATIO').")
    parser.add_argument("--distill-steps", type=int, default=20, help="With --prune: distillation steps.")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="Seconds after which a build is stopped (its row says so).")
    parser.add_argument("--samples", type=Path, help="Copy each build's report grid (original against INT8) into this folder.")
    args = parser.parse_args(argv)
    if args.table:
        print(table_markdown(json.loads(Path(args.json).read_text())))
        return 0
    SMALL, TIMEOUT_S, SAMPLES_DIR = args.small, args.timeout, args.samples
    extra = args.build_args.split()
    if args.prune is not None:
        VARIANT = f"prune {args.prune:g}, {args.distill_steps} distill steps"
        extra += ["--prune", str(args.prune), "--distill-steps", str(args.distill_steps)]
    path = Path(args.json)
    result = json.loads(path.read_text()) if path.exists() else {"rows": []}
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        inputs, record = supplied_inputs(name)
        with tempfile.TemporaryDirectory(prefix="gencompress-real-data-") as data_dir:
            data_args, data_made_by = build_data(name, Path(data_dir))
            for target in [t.strip() for t in args.targets.split(",") if t.strip()]:
                row = build_and_judge(name, target, extra + data_args, inputs, record)
                row["build_data"] = data_made_by
                print(json.dumps({k: row.get(k) for k in ("architecture", "target", "exit_code", "wall_seconds", "peak_rss_mb",
                                                          "psnr_db_build_eval", "int8_vs_fp32_onnx_paired", "load_before", "error")}),
                      file=sys.stderr, flush=True)
                result["rows"] = [r for r in result["rows"]
                                  if (r["architecture"], r["target"], r.get("variant", "")) != (name, target, VARIANT)] + [row]
                result.update({"script": "scripts/real_architectures.py", "conditions": describe(2), "limits": LIMITS,
                               "limits_big": {"layouts": list(BIG), **BIG_LIMITS}, "supplied_samples": SUPPLIED_SAMPLES,
                               "weights": "random (smoke run)" if SMALL else "trained suite (benchmarks/results/trained_suite.json)",
                               "sizes": "small" if SMALL else "full"})
                result.pop("taesd_limits", None)
                path.write_text(json.dumps(result, indent=1, default=float) + "\n")  # after every build: a crash keeps the rest
    return 0


if __name__ == "__main__":
    sys.exit(main())

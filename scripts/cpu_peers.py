"""gencompress `--target cpu` side by side with the CPU runtimes a user would pick instead.

    python scripts/cpu_peers.py [--models dcgan,upsample_conv,vae_decoder,resnet_generator,taesd_like] [--out ...]
    python scripts/cpu_peers.py --models sr_compact_trained,taesd_decoder_trained --merge

Per model, in one child process (export/cpu_runtime.time_runtimes: no PyTorch work in it,
2 threads per runtime, interleaved rounds, ratios per round), batch 8:

| peer | what |
|---|---|
| ort-fp32 | ONNX Runtime FP32 on the exported ONNX (the reference of every ratio) |
| ort-quantize-static | ONNX Runtime `quantize_static(fp32, out, reader)` called the plain way: its defaults, no pre-processing |
| openvino-fp32 | OpenVINO CPU plugin, INFERENCE_PRECISION_HINT f32 |
| openvino-default | OpenVINO CPU plugin, its own default precision (bf16 where the CPU has it; the JSON says which ran) |
| nncf-int8 | `nncf.quantize(ov_model, nncf.Dataset(batches))` with NNCF's defaults, compiled at OpenVINO's default precision as a user would (its float layers bf16 where the CPU has it) |
| gencompress-cpu | `gencompress build --int8 --target cpu` (the real build; its runtime chosen by measurement, the float model where no INT8 form beat it) |

Each model's row says which peers beat the default build (`beaten_by`, the table's last column):
at least SAME_SPEED (5%) faster and a PSNR no more than EQUAL_PSNR_DB (0.5 dB) below its PSNR, in
the same run (issue 25's "done when").

Every quantiser gets the same 256 calibration inputs (the build's own: calibration_inputs with
its seed); PSNR/SSIM of each peer against ONNX Runtime FP32 on 64 held-out inputs (seed 0, the
build's evaluation latents). The trained suite's models (`sr_compact_trained`, ...; TRAINED
below) take real inputs instead: 64 from crops of the training photos for every quantiser (the
build gets them as `--data npz:` and keeps its own held-out part of them), 32 from the held-out
photos for judging, at 128 px output where the layout allows. Models: the zoo generators trained on digits, and a TAESD-like
latent decoder defined here (`taesd_like`: conv + ReLU residual blocks + nearest upsampling,
4x16x16 -> 3x128x128, seeded random weights scaled to unit activation spread, since a default
init deep decoder outputs a near-constant image). The machine is shared: load averages are
recorded before and after each model; the JSON's conditions hold the commit, the CPU flags, the
load and OpenVINO's CPU capabilities (BF16 or not).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gencompress.atomic import atomic_write_text
from gencompress.conditions import describe
from gencompress.data import draw_inputs
from gencompress.export.runner_base import run_and_close
from gencompress.metrics import fidelity, ssim

ZOO = ("dcgan", "upsample_conv", "vae_decoder", "resnet_generator")
TAESD_SHAPE = (4, 16, 16)
BATCH, THREADS, CALIB, EVAL = 8, 2, 256, 64
# the trained suite (gencompress.benchmarks.suite:NAME): fully convolutional layouts run at 128 px
# (the decoders' 4 x 16 x 16 latents, the SR net's 32-px crops), so that ONNX Runtime's plain
# calibrator, which keeps every activation of every calibration batch, fits in memory; the
# U-Net takes its 256 px. Calibration on crops of the training photos, judging on the held-out ones.
TRAINED = ("sr_compact_trained", "taesd_decoder_trained", "sd_vae_decoder_trained", "unet_pix2pix_trained", "stylegan2_like_trained")
TRAINED_SIDE = {"unet_pix2pix_trained": 256}  # output side; others PEER_SIDE
PEER_SIDE = 128
TRAINED_CALIB, TRAINED_EVAL = 64, 32
DEFAULT_BUILD = "gencompress-cpu"
EQUAL_PSNR_DB = 0.5  # a peer this close to the default build's PSNR (or better) is as good


# -- the TAESD-like decoder (importable as `cpu_peers:taesd_like`, which the build loads) ----


class _Block(nn.Module):
    """TAESD's block: conv-ReLU-conv-ReLU-conv plus the input, then ReLU."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1))

    def forward(self, x):
        return torch.relu(self.conv(x) + x)


class _Clamp(nn.Module):
    """TAESD's input clamp: tanh(z / 3) * 3."""

    def forward(self, x):
        return torch.tanh(x / 3) * 3


def taesd_like(width: int = 32, seed: int = 0) -> nn.Module:
    """4x16x16 latents -> 3x128x128 image: TAESD's decoder layout with one block per stage."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [_Clamp(), nn.Conv2d(4, width, 3, 1, 1), nn.ReLU(), _Block(width)]
    for _ in range(3):
        layers += [nn.Upsample(scale_factor=2), nn.Conv2d(width, width, 3, 1, 1, bias=False), _Block(width)]
    layers.append(nn.Conv2d(width, 3, 3, 1, 1))
    model = nn.Sequential(*layers).eval()
    _unit_spread(model, torch.randn(8, *TAESD_SHAPE, generator=torch.Generator().manual_seed(seed)))
    return model


@torch.no_grad()
def _unit_spread(model: nn.Module, x: torch.Tensor, image_std: float = 0.5) -> None:
    """Scale each conv so its output has unit spread on `x` (LSUV, Mishkin & Matas 2016), the last to `image_std`."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for i, conv in enumerate(convs):
        seen = {}
        handle = conv.register_forward_hook(lambda m, inp, out: seen.__setitem__("std", out.std().item()))
        model(x)
        handle.remove()
        conv.weight.mul_((image_std if i == len(convs) - 1 else 1.0) / max(seen["std"], 1e-6))
        if conv.bias is not None:
            conv.bias.zero_()


# -- the peers ---------------------------------------------------------------------------------


def trained_inputs(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A trained suite model's calibration inputs (training photos) and evaluation inputs (held-out photos)."""
    from gencompress.benchmarks import suite

    layout = suite.TRAINED[name][1]
    side = TRAINED_SIDE.get(name, PEER_SIDE)
    calib = suite.photo_inputs(layout, TRAINED_CALIB, seed=1, size=side, split="train")
    evals = suite.photo_inputs(layout, TRAINED_EVAL, seed=0, size=side, split="held_out")
    return calib.numpy(), evals.numpy()


def source_bundle(name: str, random_init: bool, input_shape: tuple[int, ...] | None = None):
    """The model as the build sees it, and how it was made."""
    from gencompress.loading import load_spec

    if name in TRAINED:
        return load_spec(f"gencompress.benchmarks.suite:{name}", (1, *input_shape)), "trained suite (shipped photos)"
    if name == "taesd_like":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        return load_spec("cpu_peers:taesd_like", (1, *TAESD_SHAPE)), "TAESD-like, width 32, seeded unit-spread random weights"
    from gencompress import zoo
    from gencompress.train.pretrained import get_or_train, zoo_bundle

    if random_init:  # as `build --random-init` makes it
        torch.manual_seed(0)
        return zoo_bundle(name, zoo.build(name)), "zoo, random init (seed 0), not trained"

    return load_spec(str(get_or_train(name, progress=False).path)), "zoo, trained on digits"


def plain_quantize_static(fp32: Path, dst: Path, calib: np.ndarray) -> Path:
    """ONNX Runtime's static quantisation as its documentation's first example calls it."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    name = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: calib[i : i + BATCH]} for i in range(0, len(calib), BATCH)])

        def get_next(self):
            return next(self.it, None)

    with contextlib.redirect_stdout(sys.stderr):
        quantize_static(str(fp32), str(dst), Reader())
    return dst


def gencompress_build(name: str, work: Path, random_init: bool, calib: np.ndarray | None = None) -> tuple[dict, object]:
    """The real `build --int8 --target cpu`: its summary and the graph of the runtime it chose.
    A trained suite model builds on `calib` (its photo inputs) as `--data npz:`, sample counts its own."""
    from gencompress.bundle import ONNX
    from gencompress.cli.pipeline import BuildConfig, build
    from gencompress.export.cpu_runtime import Graph
    from gencompress.export.openvino import BUNDLE_XML

    out = work / "build"
    options = dict(calib_samples=CALIB, eval_samples=EVAL, model=name, input_shape=None)
    if name == "taesd_like":
        options.update(model="cpu_peers:taesd_like", input_shape=(1, *TAESD_SHAPE))
    elif name in TRAINED:
        np.savez(work / "data.npz", inputs=calib)
        options = dict(model=f"gencompress.benchmarks.suite:{name}", input_shape=(1, *calib.shape[1:]), data=f"npz:{work / 'data.npz'}")
    summary = build(BuildConfig(**options, out=str(out), target="cpu", precision="int8", threads=THREADS, random_init=random_init,
                                latency_batches=(BATCH,), latency_iters=5, latency_warmup=2, progress=False))
    choice = summary.get("cpu_runtime") or {}
    if choice.get("runtime") == "openvino":  # compiled as the build measured it (bf16 float layers where that won)
        return summary, Graph("openvino", out / BUNDLE_XML, choice.get("inference_precision", "f32"))
    return summary, Graph("onnxruntime", out / ONNX)  # ONNX Runtime's integer form, or the FP32 graph where float shipped


def beaten_by(peers: list[dict]) -> list[str]:
    """The peers that are both at least SAME_SPEED faster than the default build and no more
    than EQUAL_PSNR_DB below its PSNR (a peer with no finite output never counts)."""
    from gencompress.export.cpu_runtime import SAME_SPEED

    own = next(p for p in peers if p["peer"] == DEFAULT_BUILD)
    own_psnr = own["psnr_db"] if own["psnr_db"] is not None else float("-inf")
    return [p["peer"] for p in peers if p["peer"] != DEFAULT_BUILD and p["psnr_db"] is not None
            and p["speedup_vs_ort_fp32"] >= (1 + SAME_SPEED) * own["speedup_vs_ort_fp32"] and p["psnr_db"] >= own_psnr - EQUAL_PSNR_DB]


def peers(name: str, args) -> dict:
    from gencompress.compress import shared_weight_form
    from gencompress.compress.calibration import calibration_inputs
    from gencompress.export.precision import CALIB_SEED
    from gencompress.export import openvino
    from gencompress.export.cpu_runtime import Graph, time_runtimes
    from gencompress.export.onnx_export import OnnxConfig, export_module

    random_init = name in args.random_init.split(",")
    if name in TRAINED:
        calib, evals = trained_inputs(name)
        bundle, how = source_bundle(name, random_init, calib.shape[1:])
    else:
        bundle, how = source_bundle(name, random_init)
        calib = calibration_inputs(bundle, CALIB, CALIB_SEED)[0].numpy()
        evals = draw_inputs(bundle.input_shape, EVAL, bundle.input_distribution, 0).numpy()
    with tempfile.TemporaryDirectory(prefix="gencompress-cpu-peers-") as tmp:
        work = Path(tmp)
        # as the build does: fused modulated convolutions (StyleGAN2) in their exact shared-weight form, which exports
        shared_weight_form(bundle.model, torch.from_numpy(calib[:2]))
        fp32 = export_module(bundle.model, bundle.input_shape, work / "fp32.onnx", OnnxConfig())
        nncf_xml = openvino.save_ir(openvino.nncf_int8(fp32, calib, BATCH, preset="performance"), work / "nncf" / openvino.IR_XML)
        summary, gc_graph = gencompress_build(name, work, random_init, calib if name in TRAINED else None)
        graphs = {
            "ort-fp32": Graph("onnxruntime", fp32),
            "ort-quantize-static": Graph("onnxruntime", plain_quantize_static(fp32, work / "ort-plain.onnx", calib)),
            "openvino-fp32": Graph("openvino", fp32, "f32"),
            "openvino-default": Graph("openvino", fp32, "default"),
            "nncf-int8": Graph("openvino", nncf_xml, "default"),
            DEFAULT_BUILD: gc_graph,
        }
        reference = _outputs(graphs["ort-fp32"], evals)
        rows = {}
        for peer, graph in graphs.items():
            out = _outputs(graph, evals)
            quality = {**fidelity(reference, out), "ssim": ssim(reference, out)} if np.isfinite(out).all() else {"psnr_db": None}
            rows[peer] = {"peer": peer, "runtime": graph.runtime, "file": graph.path.name, **quality}
        for peer in ("openvino-default", "nncf-int8"):  # what OpenVINO's default precision ran: bf16 or f32
            rows[peer]["execution_precision"] = graph_precision(graphs[peer])
        load_before = os.getloadavg()
        x = np.ascontiguousarray(evals[:BATCH])
        timing = time_runtimes(graphs, x, THREADS, args.rounds, args.inner, warmup=3, settle=2, max_seconds=args.seconds)
        for peer, row in rows.items():
            row.update(median_ms=timing["median_ms"][peer], speedup_vs_ort_fp32=timing["ratio_to_first"][peer],
                       rounds_ms=timing["rounds"][peer])
    choice = summary.get("cpu_runtime") or {}
    return {"model": name, "source": how, "input_shape": list(bundle.input_shape), "calibration_inputs": len(calib), "eval_inputs": len(evals),
            "peers": list(rows.values()),
            "beaten_by": beaten_by(list(rows.values())),
            "gencompress_choice": {k: choice.get(k) for k in ("candidate", "runtime", "precision", "float_precision", "why_float", "psnr_db",
                                                              "speedup_vs_fp32_ort", "vs_runner_up", "runner_up", "quality_bar_db", "candidates")},
            "gencompress_build_psnr_vs_pytorch_db": summary["quality"]["psnr_db"], "timing": timing["method"],
            "conditions": describe(THREADS),
            "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg())}


def graph_precision(graph) -> str:
    from gencompress.export.openvino import OpenVinoModelFromFile, OpenVinoRunner

    return OpenVinoRunner(OpenVinoModelFromFile(graph.path, THREADS, graph.precision)).execution_precision(BATCH)


def _outputs(graph, inputs: np.ndarray) -> np.ndarray:
    return run_and_close(graph.runner(THREADS), inputs, BATCH)


def markdown(result: dict) -> str:
    """The README table: speed against ONNX Runtime FP32 and PSNR against it, per model and peer."""
    order = {m: i for i, m in enumerate((*ZOO, "taesd_like", *TRAINED))}
    result["rows"].sort(key=lambda r: order.get(r["model"], len(order)))
    names = [p["peer"] for p in result["rows"][0]["peers"]]
    verdict = f"a peer >= 5% faster at no more than {EQUAL_PSNR_DB:g} dB below {DEFAULT_BUILD}?"
    lines = ["| model | " + " | ".join(names) + f" | {verdict} |", "|---|" + "---|" * (len(names) + 1)]
    for r in result["rows"]:
        cells = {p["peer"]: f"{p['speedup_vs_ort_fp32']:.2f}x, {p['psnr_db']:.1f} dB" if p["psnr_db"] is not None else "n/a" for p in r["peers"]}
        beaten = r.get("beaten_by", beaten_by(r["peers"]))  # rows merged from runs before the column: judged from their numbers
        chosen = (r.get("gencompress_choice") or {}).get("candidate")
        if chosen and DEFAULT_BUILD in cells:  # what the default build shipped: a runtime and form, or the float model
            cells[DEFAULT_BUILD] += f" ({chosen})"
        lines.append(f"| {_label(r)} | " + " | ".join(cells[n].replace("inf dB", "ref") for n in names)
                     + f" | {'yes: ' + ', '.join(beaten) if beaten else 'no'} |")
    return "\n".join(lines)


def _label(row: dict) -> str:
    """The model, and whether its weights are trained (rows of untrained models say so)."""
    source = row.get("source", "")
    if "random init" in source:
        return f"{row['model']} (random init)"
    return f"{row['model']} (seeded random weights)" if "random weights" in source else row["model"]


def openvino_capabilities() -> list[str] | None:
    """OpenVINO CPU plugin's OPTIMIZATION_CAPABILITIES (BF16 where the float peers run bf16), or None without OpenVINO."""
    try:
        import openvino
    except ImportError:
        return None
    return list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join((*ZOO, "taesd_like")))
    # 5 rounds of 5 calls left a 3-ms ResNet's per-round ratios spread over 1.6-2.3x (NNCF's graph and
    # the build's, the same quantised convolutions, 6% apart in medians): more, bounded by --seconds
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--inner", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=90.0, help="time bound of one model's timing (calls, then rounds, cut to fit)")
    parser.add_argument("--random-init", default="", help="comma-separated zoo models to take untrained (labelled in the JSON)")
    parser.add_argument("--merge", action="store_true", help="keep the other models' rows already in --out (one row per model)")
    parser.add_argument("--also", action="append", default=[], metavar="JSON", help="add the rows of another run of this script")
    parser.add_argument("--out", default="benchmarks/results/cpu_peers.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    rows, result = [], None
    for name in [m for m in args.models.split(",") if m]:
        rows.append(peers(name, args))
        print(f"{name}: " + ", ".join(f"{p['peer']} {p['speedup_vs_ort_fp32']:.2f}x {p['psnr_db'] or 0:.1f} dB" for p in rows[-1]["peers"]),
              file=sys.stderr)
        result = write(rows, args)  # after every model: a later model's failure keeps the rows measured
    if result is not None:
        print(result["table_markdown"])
    return result


def write(rows: list[dict], args) -> dict:
    earlier = [args.out] if args.merge and Path(args.out).is_file() else []
    for path in earlier + args.also:  # rows of other models from earlier runs, each with its own conditions
        done = {r["model"] for r in rows}
        rows = [r for r in json.loads(Path(path).read_text())["rows"] if r["model"] not in done] + rows
    result = {"benchmark": "cpu_peers", "batch": BATCH, "threads": THREADS, "calibration_inputs": CALIB, "eval_inputs": EVAL,
              "quality_reference": "ONNX Runtime FP32 on the same exported ONNX", "rows": rows,
              "conditions": {**describe(THREADS), "loadavg_1_5_15_end": list(os.getloadavg()), "openvino_capabilities": openvino_capabilities(),
                             "note": "load averages before and after each model are in its row (loadavg_before, loadavg_after)"}}
    result["table_markdown"] = markdown(result)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2, default=str) + "\n")
    return result


if __name__ == "__main__":
    main()

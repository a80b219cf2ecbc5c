"""The build report: Markdown tables with their conditions, and a sample grid.

The grid shows, on the same latents, the original output, the compressed output and
their difference amplified (so a person can see where quantisation bites); for an image-input
model (super-resolution, image-to-image) the input comes first.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .latency import unstable_note

DIFF_GAIN = 10  # amplification of |original - compressed| in the grid
GRID_WORST = 4  # the grid's first columns: the inputs the compressed model gets most wrong; the rest are typical ones


@dataclass(frozen=True)
class GridColumn:
    index: int  # into the evaluation inputs
    kind: str  # "worst" | "typical"
    rank: int  # worst: 1 = the largest error; typical: the error percentile among all inputs (0 = the smallest)
    psnr_db: float  # this input's own PSNR against the original

    def caption(self) -> str:
        which = f"worst {self.rank}" if self.kind == "worst" else f"typical, error p{self.rank}"
        return f"#{self.index} {which}\n{self.psnr_db:.1f} dB" if np.isfinite(self.psnr_db) else f"#{self.index} {which}\nidentical"


def per_sample_psnr(reference: np.ndarray, compressed: np.ndarray, peak: float) -> np.ndarray:
    """Each input's own PSNR (dB; inf where the outputs are identical)."""
    mse = ((reference.astype(np.float64) - compressed) ** 2).reshape(len(reference), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(peak**2 / mse)


def grid_columns(reference: np.ndarray, compressed: np.ndarray, peak: float, n: int = 8, worst: int = GRID_WORST) -> list[GridColumn]:
    """Which inputs the grid shows: the `worst` ones by per-sample error (worst first), then typical
    ones spread evenly over the other inputs' error ranks. The first inputs alone can all be alike
    (a folder of photo crops starts with flat sky) and hide where INT8 goes wrong."""
    psnr = per_sample_psnr(reference, compressed, peak)
    n = min(n, len(psnr))
    by_error = np.argsort(psnr, kind="stable")  # largest error (lowest PSNR) first; ties keep input order
    n_worst = min(worst, n // 2) if n > 1 else n
    rest = by_error[n_worst:]
    picks = np.unique(np.linspace(0, len(rest) - 1, n - n_worst).round().astype(int)) if n > n_worst else np.array([], int)
    last = max(len(psnr) - 1, 1)
    columns = [GridColumn(int(i), "worst", k + 1, float(psnr[i])) for k, i in enumerate(by_error[:n_worst])]
    # a typical input's rank: its error percentile among all inputs (p100 the worst, p0 the best)
    columns += [GridColumn(int(rest[j]), "typical", round(100 * (last - n_worst - j) / last), float(psnr[rest[j]])) for j in picks]
    return columns


def sample_grid(reference: np.ndarray, compressed: np.ndarray, path: Path, n: int = 8, title: str = "",
                inputs: np.ndarray | None = None, input_range=(-1.0, 1.0), output_range=(-1.0, 1.0),
                peak: float | None = None, columns: list[GridColumn] | None = None) -> Path:
    """Save a PNG: [input /] original / compressed / |difference| x DIFF_GAIN, one column per
    input that grid_columns() picks (or `columns`), captioned (worst or typical, and its own PSNR).

    `inputs` (image-input models: super-resolution, image-to-image) adds the input as the first
    row. Each row is shown over its own range (input range, output range); the difference is
    shown as a fraction of the output range's width, amplified. `peak`: PSNR's (the output range's width)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, high = output_range
    columns = columns or grid_columns(reference, compressed, high - low if peak is None else peak, n)
    shown = [c.index for c in columns]
    rows = [("original (FP32)", reference[shown], output_range), ("compressed", compressed[shown], output_range),
            (f"|diff| x{DIFF_GAIN}", np.abs(reference[shown] - compressed[shown]) * DIFF_GAIN + low, output_range)]
    if inputs is not None:
        rows.insert(0, ("input", inputs[shown], input_range))
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.3 * len(columns), 1.47 * len(rows) + 0.3), squeeze=False)
    for r, (label, images, value_range) in enumerate(rows):
        for c, column in enumerate(columns):
            ax = axes[r][c]
            img = images[c]
            ax.imshow(to_display(img, value_range), cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(column.caption(), fontsize=7, color="tab:red" if column.kind == "worst" else "black")
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def grid_markdown(columns: list[GridColumn]) -> str:
    """What the grid's columns are, for the report's text."""
    def listed(kind: str) -> str:
        return ", ".join(c.caption().replace("\n", " ") for c in columns if c.kind == kind)

    n_worst = sum(c.kind == "worst" for c in columns)
    text = f"Columns: the {n_worst} evaluation inputs with the largest error ({listed('worst')})"
    if len(columns) > n_worst:
        text += f", then {len(columns) - n_worst} typical ones spread over the others' error ranks ({listed('typical')}; p100 is the worst)"
    return text + ". Each input's own PSNR is shown with it."


def to_display(chw: np.ndarray, value_range=(-1.0, 1.0)) -> np.ndarray:
    """C x H x W over `value_range` -> H x W (grey) or H x W x 3 in [0, 1] for imshow."""
    low, high = value_range
    img = (np.clip(chw, low, high) - low) / (high - low)
    return img[0] if img.shape[0] == 1 else np.transpose(img[:3], (1, 2, 0))


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value == float("inf"):
            return "inf"
        return f"{value:.{digits}f}"
    return str(value)


def _times(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def prune_markdown(stats: dict) -> str:
    """The pruning section: size before and after, and FID/KID against the training data
    (original, pruned without distillation, pruned and distilled) where it was measured."""
    rows = [["parameters", stats["params_before"], stats["params_after"]], ["MACs per image", stats["macs_before"], stats["macs_after"]]]
    parts = [markdown_table(["", "original", "pruned"], rows), "", f"MACs {stats['macs_reduction']:.2f}x fewer.", ""]
    dq = stats.get("data_quality")
    if dq:
        models = [("original", "original"), ("pruned, no distillation", "pruned_no_distill"), ("pruned + distillation", "pruned_distilled")]
        table = [[label, dq[key]["fid"], dq[key]["kid_mean"]] for label, key in models if key in dq]
        extractor = dq["original"]["extractor"]
        parts += [f"Against the training data ({dq['data']}, {dq['samples']} samples on fixed latents, extractor {extractor}; lower is better):",
                  "", markdown_table(["model", "FID", "KID"], table), ""]
    return "\n".join(parts)


def _estimate_line(est: dict | None, precision: str) -> list[str]:
    """For a TensorRT target: what to expect there against the FP16 engine, labelled as the estimate it is."""
    if not est or not est.get("speedup_vs_fp16"):
        return []
    return [f"On the target ({est['device']}), batch {est['batch']}: {precision} about **{est['speedup_vs_fp16']:.2f}x** the FP16 "
            f"engine's speed, {est['compressed_ms']:.3f} ms against {est['fp16_ms']:.3f} ms ({est['speedup_vs_fp32']:.2f}x the FP32 "
            f"engine's {est['fp32_ms']:.3f} ms; layers kept float run in {est['compressed_float_layers'].upper()}): an {est['label']}. "
            "The table above is ONNX Runtime on this machine's CPU, which is not the target.", ""]


def _paired_line(paired: dict | None, precision: str) -> list[str]:
    if not paired:
        return []
    return [f"Paired at batch {paired['batch']}: {precision} runs at **{paired['speedup_vs_fp32_onnx']:.2f}x** the FP32 ONNX speed "
            f"({paired['method']}).", ""]


def format_load(load) -> str:
    """'load 3.29 / 2.10 / 1.50 (1/5/15 min)' from os.getloadavg()'s three numbers."""
    return "load n/a" if not load else f"load {' / '.join(f'{x:.2f}' for x in load)} (1/5/15 min)"


def _quality_bar(choice: dict, floor_given: bool) -> str:
    """The CPU runtime choice's bar, saying where its number came from (a default floor is not '--min-psnr 35')."""
    if choice["quality_bar"].startswith("--min-psnr") and not floor_given:
        return f"the default floor's PSNR, {choice['quality_bar_db']:g} dB (no --min-psnr given)"
    return choice["quality_bar"]


def _runtime_section(choice: dict | None, floor_given: bool = True) -> list[str]:
    """`--target cpu` INT8: the runtime chosen by measurement, each candidate's speed and quality."""
    if not choice:
        return []
    from gencompress.export.cpu_runtime import summary_line

    rows = [[c["name"], c["graph"]["runtime"], _computes_in(c), c["psnr_db"], c["median_ms"], _times(c["speedup_vs_fp32_ort"]),
             "yes" if c["eligible"] else "no"] for c in choice["candidates"]]
    return ["## CPU runtime", "", f"**{summary_line(choice)}**.", "",
            markdown_table(["candidate", "runtime", "computes in", "PSNR (dB)", f"median ms (batch {choice['batch']})",
                            "speed vs FP32 ONNX Runtime", "meets the quality bar"], rows), "",
            f"Quality bar: {_quality_bar(choice, floor_given)}. Timing: {choice['method']}; {format_load(choice['loadavg_1_5_15'])}.",
            *[f"- {note}" for note in choice["notes"]], ""]


def _computes_in(candidate: dict) -> str:
    """INT8 with its float layers' precision, or the float model's precision."""
    precision = candidate.get("precision", "int8")  # choices recorded before the float candidates: INT8 only
    if precision != "int8":
        return f"{precision} (float model)"
    return f"int8, float layers {candidate.get('float_precision', 'fp32')}"


def precision_markdown(layer_precision: dict, sensitivity: dict | None) -> str:
    """Each layer's precision and, after a --min-psnr search, its sensitivity: the PSNR of
    the model with only that layer in INT8 (lower: more fragile)."""
    if not layer_precision:
        return "(no PyTorch layers: ONNX-level quantisation)"
    if not sensitivity:
        return markdown_table(["layer", "precision"], [[k, v] for k, v in layer_precision.items()])
    alone = sensitivity.get("layer_psnr_db", {})
    table = markdown_table(["layer", "precision", "PSNR with only this layer INT8 (dB)"],
                           [[k, v, alone.get(k)] for k, v in layer_precision.items()])
    kept = sensitivity.get("keep_float") or []
    # "inputs", not "latents": a super-resolution or image-to-image model searches on images
    text = (f"Budget {sensitivity['budget_db']:g} dB: {sensitivity['psnr_db']:.2f} dB on the held-out search inputs with "
            f"{len(kept)} layer(s) kept float{' (' + ', '.join(kept) + ')' if kept else ''}.\n\n{table}")
    return text + speed_markdown(sensitivity)


def speed_markdown(sensitivity: dict) -> str:
    """--target cpu: each layer's time in both forms (ONNX Runtime's per-node profile) and
    which layers were left float for quality and which for speed."""
    speed = sensitivity.get("speed")
    if not speed:  # a modelopt (TensorRT) search: no per-layer timing exists for its target here
        return ("\n\nLayers were left float for quality only: TensorRT's per-layer INT8 and reformat costs cannot be "
                "timed without TensorRT on the target, so no layer was left float for speed.")
    quality, fast = sensitivity.get("float_for_quality") or [], speed.get("float_for_speed") or []
    rows = [[n, speed["float_us"].get(n), speed["int8_us"].get(n), "quality" if n in quality else "speed" if n in fast else ""]
            for n in speed["int8_us"]]
    return ("\n\n" + f"Left float for quality: {', '.join(quality) or 'none'}; for speed (INT8 not faster): {', '.join(fast) or 'none'}. "
            f"Per-layer time, median of {speed['runs']} runs of ONNX Runtime's profiler at batch {speed['batch']}, {speed['threads']} threads, "
            f"load average {speed['loadavg'][0]:.1f} (a shared CPU makes single-node times noisy):\n\n"
            + markdown_table(["layer", "float us", "INT8 us (all-INT8 graph)", "left float for"], rows))


def floor_markdown(quality: dict, calibrators: dict | None) -> str:
    """How the quality floor was met: the floor, SSIM, and each calibrator's held-out score."""
    if "floor" not in quality:
        return "No quality floor (--no-quality-floor)."
    lines = [f"Floor: {quality['floor']}. Reached PSNR {quality['psnr_db']:.2f} dB and SSIM {quality['ssim']:.4f} on the evaluation "
             "inputs (neither calibrated on nor searched on)."]
    if calibrators:
        rows = [[name, s["psnr_db"], s["ssim"], "chosen" if name == calibrators["chosen"] else ""] for name, s in calibrators["scores"].items()]
        lines += ["", f"Calibrator ({calibrators['asked']}): every layer INT8, scored on held-out search inputs.", "",
                  markdown_table(["calibrator", "PSNR (dB)", "SSIM", ""], rows)]
    return "\n".join(lines)


def _inputs_line(quality: dict) -> str:
    """Which inputs quality was judged on: the user's data (named) or drawn ones (said so)."""
    from gencompress.inputs import describe_record

    record = quality.get("inputs")
    if record is None:  # summaries from before issue 12
        return f"{quality['samples']} fixed inputs (seed {quality['seed']})"
    if record["kind"] == "drawn":
        return f"{describe_record(record)}: quality was measured on drawn inputs (pass --data for your own)"
    return f"{record['evaluation_samples']} evaluation inputs of the user's data, {describe_record(record)}"


def _default_floor(quality: dict) -> bool:
    return "(the default floor)" in quality.get("floor", "")


# How the compressed graph ran for the quality numbers, by ONNX Runtime's graph optimisation level
ORT_RUNTIME_TEXT = {"disable": "ONNX Runtime CPU, graph optimisations off (TensorRT's arithmetic: its explicit Q/DQ, no CPU fusions)",
                    "all": "ONNX Runtime CPU, all graph optimisations (as it is deployed on a CPU)"}


def ort_runtime_text(optimization: str) -> str:
    """The summary's runtime when ONNX Runtime ran the compressed graph at graph optimisation level `optimization`."""
    return ORT_RUNTIME_TEXT[optimization]


def runtime_text(runtime: str) -> str:
    """A summary's runtime as a person reads it. Bundles built before the build wrote ort_runtime_text
    recorded the level raw ("ONNX Runtime CPU, graph optimisation disable"): reworded here."""
    old_prefix = "ONNX Runtime CPU, graph optimisation "
    return ORT_RUNTIME_TEXT.get(runtime[len(old_prefix):], runtime) if runtime.startswith(old_prefix) else runtime


def size_markdown(summary: dict) -> str:
    """Parameters and bytes before and after: the FP32 weights (4 bytes a parameter) against the compressed graph's file."""
    params, files, prune = summary.get("params"), summary.get("file_bytes") or {}, summary.get("prune")
    before = prune["params_before"] if prune else params
    fp32_bytes = 4 * before if before else None
    after_bytes = files.get("compressed_onnx")
    rows = [["parameters", before, params],
            ["bytes", f"{_bytes(fp32_bytes)} (FP32 weights)", f"{_bytes(after_bytes)} ({summary['precision']} graph, model.onnx)"],
            ["MACs per image", prune["macs_before"] if prune else summary.get("macs"), summary.get("macs")]]
    text = markdown_table(["", "original (FP32)", "compressed"], rows)
    if fp32_bytes and after_bytes:
        text += f"\n\n{fp32_bytes / after_bytes:.2f}x smaller on disk (the graph file also holds its structure and scales)."
    return text


def _bytes(n: int | None) -> str:
    if not n:
        return "n/a"
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _range(quality: dict) -> str:
    low, high = quality.get("output_range", (-1.0, 1.0))
    return f"{low:g}, {high:g}"
def _calls_line(rows: list[dict]) -> list[str]:
    """Which rows the time cap cut short, with the calls they got."""
    capped = [f"{r['backend']} {r['precision']} b{r['batch']}: {r['iters']} calls in {r.get('seconds', 0):.1f} s"
              for r in rows if r.get("stopped_by") == "time"]
    return [f"Stopped by the time cap: {'; '.join(capped)}.", ""] if capped else []


def _time_section(took: dict | None) -> list[str]:
    """Where the build's wall time went, per stage (up to the report itself)."""
    if not took:
        return []
    total = took["wall_seconds"] or 1.0
    rows = [[k, f"{v:.1f}", f"{100 * v / total:.0f}%"] for k, v in sorted(took["stages"].items(), key=lambda kv: -kv[1])]
    rows.append(["other", f"{took['other_seconds']:.1f}", f"{100 * took['other_seconds'] / total:.0f}%"])
    return ["## Where the time went", "", f"{took['wall_seconds']:.1f} s wall in all (before writing this report).", "",
            markdown_table(["stage", "seconds", "share"], rows), ""]


def build_report_markdown(summary: dict, grid: list[GridColumn] | None = None) -> str:
    """Markdown for a build summary (see gencompress.cli.pipeline for its keys); `grid`: the sample grid's columns."""
    q, cond = summary["quality"], summary["conditions"]
    float_fp32 = (summary.get("float_layers") or {}).get("why")  # gpu/Jetson INT8: why its float layers stayed FP32
    parts = [
        f"# gencompress build report: {summary['model']}",
        "",
        f"Precision **{summary['precision']}**, target **{summary['target']}**, "
        f"quantisation form: {summary.get('quant_form', 'none')}.",
        "",
        *([f"**The float model shipped: {summary['float_shipped']}.**", ""] if summary.get("float_shipped") else []),
        *([f"{float_fp32}.", ""] if float_fp32 else []),
        *[f"**Warning: {w}.**\n" for w in summary.get("warnings", [])],
        "## Quality against the original FP32 model",
        "",
        f"On {_inputs_line(q)}; output range [{_range(q)}], so PSNR's peak is {q.get('psnr_peak', 2.0):g}; "
        f"reference: {q['reference']}" + (f"; compressed graph run on {runtime_text(q['runtime'])}." if q.get("runtime") else "."),
        "",
        markdown_table(["metric", "value"], [["PSNR (dB)", q["psnr_db"]], ["max abs error", q["max_abs_error"]], ["cosine similarity", q["cosine"]]]),
        "",
        "![samples](samples.png)",
        "",
        *([grid_markdown(grid), ""] if grid else []),
        "### Quality floor",
        "",
        floor_markdown(q, summary.get("calibrators")),
        "",
        "## Latency",
        "",
        f"{cond['threads']} threads, up to {summary['latency_warmup']} warm-up and {summary['latency_iters']} timed iterations per row"
        + (f", each row capped at {summary['bench_seconds']:g} s (at least 3 calls)" if summary.get("bench_seconds") else "")
        + f", on {cond['device_name']}.",
        "",
        markdown_table(
            ["backend", "precision", "batch", "median ms", "p90 ms", "p99 ms", "images/s", "speed vs FP32 ONNX", "note"],
            [[r["backend"], r["precision"], r["batch"], r["median_ms"], r["p90_ms"], r["p99_ms"], r["throughput_ips"], _times(r.get("speedup_vs_fp32_onnx")),
              unstable_note(r)] for r in summary["latency"]],
        ),
        "",
        *_calls_line(summary["latency"]),
        *_paired_line(summary.get("paired_speedup"), summary["precision"]),
        *_runtime_section(summary.get("cpu_runtime"), floor_given=not _default_floor(q)),
        *_estimate_line(summary.get("target_estimate"), summary["precision"]),
        "## Size",
        "",
        size_markdown(summary),
        "",
        *(["## Pruning", "", prune_markdown(summary["prune"])] if summary.get("prune") else []),
        "## Precision per layer",
        "",
        # the float model shipped: the INT8 search's sensitivities describe a model that did not
        precision_markdown(summary["layer_precision"], None if summary.get("float_shipped") else summary.get("sensitivity")),
        "",
        "## Engine",
        "",
        summary["engine"]["message"],
        "",
        *_time_section(summary.get("time")),
        "## Conditions",
        "",
        markdown_table(["", "value"], [["device", cond["device_name"]], ["threads", cond["threads"]], ["cpus", cond["cpu_count"]],
                                       ["load average", format_load(cond.get("loadavg_1_5_15"))], ["platform", cond["platform"]], ["commit", cond["commit"]]]
                       + [[k, v] for k, v in cond["versions"].items()]),
        "",
    ]
    return "\n".join(parts)


def write_build_report(summary: dict, reference: np.ndarray, compressed: np.ndarray, folder: Path, inputs: np.ndarray | None = None,
                       input_range=(-1.0, 1.0), output_range=(-1.0, 1.0)) -> dict[str, Path]:
    """Write the build's report.md and samples.png into `folder`; return them keyed by their
    place in the bundle. `inputs` (an image-input model's) is shown beside its outputs."""
    folder.mkdir(parents=True, exist_ok=True)
    q = summary["quality"]
    low, high = output_range
    columns = grid_columns(reference, compressed, q.get("psnr_peak", high - low))
    sample_grid(reference, compressed, folder / "samples.png", title=f"{summary['model']}: {summary['precision']} vs FP32, PSNR {q['psnr_db']:.2f} dB",
                inputs=inputs, input_range=input_range, output_range=output_range, columns=columns)
    (folder / "report.md").write_text(build_report_markdown(summary, columns))
    return {"report/report.md": folder / "report.md", "report/samples.png": folder / "samples.png"}

"""`gencompress report RUN...`: Markdown and a self-contained HTML page from result JSONs.

Both documents are rendered from the same list of sections (title, text, tables,
figures), so the Markdown always has the same tables as the HTML. Figures are PNGs
written beside report.md and embedded base64 in report.html: the page needs no network.
"""
from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gencompress.atomic import atomic_dir
from gencompress.errors import GencompressError

from . import plots, results_io
from .latency import unstable_note
from .report import _bytes, _fmt, format_load, markdown_table, runtime_text, sample_grid

RESULT_KINDS = ("gencompress-bench", "gencompress-sweep")
BUILD_KIND = "gencompress-build"  # a build bundle read by build_run


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[tuple[list[str], list[list]]] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)  # (file name, PNG bytes)


# --- inputs ----------------------------------------------------------------------------


def load_runs(paths: list[str]) -> list[dict]:
    """Result JSONs named directly, every result JSON inside a named folder, or build bundles."""
    files: list[Path] = []
    runs = []
    for raw in paths:
        p = Path(raw)
        if (p / "manifest.json").is_file():  # a bundle: its build's results
            runs.append(build_run(p))
        elif p.is_dir():
            files += sorted(p.glob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise GencompressError(f"run {raw} does not exist")
    for f in files:
        try:
            data = results_io.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GencompressError(f"{f} is not valid JSON: {exc}") from None
        if isinstance(data, dict) and data.get("kind") in RESULT_KINDS:
            data["_file"] = str(f)
            runs.append(data)
    if not runs:
        raise GencompressError(f"no gencompress bench or sweep results or build bundles among {', '.join(paths)}")
    return runs


def build_run(folder: Path) -> dict:
    """A `gencompress build` bundle's results (its manifest's metrics.build) as a run: its latency rows
    (the compressed rows carry the build's quality), its sample grid and conditions, and the summary."""
    try:
        manifest = results_io.loads((folder / "manifest.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GencompressError(f"{folder / 'manifest.json'} is not valid JSON: {exc}") from None
    build = (manifest.get("metrics") or {}).get("build") if isinstance(manifest, dict) else None
    if not build:
        raise GencompressError(f"{folder} is a bundle without build results (no metrics.build in its manifest): "
                               "report reads build bundles and bench or sweep result JSON (run `gencompress bench` on it)")
    variant = f"{build['model']} ({folder.name})"  # its rows carry backend and precision
    quality = build["quality"]

    def row(r: dict) -> dict:
        judged = r["precision"] == build["precision"] and r["backend"] != "torch eager"  # the compressed graph's rows
        return {**r, "variant": variant, "device": "cpu", "source": "measured",
                "psnr_db": quality["psnr_db"] if judged else None, "ssim": quality.get("ssim") if judged else None}

    grid = folder / "report" / "samples.png"
    return {"kind": BUILD_KIND, "model": build["model"], "_file": str(folder), "build": build,
            "rows": [row(r) for r in build["latency"]],
            "conditions": {**build["conditions"], "iters": build.get("latency_iters"), "warmup": build.get("latency_warmup")},
            "sample_grids": {variant: base64.b64encode(grid.read_bytes()).decode("ascii")} if grid.is_file() else {}}


def build_section(runs: list[dict]) -> Section | None:
    """Each build bundle's summary: target, form, quality and floor, paired speed, size before and after."""
    builds = [(Path(run["_file"]).name, run["build"]) for run in runs if run.get("kind") == BUILD_KIND]
    if not builds:
        return None
    header = ["bundle", "target", "precision", "PSNR dB", "SSIM", "floor", "paired speed vs FP32 ONNX", "parameters",
              "FP32 weights", "compressed graph"]
    table = [[name, b["target"], b["precision"], b["quality"]["psnr_db"], b["quality"].get("ssim"),
              b["quality"].get("floor", "none"), f"{b['paired_speedup']['speedup_vs_fp32_onnx']:.2f}x" if b.get("paired_speedup") else None,
              b.get("params"), _bytes(4 * b["params"]) if b.get("params") else None, _bytes((b.get("file_bytes") or {}).get("compressed_onnx"))]
             for name, b in builds]
    runtimes = "; ".join(f"{name}: {runtime_text(b['quality'].get('runtime') or 'n/a')}" for name, b in builds)
    text = (f"From each build bundle's manifest (metrics.build). Quality against the FP32 model on the build's evaluation inputs, "
            f"the compressed graph run on {runtimes}. Each bundle's report/report.md has the full build report.")
    return Section("Builds", text, [(header, table)])


def grid_base64(reference: np.ndarray, output: np.ndarray, title: str = "", peak: float = 2.0, output_range=(-1.0, 1.0)) -> str:
    """The sample grid (worst and typical inputs, report.grid_columns) as base64 PNG."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grid.png"
        sample_grid(reference, output, path, title=title, output_range=output_range, peak=peak)
        return base64.b64encode(path.read_bytes()).decode("ascii")


# --- sections --------------------------------------------------------------------------


LATENCY_HEADER = ["variant", "backend", "precision", "device", "batch", "median ms", "p90 ms", "p99 ms", "std ms",
                  "images/s", "peak RSS MiB", "PSNR dB", "SSIM", "source", "note"]


def latency_rows(rows: list[dict]) -> list[list]:
    return [[r["variant"], r["backend"], r["precision"], r["device"], r["batch"], r["median_ms"], r["p90_ms"], r["p99_ms"],
             r["std_ms"], r["throughput_ips"], r.get("host_peak_rss_mb"), r.get("psnr_db"), r.get("ssim"), r.get("source"),
             unstable_note(r)]
            for r in rows]


def all_rows(runs: list[dict]) -> list[dict]:
    return [row for run in runs for row in run.get("rows", [])]


def summary_section(runs: list[dict], rows: list[dict]) -> Section:
    batch = plots.scatter_batch(rows)
    scatter, front = plots.latency_quality_scatter(rows, batch)
    front_rows = [[r["variant"], r["backend"], r["precision"], r["median_ms"], r.get("psnr_db")] for r in front]
    text = (f"Latency (median, batch {batch}) against quality (PSNR vs the original FP32 model, on the same latents). "
            "Points on the Pareto front: no other configuration is both faster and closer to the original.")
    under = [(u, run["floor"]["describe"]) for run in runs for u in run.get("under_floor", [])]
    if under:  # sweep.mark_floor: crossed out on the scatter, never on the front
        text += (f" Kept off the front, under the quality floor that build enforces ({under[0][1]}): "
                 + "; ".join(f"{u['variant']} ({u['note']})" for u, _ in under) + ".")
    return Section("Latency against quality", text, [(["variant", "backend", "precision", "median ms", "PSNR dB"], front_rows)],
                   [("scatter.png", scatter)])


def latency_section(rows: list[dict]) -> Section:
    text = ("Every number measured on this machine unless the source column says estimated. "
            "Latency is per batch; images/s at the median.")
    return Section("Latency and quality per backend and batch", text, [(LATENCY_HEADER, latency_rows(rows))],
                   [("bars.png", plots.latency_bars(rows))])


def realtime_section(runs: list[dict]) -> Section | None:
    verdicts = [v for run in runs for v in run.get("realtime", [])]
    if not verdicts:
        return None
    header = ["variant", "backend", "precision", "batch", "p99 ms", "budget ms", "headroom", "verdict"]
    table = [[v["variant"], v["backend"], v["precision"], v["batch"], v["p99_ms"], v["budget_ms"], v["headroom"], v["verdict"]]
             for v in verdicts]
    text = (f"Frame budget {_fmt(verdicts[0]['frame_budget_ms'])} ms. A batch of B frames keeps up when its p99 latency "
            "is at most B frame budgets (each frame then waits up to 2B frame times end to end).")
    return Section("Real-time verdict", text, [(header, table)])


def estimate_section(runs: list[dict]) -> Section | None:
    checks = [c for run in runs for c in run.get("estimate_vs_measured", [])]
    if not checks:
        return None
    header = ["variant", "device profile", "batch", "estimated ms", "measured ms", "measured / estimate"]
    table = [[c["variant"], c["profile"], c["batch"], c["estimated_ms"], c["measured_ms"], c["ratio"]] for c in checks]
    text = "Roofline estimates (an estimate: max of compute and memory time per layer) against ONNX Runtime measurements."
    return Section("Estimate against measurement", text, [(header, table)])


def quality_data_section(runs: list[dict]) -> Section | None:
    entries = [(run.get("model"), q) for run in runs for q in _data_entries(run)]
    if not entries:
        return None
    header = ["model", "variant", "FID", "KID (mean)", "KID (std)", "IS (mean)", "generated", "real", "extractor", "note"]
    table = [[m, q.get("variant", q.get("backend")), q.get("fid"), q.get("kid_mean"), q.get("kid_std"), q.get("is_mean"),
              q.get("samples"), q.get("real_samples"), q.get("extractor"), q.get("warning") or q.get("message") or ""]
             for m, q in entries]
    text = ("Against the real data, with the toolkit's own feature extractor (numbers from different extractors "
            "do not compare). Sample counts are stated; FID is biased upwards at small counts.")
    return Section("Quality against real data", text, [(header, table)])


def _data_entries(run: dict) -> list[dict]:
    q = run.get("quality_vs_data")
    if isinstance(q, dict):
        return [q]
    return [e for e in (q or []) if e]


def samples_section(runs: list[dict]) -> Section | None:
    figures = []
    for i, run in enumerate(runs):
        for label, b64 in (run.get("sample_grids") or {}).items():
            safe = "".join(ch if ch.isalnum() else "_" for ch in f"{i}_{label}")[:80]
            figures.append((f"samples_{safe}.png", base64.b64decode(b64)))
    if not figures:
        return None
    text = ("Same inputs: original FP32 (top), compressed (middle), |difference| x10 (bottom). Each grid is titled with its "
            "variant and backend; its first columns (red captions) are the inputs with the largest error, the others typical "
            "ones spread over the error ranks (error p100: the worst), each with its own PSNR.")
    return Section("Sample grids", text, figures=figures)


def conditions_section(runs: list[dict]) -> Section:
    header = ["run", "device", "threads", "cpus", "load average", "iters", "warm-up", "commit", "torch", "onnxruntime", "created"]
    table = []
    for run in runs:
        c = run.get("conditions", {})
        v = c.get("versions", {})
        load = c.get("loadavg_1_5_15")
        table.append([Path(run.get("_file", "?")).name, c.get("device_name"), c.get("threads"), c.get("cpu_count"),
                      format_load(load), c.get("iters"), c.get("warmup"),
                      c.get("commit"), v.get("torch"), v.get("onnxruntime"), c.get("created")])
    return Section("Conditions", "Every number above was taken under these conditions.", [(header, table)])


def build_sections(runs: list[dict]) -> list[Section]:
    rows = all_rows(runs)
    if not rows:
        raise GencompressError("the runs hold no latency rows")
    optional = [realtime_section(runs), estimate_section(runs), quality_data_section(runs), samples_section(runs)]
    return [*filter(None, [build_section(runs)]), summary_section(runs, rows), latency_section(rows), *[s for s in optional if s],
            conditions_section(runs)]


# --- rendering -------------------------------------------------------------------------


def render_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}", ""]
    for s in sections:
        parts += [f"## {s.title}", ""]
        if s.text:
            parts += [s.text, ""]
        for header, rows in s.tables:
            parts += [markdown_table(header, rows), ""]
        for name, _ in s.figures:
            parts += [f"![{name}]({name})", ""]
    return "\n".join(parts)


def html_table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #bbb;padding:3px 7px;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.5em 0;display:block}"""


def render_html(title: str, sections: list[Section]) -> str:
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        parts += [html_table(h, r) for h, r in s.tables]
        for name, png in s.figures:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<img alt=\"{html.escape(name)}\" src=\"data:image/png;base64,{data}\">")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(runs: list[dict], out: str | Path, title: str = "gencompress benchmark report") -> Path:
    """report.md (+ PNGs beside it) and a self-contained report.html in `out`, atomically."""
    sections = build_sections(runs)
    out = Path(out)
    with atomic_dir(out) as tmp:
        (tmp / "report.md").write_text(render_markdown(title, sections))
        (tmp / "report.html").write_text(render_html(title, sections))
        for s in sections:
            for name, png in s.figures:
                (tmp / name).write_bytes(png)
    return out


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)

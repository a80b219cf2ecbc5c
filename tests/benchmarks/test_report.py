"""`gencompress report`: Markdown and HTML with the same tables; the HTML is self-contained
and renders in headless Chromium (screenshot taken when Chromium is installed)."""
from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner

from gencompress.benchmarks.bench import ROW_KEYS
from gencompress.benchmarks.report_html import grid_base64
from gencompress.benchmarks.results_io import write_json
from gencompress.cli import cli


def _row(variant, backend, precision, batch, median, psnr, source="measured"):
    row = {k: None for k in ROW_KEYS}
    row.update(model="dcgan", variant=variant, backend=backend, precision=precision, device="cpu", batch=batch,
               iters=5, warmup=1, min_ms=median * 0.9, median_ms=median, mean_ms=median, p90_ms=median * 1.1,
               p99_ms=median * 1.2, std_ms=0.1, throughput_ips=batch * 1000 / median, psnr_db=psnr, ssim=0.99, source=source)
    return row


@pytest.fixture(scope="module")
def result_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    ref = rng.uniform(-1, 1, (4, 1, 32, 32)).astype(np.float32)
    rows = [_row("prune0.00-fp32", "ort", "fp32", 8, 2.0, 90.0), _row("prune0.00-int8", "ort", "int8", 8, 1.0, 35.0),
            _row("prune0.50-int8", "ort", "int8", 8, 1.5, 30.0),  # dominated: slower and worse than int8 unpruned
            _row("prune0.00-fp32", "ort", "fp32", 1, 0.5, 90.0),
            _row("prune0.00-int8", "roofline:jetson-orin-nano", "int8", 8, 0.2, 35.0, "estimated")]
    result = {
        "kind": "gencompress-sweep", "model": "dcgan", "rows": rows,
        "realtime": [{"variant": "prune0.00-int8", "backend": "ort", "precision": "int8", "batch": 8, "p99_ms": 1.2,
                      "budget_ms": 266.7, "frame_budget_ms": 33.3, "headroom": 222.0, "verdict": "meets budget (measured)"}],
        "estimate_vs_measured": [{"variant": "prune0.00-fp32", "profile": "cpu-epyc-2c", "batch": 8, "estimated_ms": 1.0,
                                  "measured_ms": 2.0, "ratio": 2.0}],
        "quality_vs_data": [{"variant": "prune0.00-int8", "fid": 12.5, "kid_mean": 0.01, "kid_std": 0.002, "is_mean": 5.5,
                             "samples": 256, "real_samples": 1797, "extractor": "digits-classifier", "warning": "only 256 samples"}],
        "sample_grids": {"prune0.00-int8": grid_base64(ref, ref + 0.05, "int8")},
        "conditions": {"device_name": "AMD EPYC", "threads": 2, "cpu_count": 2, "loadavg_1_5_15": [1.0, 2.0, 3.0],
                       "iters": 5, "warmup": 1, "commit": "abc", "versions": {"torch": "2.13"}, "created": "now"},
    }
    path = tmp_path_factory.mktemp("runs") / "sweep.json"
    write_json(path, result)
    return path


@pytest.fixture(scope="module")
def report_dir(result_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "report"
    res = CliRunner().invoke(cli, ["report", str(result_file), "--out", str(out)], standalone_mode=False, catch_exceptions=False)
    assert res.exit_code == 0 and not res.return_value, res.output
    return out


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.cell, self.in_cell = [], None, False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.in_cell, self.cell = True, ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self.cell.strip())
            self.in_cell = False

    def handle_data(self, data):
        if self.in_cell:
            self.cell += data


def markdown_tables(text: str) -> list[list[list[str]]]:
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                tables.append(current)
            if not re.fullmatch(r"\|(---\|)+", line):
                current.append([c.strip() for c in line.strip("|").split(" | ")])
        else:
            current = None
    return tables


def test_markdown_and_html_hold_the_same_tables(report_dir):
    parser = _Tables()
    parser.feed((report_dir / "report.html").read_text())
    md = markdown_tables((report_dir / "report.md").read_text())
    assert len(md) >= 6 and parser.tables == md


def test_pareto_front_and_labels_in_report(report_dir):
    md = (report_dir / "report.md").read_text()
    front = markdown_tables(md)[0]
    assert [r[0] for r in front[1:]] == ["prune0.00-int8", "prune0.00-fp32"]  # the dominated variant is left out
    assert "estimated" in md and "Estimate against measurement" in md and "only 256 samples" in md


def test_html_is_self_contained(report_dir):
    html = (report_dir / "report.html").read_text()
    assert not re.search(r"(src|href)=\"(?!data:)", html)  # every image inline, no links out
    assert "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") == 3  # scatter, bars, one sample grid
    assert {p.name for p in report_dir.glob("*.png")} == {"scatter.png", "bars.png", "samples_0_prune0_00_int8.png"}


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(report_dir, tmp_path):
    shot = tmp_path / "report.png"
    page = (report_dir / "report.html").resolve().as_uri()
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--enable-logging=stderr"]
    proc = subprocess.run([*base, f"--screenshot={shot}", "--window-size=1280,2400", page], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    assert "Uncaught" not in proc.stderr
    dom = subprocess.run([*base, "--dump-dom", page], capture_output=True, text=True, timeout=90).stdout
    assert dom.count("<table") >= 6 and "Pareto" in dom


def test_precision_section_says_why_layers_were_left_float():
    """--target cpu reports float-for-quality and float-for-speed layers; a TensorRT search,
    which times no layer here, says its layers were chosen by quality only."""
    from gencompress.benchmarks.report import precision_markdown

    layers = {"conv1": "fp32", "conv2": "int8", "conv3": "fp32"}
    gpu = precision_markdown(layers, {"budget_db": 35, "psnr_db": 36.1, "keep_float": ["conv1"], "layer_psnr_db": {"conv1": 20.0}})
    assert "left float for quality only" in gpu and "no layer was left float for speed" in gpu
    speed = {"float_us": {"conv2": 5.0, "conv3": 3.0}, "int8_us": {"conv2": 2.0, "conv3": 4.0}, "float_for_speed": ["conv3"],
             "runs": "5-20", "batch": 8, "threads": 2, "loadavg": [1.0, 1.0, 1.0]}
    cpu = precision_markdown(layers, {"budget_db": 35, "psnr_db": 36.1, "keep_float": ["conv1", "conv3"], "float_for_quality": ["conv1"],
                                      "layer_psnr_db": {"conv1": 20.0}, "speed": speed})
    assert "Left float for quality: conv1; for speed (INT8 not faster): conv3" in cpu and "quality only" not in cpu

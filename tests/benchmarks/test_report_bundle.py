"""`gencompress report BUNDLE` reads a build's results, and its report.html is seen as a person sees it:
opened in headless Chromium, its figures decoded and on screen, pixel for pixel the PNGs beside it."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_cli, tree_digest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WINDOW = (1280, 8000)  # tall enough that every figure of this report is inside the screenshot


@pytest.fixture(scope="module")
def build_bundle(tmp_path_factory):
    """A real --target cpu INT8 build, small: 16 evaluation inputs, 0.1 s latency rows."""
    from gencompress.cli.pipeline import BuildConfig, build

    out = tmp_path_factory.mktemp("build") / "dcgan-int8"
    build(BuildConfig(model="dcgan", random_init=True, out=str(out), target="cpu", cpu_runtime="onnxruntime", eval_samples=16,
                      bench_seconds=0.1, latency_batches=(1, 8), progress=False))
    return out


@pytest.fixture(scope="module")
def report_dir(build_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "r"
    result = run_cli("report", build_bundle, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_report_reads_a_build_bundle(build_bundle, report_dir):
    text = (report_dir / "report.md").read_text()
    assert "## Builds" in text and "| dcgan-int8 | cpu | int8 |" in text
    assert "dcgan (random init) (dcgan-int8) | onnxruntime | int8 |" in text  # its latency rows, named by bundle
    assert "ONNX Runtime CPU, all graph optimisations" in text
    grids = list(report_dir.glob("samples_*.png"))
    assert len(grids) == 1 and grids[0].read_bytes() == (build_bundle / "report" / "samples.png").read_bytes()
    assert (report_dir / "report.html").stat().st_size > 10_000


def test_report_refuses_a_bundle_without_build_results(tmp_path):
    from gencompress import zoo
    from gencompress.train.pretrained import zoo_bundle

    bundle = zoo_bundle("dcgan", zoo.build("dcgan", ngf=8), ngf=8).save(tmp_path / "plain")
    before = tree_digest(tmp_path)
    result = run_cli("report", bundle.path, "--out", tmp_path / "r")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is a bundle without build results" in lines[0], result.stderr
    assert tree_digest(tmp_path) == before  # nothing written


# --- seen in a browser --------------------------------------------------------------------

PROBE = """<script>window.addEventListener('load', () => {
  const rows = [...document.images].map(img => { const r = img.getBoundingClientRect();
    return [img.alt, img.complete, img.naturalWidth, img.naturalHeight, r.left, r.top + window.scrollY, r.width, r.height].join(','); });
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = rows.join(';'); document.body.appendChild(pre);
});</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--hide-scrollbars", "--force-device-scale-factor=1",
             f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


def _images_on_page(report_dir: Path, tmp_path: Path) -> list[dict]:
    """Each <img> as Chromium laid it out: decoded size and where it sits on the page (a probe script, --dump-dom)."""
    probed = tmp_path / "probe.html"
    probed.write_text((report_dir / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()).stdout
    found = dom.split('<pre id="probe">', 1)[1].split("</pre>", 1)[0]
    images = []
    for item in found.split(";"):
        name, complete, natural_w, natural_h, x, y, w, h = item.split(",")
        images.append({"name": name, "complete": complete == "true", "natural": (int(natural_w), int(natural_h)),
                       "box": tuple(round(float(v)) for v in (x, y, w, h))})
    return images


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium; .ci/run does)")
def test_report_html_renders_its_grid_and_plots_in_chromium(report_dir, tmp_path):
    images = _images_on_page(report_dir, tmp_path)
    names = {i["name"] for i in images}
    assert {"scatter.png", "bars.png"} <= names and any(n.startswith("samples_") for n in names)
    for image in images:  # every figure decoded at the size of the PNG beside report.md
        with Image.open(report_dir / image["name"]) as png:
            assert image["complete"] and image["natural"] == png.size, image

    shot_path = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot_path}", (report_dir / "report.html").as_uri())
    shot = np.asarray(Image.open(shot_path).convert("RGB"), dtype=np.float32)
    assert shot.shape[:2] == (WINDOW[1], WINDOW[0])
    assert shot.std() > 20 and (shot.mean(axis=2) < 240).mean() > 0.02  # not a blank page
    for image in images:  # and on screen, each figure is its PNG, pixel for pixel
        x, y, w, h = image["box"]
        assert w > 100 and h > 100 and y + h <= WINDOW[1], image
        with Image.open(report_dir / image["name"]) as png:
            expected = np.asarray(png.convert("RGB").resize((w, h)), dtype=np.float32)
        assert np.abs(shot[y : y + h, x : x + w] - expected).mean() < 8, image["name"]

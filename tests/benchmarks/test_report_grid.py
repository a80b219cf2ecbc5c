"""The report grid shows the inputs where the compressed model errs most beside typical ones, captioned."""
from __future__ import annotations

import numpy as np
import pytest

from gencompress.benchmarks import report
from gencompress.benchmarks.report import grid_columns, grid_markdown, per_sample_psnr, sample_grid


def _outputs(bad: int | None = 13, n: int = 32):
    """n outputs in [-1, 1] with the same small error everywhere except input `bad`, 40x worse."""
    rng = np.random.default_rng(0)
    reference = rng.uniform(-1, 1, (n, 3, 8, 8)).astype(np.float32)
    noise = rng.normal(0, 0.01, reference.shape).astype(np.float32)
    if bad is not None:
        noise[bad] *= 40
    return reference, reference + noise


def test_the_worst_input_is_shown_first_and_captioned_so():
    reference, compressed = _outputs(bad=13)
    columns = grid_columns(reference, compressed, peak=2.0, n=8)
    assert len(columns) == 8 and len({c.index for c in columns}) == 8
    worst = columns[0]
    assert worst.index == 13 and worst.kind == "worst" and worst.rank == 1
    psnr = per_sample_psnr(reference, compressed, 2.0)
    assert worst.psnr_db == pytest.approx(psnr[13]) and psnr[13] < np.median(psnr) - 25  # 40x the error: 32 dB lower
    assert worst.caption() == f"#13 worst 1\n{psnr[13]:.1f} dB"
    # 4 worst by error, then 4 typical ones spread over the others' error ranks, from the worse end to the best
    assert [c.kind for c in columns] == ["worst"] * 4 + ["typical"] * 4
    assert [c.index for c in columns[:4]] == list(np.argsort(psnr)[:4])
    typical = columns[4:]
    assert typical[-1].index == int(np.argmax(psnr)) and typical[-1].rank == 0  # the best input: error p0
    assert all(a.rank > b.rank for a, b in zip(typical, typical[1:]))
    assert "#13 worst 1" in grid_markdown(columns)


def test_the_first_inputs_are_not_what_is_shown():
    """Today's grid showed inputs 0..7; an input past them that errs most must be in the grid."""
    reference, compressed = _outputs(bad=30)
    assert 30 in [c.index for c in grid_columns(reference, compressed, peak=2.0)]


def test_few_inputs_and_identical_outputs():
    reference, _ = _outputs(bad=None, n=3)
    columns = grid_columns(reference, reference.copy(), peak=2.0, n=8)
    assert sorted(c.index for c in columns) == [0, 1, 2]
    assert columns[0].caption() == "#0 worst 1\nidentical"


def test_build_report_grid_and_text(tmp_path):
    """write_build_report draws the picked columns and names them in report.md."""
    reference, compressed = _outputs(bad=21)
    summary = _summary()
    files = report.write_build_report(summary, reference, compressed, tmp_path)
    text = files["report/report.md"].read_text()
    assert "#21 worst 1" in text and "p100 is the worst" in text
    assert files["report/samples.png"].stat().st_size > 1000


def test_sweep_grids_are_titled_with_their_variant(tiny_bundle, monkeypatch):
    """Every sweep grid said "dcgan: ort"; each now names its variant."""
    from gencompress.benchmarks.bench import BenchConfig, run
    from gencompress.loading import load_spec

    titles = []
    real = report.sample_grid

    def spy(*args, **kwargs):
        titles.append(kwargs["title"])
        return real(*args, **kwargs)

    monkeypatch.setattr("gencompress.benchmarks.report_html.sample_grid", spy)
    run(load_spec(str(tiny_bundle.path)), BenchConfig(batches=(1,), iters=2, warmup=0, quality_samples=12, progress=False,
                                                      variant="p0.5-int8"))
    assert titles == ["p0.5-int8: ort"]


def _summary() -> dict:
    """A build summary with the keys build_report_markdown reads (values as pipeline.build writes them)."""
    return {
        "model": "dcgan", "precision": "int8", "target": "cpu", "quant_form": "ort-qlinear",
        "quality": {"psnr_db": 38.2, "max_abs_error": 0.1, "cosine": 0.999, "samples": 32, "seed": 0, "psnr_peak": 2.0,
                    "output_range": [-1.0, 1.0], "reference": "FP32 PyTorch", "runtime": "ONNX Runtime CPU, graph optimisation all",
                    "inputs": {"kind": "drawn", "count": 32, "distribution": "N(0, 1^2)", "seed": 0}},
        "latency": [], "conditions": {"threads": 2, "device_name": "cpu", "cpu_count": 2, "platform": "linux", "commit": "x",
                                      "versions": {}},
        "latency_warmup": 5, "latency_iters": 30, "params": 1000, "macs": 2000, "layer_precision": {},
        "engine": {"message": "no engine"},
    }


def test_sample_grid_still_draws_inputs_row(tmp_path):
    reference, compressed = _outputs(bad=2, n=10)
    inputs = np.zeros((10, 1, 4, 4), np.float32)
    path = sample_grid(reference, compressed, tmp_path / "g.png", inputs=inputs, input_range=(0.0, 1.0))
    assert path.stat().st_size > 1000

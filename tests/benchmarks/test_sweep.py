"""`gencompress sweep`: pruned and converted variants measured against the original."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from gencompress.benchmarks.results_io import loads
from gencompress.cli import cli


@pytest.mark.slow
def test_cli_sweep_prunes_converts_measures_and_marks_the_front(tiny_bundle, tmp_path):
    out = tmp_path / "sweep.json"
    args = ["sweep", str(tiny_bundle.path), "--prune", "0,0.5", "--precision", "fp32,fp16", "--batch", "1,8",
            "--iters", "2", "--warmup", "0", "--distill-steps", "2", "--baselines", "torch",
            "--device", "cpu-epyc-2c,jetson-orin-nano", "--fps", "30", "--json", str(out)]
    res = CliRunner().invoke(cli, args, standalone_mode=False, catch_exceptions=False)
    assert res.exit_code == 0 and not res.return_value, res.output
    data = loads(out.read_text())
    measured = [r for r in data["rows"] if r["source"] == "measured"]
    variants = {(r["variant"], r["precision"]) for r in measured if r["backend"] == "ort"}
    assert variants == {("prune0.00-fp32", "fp32"), ("prune0.00-fp16", "fp16"), ("prune0.50-fp32", "fp32"), ("prune0.50-fp16", "fp16")}
    by_variant = {r["variant"]: r for r in measured if r["batch"] == 8}
    # every variant is judged against the unpruned FP32 original, so pruning costs PSNR
    assert by_variant["prune0.00-fp32"]["psnr_db"] > 80
    assert by_variant["prune0.50-fp32"]["psnr_db"] < by_variant["prune0.00-fp16"]["psnr_db"]
    assert by_variant["original-torch"]["backend"] == "torch"
    front = [r for r in data["rows"] if r.get("pareto")]
    assert front and all(r["batch"] == 8 and r["source"] == "measured" for r in front)
    # every variant judged by build's default floor against the original; one under it never sits on the front
    for r in measured:
        assert r["meets_floor"] == (r["psnr_db"] >= 35.0 and r["ssim"] >= 0.97), r
    assert all(r["meets_floor"] for r in front)
    assert {u["variant"] for u in data["under_floor"]} == {r["variant"] for r in measured if not r["meets_floor"]}
    assert len(data["pareto_front"]) == len(front)
    estimated = [r for r in data["rows"] if r["source"] == "estimated"]
    assert {r["device"] for r in estimated} == {"jetson-orin-nano"} and len(estimated) == 8
    checks = data["estimate_vs_measured"]
    assert {c["batch"] for c in checks} == {1, 8} and all(c["ratio"] > 0 for c in checks)
    assert any(v["source"] == "estimated" for v in data["realtime"])
    res = CliRunner().invoke(cli, ["report", str(out), "--out", str(tmp_path / "rep")], standalone_mode=False, catch_exceptions=False)
    assert "Estimate against measurement" in (tmp_path / "rep" / "report.md").read_text()


def _row(variant: str, median_ms: float, psnr_db: float, ssim: float, batch: int = 8) -> dict:
    return {"variant": variant, "backend": "ort", "precision": "fp32", "batch": batch, "median_ms": median_ms, "psnr_db": psnr_db,
            "ssim": ssim, "source": "measured"}


def test_a_variant_under_the_floor_is_marked_and_kept_off_the_front(tmp_path):
    """The issue's case: a pruned variant at 18.8 dB / SSIM 0.57 is the fastest, so a front of
    latency against PSNR alone holds it; under build's floor (35 dB, SSIM 0.97) it is marked,
    in the JSON rows, the result's list, the CLI line and the report, and kept off the front."""
    from gencompress.benchmarks import plots, report_html
    from gencompress.benchmarks.pareto import pareto_rows
    from gencompress.benchmarks.sweep import mark_floor, mark_pareto, summary_line
    from gencompress.floor import quality_floor

    rows = [_row("prune0.00-fp32", 2.0, 95.0, 1.0), _row("prune0.00-int8", 1.5, 41.0, 0.99),
            _row("prune0.50-fp32", 0.9, 18.8, 0.57), _row("prune0.50-int8", 0.8, 36.0, 0.95)]
    assert [r["variant"] for r in pareto_rows(rows, plots.quality_value)][0] == "prune0.50-int8"  # unmarked: on the front

    under = mark_floor(rows, quality_floor())
    assert under == [{"variant": "prune0.50-fp32", "note": "under the floor: 18.8 dB < 35 dB, SSIM 0.57 < 0.97"},
                     {"variant": "prune0.50-int8", "note": "under the floor: SSIM 0.95 < 0.97"}]
    assert [r["meets_floor"] for r in rows] == [True, True, False, False]
    assert rows[2]["floor_note"] == "under the floor: 18.8 dB < 35 dB, SSIM 0.57 < 0.97"
    assert mark_pareto(rows, 8) == ["prune0.00-fp32 ort", "prune0.00-int8 ort"]
    assert [r["pareto"] for r in rows] == [True, True, False, False]
    _, front = plots.latency_quality_scatter(rows, 8)  # the report's scatter draws the same front
    assert [r["variant"] for r in front] == ["prune0.00-int8", "prune0.00-fp32"]

    result = {"rows": rows, "pareto_front": ["prune0.00-int8 ort", "prune0.00-fp32 ort"], "under_floor": under}
    assert summary_line(result).endswith("off the front, prune0.50-fp32 (under the floor: 18.8 dB < 35 dB, SSIM 0.57 < 0.97); "
                                         "prune0.50-int8 (under the floor: SSIM 0.95 < 0.97)")
    floor = quality_floor()
    section = report_html.summary_section([{**result, "floor": {"describe": floor.describe()}}], rows)
    assert "under the quality floor that build enforces (PSNR >= 35 dB and SSIM >= 0.97 vs FP32" in section.text
    assert "prune0.50-fp32 (under the floor: 18.8 dB < 35 dB, SSIM 0.57 < 0.97)" in section.text

    lifted = [_row("prune0.50-fp32", 0.9, 18.8, 0.57)]
    assert mark_floor(lifted, None) == [] and "meets_floor" not in lifted[0]  # --no-quality-floor: nothing marked


@pytest.mark.slow
def test_int8_cpu_variants_come_from_the_build_precision_stage(tiny_bundle, tmp_path):
    """sweep's int8-cpu variant is what `build --target cpu` makes (export.apply_precision): the
    calibrators compared and the floor searched under, recorded in its quantize step; the old
    path (one calibrator, no floor) recorded neither."""
    from gencompress.benchmarks.sweep import SweepConfig, with_precision
    from gencompress.loading import load_spec

    variant = with_precision(load_spec(str(tiny_bundle.path)), "int8-cpu", tmp_path / "v", SweepConfig(progress=False))
    step = variant.last_step("quantize")
    assert variant.form.precision == "int8" and variant.form.quantisation == "ort-qlinear"
    assert set(step["calibrators"]["scores"]) == {"max", "entropy", "percentile"}
    assert step["floor"] == {"min_psnr_db": 35.0, "min_ssim": 0.97, "default": True}
    assert variant.last_step("runtime") is None  # the sweep times on its own --backend: no runtime choice made


@pytest.mark.slow
def test_a_variant_no_int8_mix_can_build_is_recorded_and_the_sweep_goes_on(tiny_bundle):
    """Under a floor no INT8 mix meets (300 dB), `build` refuses; the sweep records that variant
    as not built, with the search's own one-line reason, and measures the others."""
    from gencompress.benchmarks.sweep import SweepConfig, sweep
    from gencompress.loading import load_spec

    cfg = SweepConfig(prune=(0.0,), precisions=("fp32", "int8"), batches=(1,), iters=2, warmup=0, seconds=1.0, quality_samples=8,
                      baselines=(), estimate_profiles=(), progress=False, min_psnr=300.0)
    result = sweep(load_spec(str(tiny_bundle.path)), cfg)
    assert {r["variant"] for r in result["rows"]} == {"prune0.00-fp32"}
    notes = {u["variant"]: u["note"] for u in result["under_floor"]}
    assert notes["prune0.00-int8"].startswith("not built: no INT8 mix meets PSNR >= 300 dB vs FP32: the best reached")
    assert notes["prune0.00-fp32"].startswith("under the floor: ") and "< 300 dB" in notes["prune0.00-fp32"]
    assert result["pareto_front"] == [] and result["floor"]["min_psnr_db"] == 300.0

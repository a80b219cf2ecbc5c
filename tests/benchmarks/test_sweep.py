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
            "--estimate", "cpu-epyc-2c,jetson-orin-nano", "--fps", "30", "--json", str(out)]
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
    assert len(data["pareto_front"]) == len(front)
    estimated = [r for r in data["rows"] if r["source"] == "estimated"]
    assert {r["device"] for r in estimated} == {"jetson-orin-nano"} and len(estimated) == 8
    checks = data["estimate_vs_measured"]
    assert {c["batch"] for c in checks} == {1, 8} and all(c["ratio"] > 0 for c in checks)
    assert any(v["source"] == "estimated" for v in data["realtime"])
    res = CliRunner().invoke(cli, ["report", str(out), "--out", str(tmp_path / "rep")], standalone_mode=False, catch_exceptions=False)
    assert "Estimate against measurement" in (tmp_path / "rep" / "report.md").read_text()

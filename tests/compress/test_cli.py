"""`gencompress prune` / `quantize` through click: thin commands, one-line errors, exit 2."""
from __future__ import annotations

import json

from click.testing import CliRunner

from gencompress.bundle import Bundle, sha256
from gencompress.cli import cli


def _run(args):
    return CliRunner().invoke(cli, args)


def test_prune_writes_a_smaller_bundle(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    before = sha256(src.path / "weights.safetensors")
    result = _run(["prune", str(src.path), "--ratio", "0.5", "--distill-steps", "5", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["macs_reduction"] >= 3.0
    steps = [s["step"] for s in Bundle.load(tmp_path / "out").manifest["recipe"]]
    assert steps[-2:] == ["prune", "distill"]
    assert sha256(src.path / "weights.safetensors") == before


def test_bad_ratio_is_one_line_exit_2(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    result = _run(["prune", str(src.path), "--ratio", "1.2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["gencompress: error: --ratio must be strictly between 0 and 1 (got 1.2)"]
    assert not (tmp_path / "out").exists()


def test_output_over_input_is_refused(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    result = _run(["prune", str(src.path), "--ratio", "0.5", "--out", str(src.path)])
    assert result.exit_code == 2 and "--out must differ" in result.stderr


def test_quantize_with_budget_reports_layers(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    result = _run(["quantize", str(src.path), "--int8", "--min-psnr", "20", "--calib-samples", "32", "--out", str(tmp_path / "q"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["precision"]) == {"0", "3", "6", "9"}
    assert data["sensitivity"]["psnr_db"] >= 20


def test_impossible_budget_exit_2_and_no_output(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    result = _run(["quantize", str(src.path), "--min-psnr", "900", "--calib-samples", "32", "--out", str(tmp_path / "q")])
    assert result.exit_code == 2 and "best with at least one INT8 layer reached" in result.stderr
    assert not (tmp_path / "q").exists()

"""`bench` prints its table and flags rows whose calls disagree (a loaded machine), in the table, the JSON and the report."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gencompress.benchmarks.bench import results_table
from gencompress.benchmarks.latency import UNSTABLE_FACTOR, instability, summarize
from gencompress.benchmarks.results_io import loads
from gencompress.cli import cli


def _row(variant: str, samples: list[float]) -> dict:
    return {"variant": variant, "backend": "ort", "precision": "int8", "batch": 1, "psnr_db": 40.0, "ssim": 0.99,
            **summarize(samples, 1, 0).as_dict()}


def test_a_seventyfold_spread_is_flagged_and_a_steady_row_is_not():
    loaded = summarize([1.0, 70.0, 70.0, 71.0, 69.0], 1, 0)  # the case: min and median 70-fold apart
    assert loaded.unstable == "median 70.0x min"
    assert summarize([10.0, 10.2, 10.1, 10.3, 10.1], 1, 0).unstable is None
    assert instability(10.0, 10.0, 16.0) == "p99 1.6x median"  # a slow tail
    assert instability(10.0, 10.0 * UNSTABLE_FACTOR, 10.0 * UNSTABLE_FACTOR) is None  # at the factor: not flagged


def test_table_marks_the_unstable_row_and_prints_the_load():
    result = {"rows": [_row("steady", [2.0, 2.0, 2.1]), _row("loaded", [1.0, 70.0, 70.0])],
              "conditions": {"loadavg_1_5_15": [3.29150390625, 2.1, 1.5]}}
    lines = results_table(result).splitlines()
    assert lines[0].split()[:3] == ["variant", "backend", "precision"]
    steady, loaded = lines[1], lines[2]
    assert "unstable" not in steady and "unstable (load?): median 70.0x min" in loaded
    assert "1 of 2 rows unstable" in lines[-1] and "load 3.29 / 2.10 / 1.50 (1/5/15 min)" in lines[-1]
    calm = results_table({"rows": [_row("steady", [2.0, 2.0, 2.1])], "conditions": {"loadavg_1_5_15": [0.5, 0.4, 0.3]}})
    assert calm.splitlines()[-1] == "taken at load 0.50 / 0.40 / 0.30 (1/5/15 min)"


def test_reports_mark_the_unstable_row(tmp_path):
    from gencompress.benchmarks.report_html import latency_rows

    rows = [{**_row("loaded", [1.0, 70.0, 70.0]), "device": "cpu", "host_peak_rss_mb": 1.0, "source": "measured"}]
    assert latency_rows(rows)[0][-1] == "unstable (load?): median 70.0x min"


@pytest.mark.parametrize("json_file", [True, False])
def test_cli_prints_the_table_beside_the_json(tiny_bundle, tmp_path, json_file):
    """--json FILE: the table on stdout; JSON on stdout: the table on stderr, stdout stays parseable."""
    out = tmp_path / "b.json"
    args = ["bench", str(tiny_bundle.path), "--backend", "ort", "--batch", "1", "--iters", "3", "--warmup", "0",
            "--eval-samples", "4", *(["--json", str(out)] if json_file else [])]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    table, data = (res.stdout, loads(out.read_text())) if json_file else (res.stderr, json.loads(res.stdout))
    assert "median ms" in table and "(1/5/15 min)" in table
    assert len(data["rows"]) == 1 and "unstable" in data["rows"][0]  # None or its reason, in the JSON too

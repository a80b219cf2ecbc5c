"""`benchmarks.run` and `gencompress bench`: same keys for every backend, quality, verdicts."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from gencompress.benchmarks.bench import ROW_KEYS, BenchConfig, run
from gencompress.benchmarks.results_io import dumps, loads
from gencompress.cli import cli
from gencompress.errors import GencompressError, MissingDependencyError
from gencompress.loading import load_spec

FAST = dict(batches=(1, 2), iters=3, warmup=1, quality_samples=8, progress=False)


def test_run_gives_the_same_keys_for_every_backend(tiny_bundle):
    result = run(load_spec(str(tiny_bundle.path)), BenchConfig(backends=("torch", "ort"), fps=30, **FAST))
    rows = result["rows"]
    assert [(r["backend"], r["batch"]) for r in rows] == [("torch", 1), ("torch", 2), ("ort", 1), ("ort", 2)]
    assert all(tuple(r) == ROW_KEYS for r in rows)
    torch_row, ort_row = rows[0], rows[2]
    assert torch_row["psnr_db"] == float("inf") and torch_row["ssim"] == pytest.approx(1.0)  # the reference itself
    assert ort_row["psnr_db"] > 60 and ort_row["max_abs_error"] < 1e-3  # FP32 ONNX Runtime vs FP32 PyTorch
    assert all(r["min_ms"] <= r["median_ms"] <= r["p99_ms"] and r["host_peak_rss_mb"] > 0 for r in rows)
    assert all(r["device_peak_mem_mb"] is None and r["source"] == "measured" for r in rows)
    assert len(result["realtime"]) == 4 and set(result["sample_grids"]) == {"torch", "ort"}
    cond = result["conditions"]
    assert cond["threads"] == 2 and len(cond["loadavg_1_5_15"]) == 3 and cond["iters"] == 3


def test_channels_last_and_compile_runners_agree_with_eager(tiny_bundle):
    bundle = load_spec(str(tiny_bundle.path))
    # torch.compile's "eager" backend traces with Dynamo but skips Inductor's C++ build (seconds, not a minute)
    cfg = BenchConfig(backends=("torch-compile",), channels_last=True, compile_backend="eager", **FAST)
    row = run(bundle, cfg)["rows"][0]
    assert row["memory_format"] == "channels_last" and row["psnr_db"] > 80


def test_gpu_only_backends_explain_themselves_on_a_cpu(tiny_bundle):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    bundle = load_spec(str(tiny_bundle.path))
    with pytest.raises(GencompressError, match="CUDA"):
        run(bundle, BenchConfig(backends=("cuda-graph",), device="cuda", **FAST))
    with pytest.raises(MissingDependencyError):
        run(bundle, BenchConfig(backends=("trt",), **FAST))


def test_bad_config_is_a_user_error():
    with pytest.raises(GencompressError, match="unknown backend"):
        BenchConfig(backends=("tpu",)).validate()
    with pytest.raises(GencompressError):
        BenchConfig(batches=(0,)).validate()


def test_result_json_is_strict_and_round_trips_infinity():
    text = dumps({"rows": [{"psnr_db": float("inf"), "variant": "inf"}]})
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    back = loads(text)["rows"][0]
    assert back["psnr_db"] == float("inf") and back["variant"] == "inf"


def test_cli_bench_writes_json(tiny_bundle, tmp_path):
    out = tmp_path / "b.json"
    args = ["bench", str(tiny_bundle.path), "--backend", "ort", "--batch", "1", "--iters", "2", "--warmup", "0",
            "--eval-samples", "4", "--budget-ms", "1000", "--json", str(out)]
    res = CliRunner().invoke(cli, args, standalone_mode=False, catch_exceptions=False)
    assert res.exit_code == 0 and not res.return_value, res.output
    data = loads(out.read_text())
    assert data["kind"] == "gencompress-bench" and data["realtime"][0]["meets"] is True


def test_cli_estimate_cpu_profile_compares_with_measurement(tiny_bundle):
    args = ["estimate", str(tiny_bundle.path), "--device", "cpu-epyc-2c", "--batch", "8", "--json", "-"]
    res = CliRunner().invoke(cli, args, standalone_mode=False, catch_exceptions=False)
    est = json.loads(res.stdout)["estimates"][0]  # stderr may say the CPU is being measured (first use)
    assert est["batch"] == 8 and est["estimated_ms"] > 0 and est["ratio_measured_over_estimate"] > 0
    assert [l["op"] for l in est["layers"]].count("ConvTranspose") == 4

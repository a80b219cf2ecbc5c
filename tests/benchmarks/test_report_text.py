"""The build report's words are a person's: runtime, load, quality bar, search inputs, size before and after."""
from __future__ import annotations

import copy

from gencompress.benchmarks.report import build_report_markdown, format_load

SUMMARY = {
    "model": "upsample_conv", "precision": "int8", "target": "gpu", "quant_form": "modelopt-qdq",
    "quality": {"psnr_db": 38.2, "max_abs_error": 0.1, "cosine": 0.999, "samples": 32, "seed": 0, "psnr_peak": 2.0,
                "output_range": [-1.0, 1.0], "reference": "FP32 PyTorch", "runtime": "ONNX Runtime CPU, graph optimisation disable",
                "floor": "PSNR >= 35 dB and SSIM >= 0.97 vs FP32 (the default floor)", "ssim": 0.99, "meets_floor": True,
                "inputs": {"kind": "drawn", "count": 32, "distribution": "N(0, 1^2)", "seed": 0}},
    "latency": [], "conditions": {"threads": 2, "device_name": "cpu", "cpu_count": 2, "platform": "linux", "commit": "x",
                                  "versions": {}, "loadavg_1_5_15": [3.29150390625, 2.1, 1.5]},
    "latency_warmup": 5, "latency_iters": 30, "params": 1_000_000, "macs": 2_000_000,
    "file_bytes": {"fp32_onnx": 4_100_000, "compressed_onnx": 1_100_000},
    "layer_precision": {"net.0": "int8", "net.3": "fp32"},
    "sensitivity": {"budget_db": 35.0, "psnr_db": 36.1, "keep_float": ["net.3"], "layer_psnr_db": {"net.0": 44.0, "net.3": 30.0}},
    "engine": {"message": "no engine"},
}

CHOICE = {  # a --target cpu runtime choice as export/cpu_runtime.choose records it, under the default floor
    "runtime": "onnxruntime", "candidate": "ORT", "runner_up": "OpenVINO", "vs_runner_up": 1.2, "why_float": None, "batch": 8,
    "quality_bar_db": 35.0, "quality_bar": "--min-psnr 35 dB", "method": "interleaved rounds", "notes": [],
    "loadavg_1_5_15": [3.29150390625, 2.1, 1.5],
    "candidates": [{"name": "ORT", "graph": {"runtime": "onnxruntime"}, "psnr_db": 38.0, "median_ms": 2.0, "speedup_vs_fp32_ort": 1.5,
                    "eligible": True}],
}


def _report(**changes) -> str:
    summary = copy.deepcopy(SUMMARY)
    for key, value in changes.items():
        summary[key] = value
    return build_report_markdown(summary)


def test_runtime_is_said_in_words():
    text = _report()
    assert "graph optimisation disable" not in text
    assert "compressed graph run on ONNX Runtime CPU, graph optimisations off (TensorRT's arithmetic" in text


def test_load_average_is_formatted_not_a_raw_list():
    assert format_load([3.29150390625, 2.1, 1.5]) == "load 3.29 / 2.10 / 1.50 (1/5/15 min)"
    text = _report(target="cpu", cpu_runtime=CHOICE)
    assert "3.29150390625" not in text and "[3.29" not in text
    assert "load 3.29 / 2.10 / 1.50 (1/5/15 min)" in text


def test_quality_bar_says_default_floor_when_none_was_passed():
    text = _report(target="cpu", cpu_runtime=CHOICE)
    assert "--min-psnr 35" not in text
    assert "Quality bar: the default floor's PSNR, 35 dB (no --min-psnr given)" in text
    given = copy.deepcopy(SUMMARY["quality"])
    given["floor"] = "PSNR >= 35 dB vs FP32"  # the user's --min-psnr 35
    assert "Quality bar: --min-psnr 35 dB." in _report(target="cpu", cpu_runtime=CHOICE, quality=given)


def test_search_inputs_are_not_called_latents():
    text = _report()
    assert "search latents" not in text and "36.10 dB on the held-out search inputs" in text


def test_size_before_and_after():
    text = _report()
    assert "| parameters | 1000000 | 1000000 |" in text
    assert "| bytes | 3.81 MiB (FP32 weights) | 1.05 MiB (int8 graph, model.onnx) |" in text
    assert "3.64x smaller on disk" in text
    pruned = _report(prune={"params_before": 2_000_000, "params_after": 1_000_000, "macs_before": 4_000_000, "macs_after": 2_000_000,
                            "macs_reduction": 2.0})
    assert "| parameters | 2000000 | 1000000 |" in pruned and "| MACs per image | 4000000 | 2000000 |" in pruned

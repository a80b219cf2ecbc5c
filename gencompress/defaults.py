"""One source per default: the names and numbers that the CLI options, the stage configs,
the checks and the docs all use. Imports nothing, so every layer may import it."""
from __future__ import annotations

# Precisions a graph can have, in the order the CLI lists them (its default first).
PRECISIONS = ("int8", "fp16", "fp32")

# Where a bundle is meant to run. export/jetson.py holds each Jetson's JetPack and TensorRT
# (tests/test_defaults.py checks that it describes exactly these).
JETSON_TARGETS = ("jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "jetson-thor")
TENSORRT_TARGETS = ("gpu", *JETSON_TARGETS)
TARGETS = ("gpu", "cpu", *JETSON_TARGETS)
DEFAULT_TARGET = "gpu"

# INT8 calibrators (compress/quantize.py documents each); the ONNX-level CPU quantiser takes a subset.
CALIBRATORS = ("max", "entropy", "percentile", "mse")
CALIBRATOR_CHOICES = ("auto", *CALIBRATORS)  # auto: each is tried, the best on held-out inputs kept
DEFAULT_CALIBRATOR = "auto"

# Distillation after pruning: enough for the digits DCGAN at 50% to match its original's FID
# (benchmarks/results/compress_quality.json).
DISTILL_STEPS = 1500

# Sample counts. Small models take these; a big model takes fewer, so that each set costs
# about its compute budget in multiply-accumulates (GMAC for the whole set, one forward pass
# each), but never fewer than the minimum: one 256x256 image already gives every channel 65,536
# activations to calibrate on. A 17.7-GMAC TAESD decoder calibrates on 56 and is judged on 56.
CALIB_SAMPLES, EVAL_SAMPLES = 256, 64
CALIB_BUDGET_GMAC, CALIB_MIN_SAMPLES = 1000.0, 32
EVAL_BUDGET_GMAC, EVAL_MIN_SAMPLES = 1000.0, 16
# The held-out inputs that choose the calibrator and the float layers: one pass per candidate
# and per layer, so a smaller budget.
JUDGE_BUDGET_GMAC, JUDGE_MIN_SAMPLES = 150.0, 8
# ONNX Runtime's histogram calibrators (entropy, percentile; --target cpu) take a numpy
# histogram of every activation of every input: about 3x MinMax's cost per input (TAESD at
# 16 inputs: 25 s against 9 s). They calibrate on the first inputs of the calibration set
# that fit this budget; a histogram of 16 256x256 images is already 1M values per channel.
HISTOGRAM_BUDGET_GMAC, HISTOGRAM_MIN_SAMPLES = 300.0, 16


def scaled_samples(wanted: int, gmac_per_sample: float | None, budget_gmac: float, minimum: int) -> int:
    """`wanted`, or fewer so the set costs about `budget_gmac` (never under `minimum`, never over `wanted`)."""
    if not gmac_per_sample or gmac_per_sample <= 0:
        return wanted
    return max(min(wanted, minimum), min(wanted, int(budget_gmac / gmac_per_sample)))

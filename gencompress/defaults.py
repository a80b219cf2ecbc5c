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

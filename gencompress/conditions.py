"""The conditions every reported number carries: machine, threads, versions, commit."""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "onnx", "onnxruntime", "nvidia-modelopt", "torch-pruning", "onnxslim", "tensorrt", "openvino", "nncf")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    from gencompress import __version__

    found["gencompress"] = __version__
    return found


def git_commit() -> str:
    """The commit of the gencompress checkout, with '+dirty' for local changes
    (GENCOMPRESS_COMMIT names it where the code runs from a copy without git)."""
    if os.environ.get("GENCOMPRESS_COMMIT"):
        return os.environ["GENCOMPRESS_COMMIT"]
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        # results files are what a run writes, not the code it measured: they do not make the checkout dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results"],
                               cwd=root, capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The instruction sets that decide which INT8/bf16 kernels a CPU runtime can use: machines differ
# from one day to the next (AVX2 only, or AVX-512 VNNI and BF16), so every number records them.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "asimd", "asimddp", "bf16")


def cpu_flags() -> list[str]:
    """The flags of CPU_FLAGS this CPU reports (/proc/cpuinfo; empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            present = set(line.split(":", 1)[1].split())
            return [f for f in CPU_FLAGS if f in present]
    return []


def load_average() -> list[float] | None:
    """1/5/15-minute load average, rounded (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe(threads: int | None = None, device: str = "cpu") -> dict:
    import torch

    info = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "loadavg_1_5_15": load_average(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "platform": platform.platform(),
        "versions": versions(),
        "commit": git_commit(),
    }
    return info

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
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=5)
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


def describe(threads: int | None = None, device: str = "cpu") -> dict:
    import torch

    info = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "platform": platform.platform(),
        "versions": versions(),
        "commit": git_commit(),
    }
    return info

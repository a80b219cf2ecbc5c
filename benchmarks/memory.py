"""Host and device memory, read without extra dependencies (procfs and resource)."""
from __future__ import annotations

import resource
import sys
from pathlib import Path


def host_rss_mb() -> float | None:
    """Resident set size of this process now, in MiB (Linux procfs; None elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def host_peak_rss_mb() -> float:
    """Peak RSS of this process since it started (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def reset_device_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def device_peak_mb(device: str) -> float | None:
    """Peak memory PyTorch allocated on the GPU since the last reset (None on the CPU).

    TensorRT and ONNX Runtime allocate outside PyTorch's allocator, so their device
    memory is not seen here; their rows say None rather than a wrong number.
    """
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated() / (1024.0 * 1024.0)

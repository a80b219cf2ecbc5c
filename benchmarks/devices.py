"""Device profiles: peak throughput and memory bandwidth, with where each number comes from.

Peaks are *dense* (no 2:4 sparsity) tensor-core figures unless a note says otherwise;
vendors often quote sparse figures (2x). Jetson figures are the GPU only (no DLA), at
the module's maximum-power nvpmodel mode. Where a datasheet gives only a headline
number, the per-precision figure is derived from it and the note says how.

`op_overhead_us` is a fixed cost per layer (kernel launch, framework dispatch) that the
roofline adds: small generators at batch 1 are dominated by it, not by FLOPs.
`calibrated` marks profiles whose effective throughput was *measured* rather than read
off a datasheet. The one CPU profile, `cpu`, is this machine's, measured here at run time and
cached per CPU model and flags (benchmarks/cpu_profile.py): no CPU figure is written down here.
"""
from __future__ import annotations

from gencompress.errors import GencompressError

from .device_profile import DeviceProfile


PROFILES: dict[str, DeviceProfile] = {}


def register(profile: DeviceProfile) -> DeviceProfile:
    if profile.key in PROFILES:
        raise ValueError(f"device profile {profile.key!r} is already registered")
    if min(profile.fp32_tflops, profile.fp16_tflops, profile.int8_tops, profile.mem_bw_gbs) <= 0:
        raise ValueError(f"device profile {profile.key!r} needs positive peaks")
    PROFILES[profile.key] = profile
    return profile


CPU_KEY = "cpu"  # this machine's CPU: measured on first use (benchmarks/cpu_profile.py)
# The CPU profile's earlier name (a profile of one machine, written down); it now means this machine's.
ALIASES = {"cpu-epyc-2c": CPU_KEY}


def get(key: str, threads: int = 2) -> DeviceProfile:
    """A registered profile, or this machine's CPU (`cpu`, at `threads`), measured here if not cached."""
    key = ALIASES.get(key, key)
    if key == CPU_KEY:
        from .cpu_profile import this_cpu

        return this_cpu(threads)
    try:
        return PROFILES[key]
    except KeyError:
        raise GencompressError(f"unknown device profile {key!r}; known: {', '.join(names())}") from None


def names() -> list[str]:
    return sorted([*PROFILES, CPU_KEY])


# --- data-centre and desktop GPUs --------------------------------------------------------

register(DeviceProfile("h100", "NVIDIA H100 SXM5 80GB", "gpu", 67.0, 989.4, 1978.9, 3350.0,
                       "NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100/); dense = half the sparse figures",
                       op_overhead_us=3.0))
register(DeviceProfile("h100-pcie", "NVIDIA H100 PCIe 80GB", "gpu", 51.0, 756.0, 1513.0, 2000.0,
                       "NVIDIA H100 Tensor Core GPU datasheet (PCIe column); dense = half the sparse figures", op_overhead_us=3.0))
register(DeviceProfile("h200", "NVIDIA H200 SXM 141GB", "gpu", 67.0, 989.4, 1978.9, 4800.0,
                       "NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200/); dense = half the sparse figures",
                       op_overhead_us=3.0))
register(DeviceProfile("a100", "NVIDIA A100 SXM4 80GB", "gpu", 19.5, 312.0, 624.0, 2039.0,
                       "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100/), 80GB SXM column",
                       op_overhead_us=4.0))
register(DeviceProfile("rtx-4090", "NVIDIA GeForce RTX 4090", "gpu", 82.6, 165.2, 660.6, 1008.0,
                       "NVIDIA Ada Lovelace GPU Architecture whitepaper v2.1, Appendix A (FP16 with FP32 accumulate, dense)",
                       op_overhead_us=4.0))

# --- Jetson (GPU only, MAXN / max-power mode) ---------------------------------------------
# Orin's GPU SMs have A100-class tensor cores: 2048 FP16 / 4096 INT8 dense ops per SM per clock.
# Each derived figure = SMs x clock x ops/clock, and it reproduces the datasheet's sparse GPU TOPS.

register(DeviceProfile("jetson-orin-nano", "NVIDIA Jetson Orin Nano 8GB", "jetson", 1.28, 10.2, 20.5, 68.0,
                       "Jetson Orin Nano Series Data Sheet (DS-11105): 40 sparse INT8 TOPS, 1024 CUDA cores (8 SMs) at 625 MHz, "
                       "LPDDR5 68 GB/s; JetPack 6.2 'Super' mode raises clocks (67 TOPS, 102 GB/s)",
                       op_overhead_us=15.0, note="derived: 8 SMs x 0.625 GHz x 4096 INT8 ops/clk"))
register(DeviceProfile("jetson-orin-nx", "NVIDIA Jetson Orin NX 16GB", "jetson", 1.88, 15.0, 30.1, 102.4,
                       "Jetson Orin NX Series Data Sheet (DS-10712): 100 sparse INT8 TOPS with DLAs, 1024 CUDA cores at 918 MHz, "
                       "LPDDR5 102.4 GB/s", op_overhead_us=12.0, note="derived: 8 SMs x 0.918 GHz x 4096 INT8 ops/clk (GPU only)"))
register(DeviceProfile("jetson-agx-orin", "NVIDIA Jetson AGX Orin 64GB", "jetson", 5.32, 42.6, 85.2, 204.8,
                       "Jetson AGX Orin Series Data Sheet (DS-10662): 275 sparse INT8 TOPS with DLAs (170 GPU), 2048 CUDA cores "
                       "at 1.3 GHz, LPDDR5 204.8 GB/s", op_overhead_us=8.0, note="derived: 16 SMs x 1.3 GHz x 4096 INT8 ops/clk"))
register(DeviceProfile("jetson-thor", "NVIDIA Jetson AGX Thor (T5000)", "jetson", 8.0, 258.0, 517.0, 273.0,
                       "Jetson Thor Series Data Sheet / product page: 2070 sparse FP4 TFLOPS, 2560-core Blackwell GPU, "
                       "LPDDR5X 273 GB/s", op_overhead_us=6.0,
                       note="derived: FP16 dense = FP4 sparse / 8, INT8 dense = FP16 x 2; FP32 = 2560 cores x 2 x ~1.57 GHz; verify on device"))

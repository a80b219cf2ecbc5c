"""The device profile record: peaks, bandwidth, per-layer overhead and where each number comes from.

It lies below both the registry of written-down profiles (devices.py) and this machine's measured
CPU profile (cpu_profile.py), so the registry can hand out the measured profile without an import circle.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from gencompress.errors import GencompressError


@dataclass(frozen=True)
class DeviceProfile:
    key: str
    name: str
    kind: str  # "gpu", "jetson" or "cpu"
    fp32_tflops: float
    fp16_tflops: float
    int8_tops: float
    mem_bw_gbs: float
    source: str
    op_overhead_us: float = 5.0
    calibrated: bool = False
    note: str = ""
    cpu_flags: tuple[str, ...] = ()  # a CPU profile: the instruction sets it was measured with (avx2, avx512_vnni, amx_int8...)

    def peak_tflops(self, precision: str) -> float:
        table = {"fp32": self.fp32_tflops, "fp16": self.fp16_tflops, "bf16": self.fp16_tflops, "int8": self.int8_tops}
        if precision not in table:
            raise GencompressError(f"no peak throughput for precision {precision!r}")
        return table[precision]

    def as_dict(self) -> dict:
        return asdict(self)

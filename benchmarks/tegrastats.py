"""Power on a Jetson: parse tegrastats lines, sample them while timing, energy per image.

tegrastats prints one line per interval. The power rails vary by module and JetPack:
  Orin Nano / Orin NX / Xavier NX:  VDD_IN (board input), VDD_CPU_GPU_CV, VDD_SOC
  AGX Orin:                         VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0 (no board-input rail)
  Thor:                             VDD_GPU, VDD_CPU_SOC_MSS, VIN_SYS_5V0, VIN (board input)
  JetPack 4 (Xavier, Nano):         `VDD_IN 4103/4103` (mW, no unit), or `POM_5V_IN 2650/2650`
Each rail reads `NAME now/average`. Total power is the board-input rail where there is
one (VDD_IN, VIN, POM_5V_IN); otherwise the sum of all rails, and the result says which.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field

TOTAL_RAILS = ("VDD_IN", "VIN", "POM_5V_IN")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?\b")
_RAM = re.compile(r"\bRAM\s+(\d+)/(\d+)MB")
_GR3D = re.compile(r"\bGR3D_FREQ\s+(\d+)%(?:@\[?([\d,]+)\]?)?")
_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_NOT_RAILS = ("RAM", "SWAP", "CPU", "EMC_FREQ", "GR3D_FREQ")


@dataclass
class TegraSample:
    rails_mw: dict[str, float] = field(default_factory=dict)  # instantaneous reading per rail
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    gpu_util_pct: int | None = None
    gpu_freq_mhz: list[int] = field(default_factory=list)
    temps_c: dict[str, float] = field(default_factory=dict)

    @property
    def total_rail(self) -> str:
        return next((r for r in TOTAL_RAILS if r in self.rails_mw), "sum of rails")

    @property
    def total_mw(self) -> float | None:
        if not self.rails_mw:
            return None
        rail = self.total_rail
        return self.rails_mw[rail] if rail in self.rails_mw else float(sum(self.rails_mw.values()))


def parse_line(line: str) -> TegraSample:
    """One tegrastats line -> its rails (instantaneous mW), RAM, GPU load and temperatures."""
    sample = TegraSample()
    if m := _RAM.search(line):
        sample.ram_used_mb, sample.ram_total_mb = int(m.group(1)), int(m.group(2))
    if m := _GR3D.search(line):
        sample.gpu_util_pct = int(m.group(1))
        sample.gpu_freq_mhz = [int(f) for f in (m.group(2) or "").split(",") if f]
    for name, now, _avg in _RAIL.findall(line):
        if name not in _NOT_RAILS and name != "NC":  # NC: an unconnected INA3221 channel
            sample.rails_mw[name] = float(now)
    for name, value in _TEMP.findall(line):
        if float(value) > -200:  # -256C marks a sensor that is off
            sample.temps_c[name] = float(value)
    return sample


def mean_power_w(samples: list[TegraSample]) -> float | None:
    values = [s.total_mw for s in samples if s.total_mw is not None]
    return sum(values) / len(values) / 1000.0 if values else None


def energy_per_image_j(samples: list[TegraSample], seconds: float, images: int) -> float | None:
    """Mean total power over the timed window x its duration / images produced."""
    power = mean_power_w(samples)
    if power is None or images <= 0:
        return None
    return power * seconds / images


def parse_nvpmodel(text: str) -> dict:
    """`nvpmodel -q` output ('NV Power Mode: MAXN\\n0') -> {'name': 'MAXN', 'id': 0}."""
    name = re.search(r"NV Power Mode:\s*(\S+)", text)
    ident = re.search(r"^\s*(\d+)\s*$", text, re.MULTILINE)
    return {"name": name.group(1) if name else None, "id": int(ident.group(1)) if ident else None}


def nvpmodel_mode() -> dict | None:
    if shutil.which("nvpmodel") is None:
        return None
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvpmodel(out.stdout)


def available() -> bool:
    return shutil.which("tegrastats") is not None


class Sampler:
    """Run `tegrastats --interval MS` in the background while a block of work runs."""

    def __init__(self, interval_ms: int = 100):
        self.interval_ms = interval_ms
        self.samples: list[TegraSample] = []
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self.seconds = 0.0

    def __enter__(self) -> "Sampler":
        self._proc = subprocess.Popen(["tegrastats", "--interval", str(self.interval_ms)], stdout=subprocess.PIPE, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self._start = time.perf_counter()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            self.samples.append(parse_line(line))

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start
        self._proc.terminate()
        self._proc.wait(timeout=5)
        self._thread.join(timeout=5)

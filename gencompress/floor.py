"""The quality floor every INT8 build meets against its FP32 model, unless the user lifts it.

Default: PSNR >= 35 dB and SSIM >= 0.97 against the FP32 model's outputs, measured on
held-out inputs (never the calibration draw). Why these numbers:
- outputs span [-1, 1], so 35 dB is an RMS error of 0.036, 1.8% of the range (about 4.5
  of 255 grey levels): the level of a high-quality JPEG, where differences stop being
  visible side by side; the trained zoo generators reach 42-48 dB with plain INT8, so
  the floor rejects broken models (the issue's 7.7 dB and 28.9 dB cases), not good ones;
- PSNR is an average: a model can keep it while smearing edges or adding a grid pattern
  in a few places. SSIM (Wang et al. 2004) weighs local structure; 0.97 is where such
  artefacts start to show on 8-bit images.
`--min-psnr X` replaces the default (PSNR >= X, no SSIM floor: the user named their
budget); `--no-quality-floor` lifts it.

This module lives in the core because both compress/ (modelopt fake-quant) and export/
(ONNX Runtime's integer graph) search under it, and the build gates its bundle on it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from gencompress.errors import GencompressError
from gencompress.metrics import psnr, ssim

DEFAULT_MIN_PSNR = 35.0
DEFAULT_MIN_SSIM = 0.97
FINITE_DB = 999.0  # JSON has no inf; 999 dB means identical outputs


@dataclass(frozen=True)
class QualityFloor:
    min_psnr: float
    min_ssim: float | None = None
    default: bool = False  # the toolkit's default floor, not one the user set

    def validate(self) -> None:
        if not (math.isfinite(self.min_psnr) and self.min_psnr > 0):
            raise GencompressError("--min-psnr must be a positive number of dB")
        if self.min_ssim is not None and not 0 < self.min_ssim <= 1:
            raise GencompressError("the SSIM floor must be in (0, 1]")

    def measure(self, reference, test, data_range: float = 2.0) -> dict:
        """PSNR (dB) and SSIM of `test` against `reference` (peak: the output range's width), and whether the floor holds."""
        scores = {"psnr_db": finite_db(psnr(reference, test, data_range)), "ssim": ssim(reference, test, data_range)}
        scores["meets_floor"] = self.holds(scores)
        return scores

    def holds(self, scores: dict) -> bool:
        return scores["psnr_db"] >= self.min_psnr and (self.min_ssim is None or scores["ssim"] >= self.min_ssim)

    def raised_by(self, margin_db: float) -> "QualityFloor":
        """The same floor with its PSNR `margin_db` higher (what a search aims at)."""
        return replace(self, min_psnr=self.min_psnr + margin_db)

    def describe(self) -> str:
        ssim_part = f" and SSIM >= {self.min_ssim:g}" if self.min_ssim is not None else ""
        return f"PSNR >= {self.min_psnr:g} dB{ssim_part} vs FP32" + (" (the default floor)" if self.default else "")

    def as_dict(self) -> dict:
        return {"min_psnr_db": self.min_psnr, "min_ssim": self.min_ssim, "default": self.default}


def quality_floor(min_psnr: float | None = None, no_floor: bool = False) -> QualityFloor | None:
    """The floor the options ask for: None with --no-quality-floor, the user's PSNR with
    --min-psnr, else the default."""
    if no_floor:
        if min_psnr is not None:
            raise GencompressError("--min-psnr and --no-quality-floor contradict each other: give one")
        return None
    floor = QualityFloor(min_psnr) if min_psnr is not None else QualityFloor(DEFAULT_MIN_PSNR, DEFAULT_MIN_SSIM, default=True)
    floor.validate()
    return floor


def finite_db(value: float) -> float:
    """`value` for JSON: +inf (identical outputs) as FINITE_DB, -inf or NaN (outputs not finite) as -FINITE_DB."""
    if math.isfinite(value):
        return value
    return FINITE_DB if value == math.inf else -FINITE_DB


def best_of(scored: dict[str, dict]) -> str:
    """The candidate with the highest PSNR among those that meet the floor, else overall."""
    meeting = [k for k, s in scored.items() if s.get("meets_floor")]
    pool = meeting or list(scored)
    return max(pool, key=lambda k: scored[k]["psnr_db"])


class FloorNotMet(GencompressError):
    """No INT8 mix meets the floor: a verdict on the model, not a bad input (a sweep records it
    for that variant and goes on)."""


def not_met(floor: QualityFloor, best: dict, how: str) -> FloorNotMet:
    """The one-line error for a floor no mix meets: it names the best reached."""
    return FloorNotMet(
        f"no INT8 mix meets {floor.describe()}: the best reached {best['psnr_db']:.2f} dB, SSIM {best['ssim']:.4f} ({how}); "
        "nothing written. Lower --min-psnr, or build --precision fp16 (or fp32)"
    )


def fewest_passing(most: int, passes) -> int | None:
    """The smallest k in 0..most with passes(k) true, assuming more float layers never hurt:
    0, 1, 2, 4, ... until one passes, then bisection between the last miss and it. A handful of
    passes where a linear scan of a 40-layer decoder took 40 (each a pass over the held-out set).
    None if even `most` misses."""
    if passes(0):
        return 0
    miss, k = 0, 1
    while k < most and not passes(k):
        miss, k = k, 2 * k
    if k >= most:
        k = most
        if not passes(k):
            return None
    while k - miss > 1:  # passes(k) is true, passes(miss) false
        mid = (miss + k) // 2
        if passes(mid):
            k = mid
        else:
            miss = mid
    return k


def fewest_meeting(most: int, scores, floor: QualityFloor, margin_db: float = 0.0) -> int | None:
    """The fewest float layers (0..most) whose `scores(k)` meet `floor` raised by `margin_db`:
    the search judges on held-out inputs and the build's gate on others, where a mix that just
    met the floor landed 0.02 dB under. Where no mix clears the margin, the fewest that meet
    the floor itself (the gate then decides); None where none does. `scores` should cache:
    the second search revisits the first one's probes."""
    aim = floor.raised_by(margin_db)
    k = fewest_passing(most, lambda i: aim.holds(scores(i)))
    if k is None and margin_db:
        k = fewest_passing(most, lambda i: floor.holds(scores(i)))
    return k

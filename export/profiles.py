"""Batch ranges for dynamic-batch exports: the `--dynamic-batch MIN:OPT:MAX` option.

TensorRT builds one kernel plan per optimisation profile: it must know the smallest,
the most frequent and the largest batch it will see. ONNX Runtime only needs the batch
axis to be symbolic. The same profile feeds both, and the trtexec command lines.
"""
from __future__ import annotations

from dataclasses import dataclass

from gencompress.errors import GencompressError

MAX_BATCH = 4096  # far beyond any generator's useful batch; catches typos like 1:8:320000


@dataclass(frozen=True)
class BatchProfile:
    min: int = 1
    opt: int = 8
    max: int = 32

    @classmethod
    def parse(cls, text: str) -> "BatchProfile":
        """'1:8:32' -> BatchProfile(1, 8, 32); a single 'N' means a fixed batch of N."""
        parts = str(text).strip().split(":")
        if len(parts) not in (1, 3):
            raise GencompressError(f"--dynamic-batch {text!r} is not MIN:OPT:MAX (e.g. 1:8:32) or a single batch size")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise GencompressError(f"--dynamic-batch {text!r}: batch sizes must be integers") from None
        if len(values) == 1:
            values = values * 3
        profile = cls(*values)
        profile.validate()
        return profile

    def validate(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise GencompressError(f"--dynamic-batch {self}: needs 1 <= MIN <= OPT <= MAX")
        if self.max > MAX_BATCH:
            raise GencompressError(f"--dynamic-batch {self}: MAX above {MAX_BATCH}")

    @property
    def is_static(self) -> bool:
        return self.min == self.max

    def shapes(self, per_sample) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) full input shapes for one input of per-sample shape `per_sample`."""
        return tuple((b, *map(int, per_sample)) for b in (self.min, self.opt, self.max))  # type: ignore[return-value]

    def as_dict(self) -> dict:
        return {"min": self.min, "opt": self.opt, "max": self.max}

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"


def shape_text(shape) -> str:
    """(8, 100, 1, 1) -> '8x100x1x1', the form trtexec's --minShapes etc. read."""
    return "x".join(str(int(d)) for d in shape)

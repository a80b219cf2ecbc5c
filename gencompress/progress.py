"""Progress bars on stderr, shown only to a person at a terminal (not in CI logs)."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def bar(iterable: Iterable[T], desc: str, enabled: bool = True, **kwargs) -> Iterable[T]:
    # disable=None lets tqdm switch itself off when stderr is not a TTY
    return tqdm(iterable, desc=desc, disable=None if enabled else True, file=sys.stderr, dynamic_ncols=True, **kwargs)


def log(msg: str) -> None:
    """A one-line status on stderr, always (what a stage decided and why; stdout stays for --json)."""
    print(f"gencompress: {msg}", file=sys.stderr)


def note(msg: str) -> None:
    """A one-line status on stderr for a person at a terminal (quiet in CI logs and tests, like the bars)."""
    if sys.stderr.isatty():
        print(f"gencompress: {msg}", file=sys.stderr, flush=True)


class StageTimer:
    """Wall seconds per named stage of a long command: build's "where the time went"."""

    def __init__(self, progress: bool = True):
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self._started = time.perf_counter()

    @contextmanager
    def stage(self, name: str, detail: str = ""):
        if self.progress:
            note(f"{name}{f' ({detail})' if detail else ''}...")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def total(self) -> float:
        return time.perf_counter() - self._started

    def as_dict(self) -> dict:
        """{"wall_seconds": total, "stages": {name: seconds}, "other_seconds": what no stage covered}."""
        total = self.total()
        stages = {k: round(v, 3) for k, v in self.seconds.items()}
        return {"wall_seconds": round(total, 3), "stages": stages, "other_seconds": round(max(0.0, total - sum(self.seconds.values())), 3)}



def top_stages(took: dict, n: int = 3) -> str:
    """'compress (int8) 120 s, latency table 80 s, ...': the `n` longest stages of StageTimer.as_dict()."""
    longest = sorted(took["stages"].items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} {v:.0f} s" for k, v in longest)

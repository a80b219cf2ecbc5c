"""Progress on stderr with an ETA (tqdm): live at a terminal; in a log (stderr not a TTY: a pipe,
nohup, CI) only for work that lasts, as one plain line every LOG_INTERVAL_S, so a long first-use
training or build is never silent and short loops (and tests) leave the log clean."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")

LOG_DELAY_S = 30.0  # not a TTY: a bar appears only once its loop has run this long
LOG_INTERVAL_S = 30.0  # not a TTY: then one line per this many seconds, and its last line
LOG_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"  # no bar glyphs in a log


class _LogLines:
    """A file for tqdm that turns its carriage-return redraws into whole lines (a log reads
    top to bottom) and drops the blank redraw that clears a finished leave=False bar."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable: Iterable[T], desc: str, enabled: bool = True, **kwargs) -> Iterable[T]:
    """tqdm over `iterable` on stderr (ETA in its [elapsed<remaining] field); nothing when not enabled."""
    stream = sys.stderr
    if stream.isatty():
        return tqdm(iterable, desc=desc, disable=not enabled, file=stream, dynamic_ncols=True, **kwargs)
    return tqdm(iterable, desc=desc, disable=not enabled, file=_LogLines(stream), bar_format=LOG_FORMAT,
                delay=LOG_DELAY_S, mininterval=LOG_INTERVAL_S, **kwargs)


def log(msg: str) -> None:
    """A one-line status on stderr, always (what a stage decided and why; stdout stays for --json)."""
    print(f"gencompress: {msg}", file=sys.stderr, flush=True)  # in order with tqdm's lines, and whole in a captured stream


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
        took = time.perf_counter() - start
        if self.progress and not sys.stderr.isatty() and took >= LOG_DELAY_S:  # a log names the long stages as they end
            log(f"{name} done in {took:.0f} s ({self.total():.0f} s so far)")

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

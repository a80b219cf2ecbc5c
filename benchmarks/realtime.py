"""Real-time verdicts: does p99 latency fit the frame budget, per backend and batch?

A stream at F frames/s gives each frame 1000/F ms. A batch of B frames collects B
frames while the previous batch runs, so it keeps up when its p99 latency is at most
B x the frame budget (each frame then waits up to 2 B frame times end to end, which
the verdict states). Rows carry `source`: "measured" on the machine at hand, or
"estimated" (roofline, for a device not at hand); the verdict keeps that label.
"""
from __future__ import annotations

from gencompress.errors import GencompressError


def frame_budget_ms(fps: float | None, budget_ms: float | None) -> float:
    if budget_ms is not None:
        if budget_ms <= 0:
            raise GencompressError("--budget-ms must be positive")
        return float(budget_ms)
    if fps is None or fps <= 0:
        raise GencompressError("give --fps or --budget-ms for a real-time verdict")
    return 1000.0 / float(fps)


def verdict_row(row: dict, frame_ms: float) -> dict:
    batch = int(row["batch"])
    latency = row.get("p99_ms")
    budget = frame_ms * batch
    meets = None if latency is None else bool(latency <= budget)
    return {
        "variant": row.get("variant"),
        "backend": row["backend"],
        "precision": row.get("precision"),
        "device": row.get("device"),
        "batch": batch,
        "p99_ms": latency,
        "budget_ms": budget,
        "frame_budget_ms": frame_ms,
        "headroom": None if latency in (None, 0) else budget / latency,
        "meets": meets,
        "source": row.get("source", "measured"),
        "verdict": _words(meets, row.get("source", "measured")),
    }


def _words(meets: bool | None, source: str) -> str:
    if meets is None:
        return "unknown"
    return f"{'meets' if meets else 'misses'} budget ({source})"


def verdict(rows: list[dict], fps: float | None = None, budget_ms: float | None = None) -> list[dict]:
    """One verdict per latency row (p99 against B x frame budget)."""
    frame_ms = frame_budget_ms(fps, budget_ms)
    return [verdict_row(row, frame_ms) for row in rows]

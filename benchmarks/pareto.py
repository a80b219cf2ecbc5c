"""The Pareto front of latency (lower is better) against quality (higher is better)."""
from __future__ import annotations

import math


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates.

    A point dominates another when its latency is <= and its quality >= the other's,
    and it is strictly better in one of the two. Points with a missing or NaN value are
    never on the front. Returned in order of increasing latency.
    """
    valid = [i for i, (lat, q) in enumerate(points) if _finite(lat) and q is not None and not math.isnan(q)]
    front = []
    for i in valid:
        li, qi = points[i]
        dominated = any(
            points[j][0] <= li and points[j][1] >= qi and (points[j][0] < li or points[j][1] > qi) for j in valid if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def pareto_rows(rows: list[dict], quality) -> list[dict]:
    """The rows on the front of median latency against `quality(row)`, fastest first. A row
    marked under the quality floor (row["meets_floor"] False: benchmarks/sweep.mark_floor) is
    never on it, however fast: the sweep's JSON and the report's scatter share this rule."""
    points = [(r["median_ms"], quality(r) if r.get("meets_floor", True) else None) for r in rows]
    return [rows[i] for i in pareto_front(points)]


def _finite(x) -> bool:
    return x is not None and not math.isnan(x) and not math.isinf(x)

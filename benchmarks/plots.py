"""Report figures (matplotlib, Agg): latency-vs-quality scatter with its Pareto front, bars."""
from __future__ import annotations

import io
import math

from .pareto import pareto_front

PSNR_CAP_DB = 100.0  # identical outputs have infinite PSNR; plot them at the cap


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    return buf.getvalue()


def scatter_batch(rows: list[dict]) -> int:
    """The batch the scatter compares at: 8 when measured, else the most common batch."""
    batches = [r["batch"] for r in rows]
    return 8 if 8 in batches else max(set(batches), key=batches.count)


def quality_value(row: dict) -> float | None:
    q = row.get("psnr_db")
    if q is None or (isinstance(q, float) and math.isnan(q)):
        return None
    return min(float(q), PSNR_CAP_DB)


def label(row: dict) -> str:
    return f"{row['variant']} | {row['backend']} {row['precision']}"


def latency_quality_scatter(rows: list[dict], batch: int) -> tuple[bytes, list[dict]]:
    """PNG of median latency vs PSNR at `batch`, Pareto front joined; and the front's rows."""
    plt = _plt()
    chosen = [r for r in rows if r["batch"] == batch and r.get("source", "measured") == "measured"]
    points = [(r["median_ms"], quality_value(r)) for r in chosen]
    front = [chosen[i] for i in pareto_front(points)]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for backend in sorted({r["backend"] for r in chosen}):
        pts = [(r["median_ms"], quality_value(r)) for r in chosen if r["backend"] == backend and quality_value(r) is not None]
        if pts:
            ax.scatter(*zip(*pts), label=backend, s=36, alpha=0.8)
    if front:
        ax.plot([r["median_ms"] for r in front], [quality_value(r) for r in front], "k--", lw=1, label="Pareto front")
        for r in front:
            ax.annotate(label(r), (r["median_ms"], quality_value(r)), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")  # variants span orders of magnitude (eager PyTorch vs ONNX Runtime)
    ax.set_xlabel(f"median latency at batch {batch} (ms, log scale, lower is better)")
    ax.set_ylabel(f"PSNR vs original (dB, capped at {PSNR_CAP_DB:.0f})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig), front


def latency_bars(rows: list[dict]) -> bytes:
    """Grouped bars: median latency per configuration, one group per batch size."""
    plt = _plt()
    batches = sorted({r["batch"] for r in rows})
    configs = sorted({label(r) for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(max(6.0, 3.2 * len(batches)), 0.28 * len(configs) + 2.0), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        by_label = {label(r): r for r in rows if r["batch"] == batch}
        values = [by_label[c]["median_ms"] if c in by_label else float("nan") for c in configs]
        colors = ["tab:orange" if c in by_label and by_label[c].get("source") == "estimated" else "tab:blue" for c in configs]
        ax.barh(range(len(configs)), values, color=colors)
        ax.set_xscale("log")
        ax.set_yticks(range(len(configs)))
        ax.set_yticklabels(configs if ax is axes[0][0] else [""] * len(configs), fontsize=6)
        ax.set_title(f"batch {batch}", fontsize=9)
        ax.set_xlabel("median ms, log scale (orange: estimated)", fontsize=8)
        ax.invert_yaxis()
    return _png(fig)

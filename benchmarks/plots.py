"""Report figures (matplotlib, Agg): latency-vs-quality scatter with its Pareto front, bars."""
from __future__ import annotations

import io
import math

from .pareto import pareto_rows

PSNR_CAP_DB = 100.0  # identical outputs have infinite PSNR; plot them at the cap
LOG_SPAN = 100.0  # a latency axis goes log only when its values span more than this factor; linear reads easier


def axis_scale(values) -> str:
    """"log" when the finite positive `values` span more than LOG_SPAN (eager PyTorch beside a
    fused graph can), else "linear": bars on a log axis start at an arbitrary power of ten."""
    finite = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return "log" if finite and max(finite) > LOG_SPAN * min(finite) else "linear"


def is_int8(row: dict) -> bool:
    return "int8" in str(row.get("precision", "")).lower()


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
    """PNG of median latency vs PSNR at `batch`, Pareto front joined (rows under the quality
    floor crossed out, never on it); and the front's rows."""
    plt = _plt()
    chosen = [r for r in rows if r["batch"] == batch and r.get("source", "measured") == "measured"]
    front = pareto_rows(chosen, quality_value)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for backend in sorted({r["backend"] for r in chosen}):
        pts = [(r["median_ms"], quality_value(r)) for r in chosen if r["backend"] == backend and quality_value(r) is not None]
        if pts:
            ax.scatter(*zip(*pts), label=backend, s=36, alpha=0.8)
    under = [r for r in chosen if r.get("meets_floor") is False and quality_value(r) is not None]
    if under:
        ax.scatter([r["median_ms"] for r in under], [quality_value(r) for r in under], marker="x", color="red", s=70,
                   label="under the quality floor")
    if front:
        ax.plot([r["median_ms"] for r in front], [quality_value(r) for r in front], "k--", lw=1, label="Pareto front")
    on_front = {id(r) for r in front}
    named = [r for r in chosen if (is_int8(r) or id(r) in on_front) and quality_value(r) is not None]
    for r in named:  # every INT8 point and the front, by name
        ax.annotate(label(r), (r["median_ms"], quality_value(r)), fontsize=7, xytext=(4, 3), textcoords="offset points")
    scale = axis_scale([r["median_ms"] for r in chosen])
    ax.set_xscale(scale)
    ax.set_xlabel(f"median latency at batch {batch} (ms{', log scale' if scale == 'log' else ''}, lower is better)")
    ax.set_ylabel(f"PSNR vs original (dB, capped at {PSNR_CAP_DB:.0f})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig), front


def latency_bars(rows: list[dict]) -> bytes:
    """Grouped bars: median latency per configuration, one group per batch size."""
    plt = _plt()
    batches = sorted({r["batch"] for r in rows})
    configs = sorted({label(r) for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(4.0 + 3.2 * len(batches), 0.38 * len(configs) + 2.0), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        by_label = {label(r): r for r in rows if r["batch"] == batch}
        values = [by_label[c]["median_ms"] if c in by_label else float("nan") for c in configs]
        colors = ["tab:orange" if c in by_label and by_label[c].get("source") == "estimated" else "tab:blue" for c in configs]
        bars = ax.barh(range(len(configs)), values, color=colors)
        ax.bar_label(bars, labels=[f"{v:.3g} ms" if math.isfinite(v) else "" for v in values], fontsize=7, padding=2)
        scale = axis_scale(values)  # per batch: each panel reads on its own axis
        ax.set_xscale(scale)
        ax.margins(x=0.25)  # room for the value labels
        ax.set_yticks(range(len(configs)))
        ax.set_yticklabels(configs if ax is axes[0][0] else [""] * len(configs), fontsize=8)
        ax.set_title(f"batch {batch}", fontsize=9)
        ax.set_xlabel(f"median ms{' (log scale)' if scale == 'log' else ''}", fontsize=8)
        ax.invert_yaxis()
    if any(r.get("source") == "estimated" for r in rows):
        fig.suptitle("orange bars: estimated (roofline), not measured", fontsize=8)
    return _png(fig)

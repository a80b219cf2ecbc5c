"""Charts a person can read: linear axes where the values fit, value labels on bars, INT8 points named.
Checked on the figures' own data (scale, texts), not on pixels."""
from __future__ import annotations

import pytest

from gencompress.benchmarks import plots


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures the plot functions draw, kept open for inspection."""
    kept = []
    monkeypatch.setattr(plots, "_png", lambda fig: kept.append(fig) or b"png")
    return kept


def _row(variant: str, backend: str, precision: str, batch: int, ms: float, psnr: float) -> dict:
    return {"variant": variant, "backend": backend, "precision": precision, "batch": batch, "median_ms": ms, "psnr_db": psnr,
            "source": "measured"}


ROWS = [_row("prune0.00-fp32", "ort", "fp32", 8, 12.0, float("inf")), _row("prune0.00-int8", "ort", "int8", 8, 7.5, 41.0),
        _row("prune0.50-fp32", "ort", "fp32", 8, 5.0, 33.0), _row("prune0.50-int8", "ort", "int8", 8, 3.1, 31.5),
        _row("prune0.00-int8", "ort", "int8", 1, 1.2, 41.0), _row("prune0.00-fp32", "ort", "fp32", 1, 2.0, float("inf"))]


def test_axis_scale_is_linear_unless_values_span_over_100x():
    assert plots.axis_scale([3.1, 5.0, 7.5, 12.0]) == "linear"
    assert plots.axis_scale([1.0, 99.0, float("nan"), None]) == "linear"
    assert plots.axis_scale([0.5, 51.0]) == "log"


def test_bars_linear_with_readable_value_labels(figures):
    plots.latency_bars(ROWS)
    (fig,) = figures
    b1, b8 = fig.axes
    assert b1.get_xscale() == "linear" and b8.get_xscale() == "linear"
    assert "log" not in b8.get_xlabel()
    labels = [t.get_text() for t in b8.texts]  # bar_label's texts, one per bar
    assert labels == ["12 ms", "7.5 ms", "5 ms", "3.1 ms"]
    ticks = [t.get_text() for t in b1.get_yticklabels()]
    assert ticks[1] == "prune0.00-int8 | ort int8" and min(t.get_fontsize() for t in b1.get_yticklabels()) >= 8


def test_bars_go_log_where_values_span_orders_of_magnitude(figures):
    plots.latency_bars([*ROWS, _row("original-torch", "torch", "fp32", 8, 900.0, float("inf"))])
    assert figures[0].axes[1].get_xscale() == "log" and "log scale" in figures[0].axes[1].get_xlabel()
    assert figures[0].axes[0].get_xscale() == "linear"  # batch 1 has no eager row: its values still fit


def test_scatter_names_every_int8_point(figures):
    dominated = _row("prune0.25-int8", "ort", "int8", 8, 9.0, 30.0)  # slower and worse than prune0.50-fp32: off the front
    _, front = plots.latency_quality_scatter([*ROWS, dominated], 8)
    assert dominated not in front
    (fig,) = figures
    ax = fig.axes[0]
    names = {t.get_text() for t in ax.texts}
    assert {"prune0.00-int8 | ort int8", "prune0.50-int8 | ort int8", "prune0.25-int8 | ort int8"} <= names
    assert {plots.label(r) for r in front} <= names
    assert ax.get_xscale() == "linear" and "log" not in ax.get_xlabel()

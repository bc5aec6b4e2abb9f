"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no display).

Each function takes plain frames / dicts read from a run directory and returns
a :class:`~matplotlib.figure.Figure`; :func:`to_data_uri` turns it into a
base64 PNG for embedding, so the HTML needs no file or network next to it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from selfdistill.evaluation.calibration import apply_temperature, logits_from_proba
from selfdistill.evaluation.metrics import reliability_curve

__all__ = [
    "REGIME_COLORS",
    "confusion_figure",
    "equity_figure",
    "generations_figure",
    "regimes_figure",
    "reliability_figure",
    "to_data_uri",
    "uncertainty_figure",
]

#: bull, bear, sideways
REGIME_COLORS = ("#2ca02c", "#d62728", "#9e9e9e")
_LINE_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def to_data_uri(fig: Figure, *, dpi: int = 90) -> str:
    """``data:image/png;base64,...`` of a figure."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)  # constrained layout sets the margins
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _x(times: Any) -> np.ndarray:
    """Naive UTC datetime64 values (matplotlib handles them; tz-aware objects it may not)."""
    index = pd.DatetimeIndex(times)
    return (index.tz_convert(None) if index.tz is not None else index).to_numpy()


def _figure(n_panels: int, *, width: float = 4.0, height: float = 3.2,
            rows: int = 1) -> tuple[Figure, list[Any]]:
    cols = int(np.ceil(n_panels / rows))
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def generations_figure(series: dict[str, dict[str, list[dict[str, Any]]]],
                       references: dict[str, dict[str, float]], metrics: Sequence[str]
                       ) -> Figure:
    """Mean and 95% interval of each metric per member index, one panel per metric.

    Args:
        series: ``{method: {metric: [{"x": 0, "mean": .., "ci_low": .., "ci_high": ..}]}}``.
        references: ``{reference method: {metric: mean}}`` drawn as dashed lines.
        metrics: the panels, in order.
    """
    fig, axes = _figure(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        for i, (method, by_metric) in enumerate(series.items()):
            pts = by_metric.get(metric, [])
            if not pts:
                continue
            x = np.array([p["x"] for p in pts], dtype=float)
            mean = np.array([p["mean"] for p in pts])
            low = np.array([p["ci_low"] if p["ci_low"] is not None else p["mean"] for p in pts])
            high = np.array([p["ci_high"] if p["ci_high"] is not None else p["mean"]
                             for p in pts])
            ax.errorbar(x + 0.05 * i, mean, yerr=[mean - low, high - mean], marker="o",
                        capsize=3, label=method, color=_LINE_COLORS[i % len(_LINE_COLORS)])
        for j, (name, values) in enumerate(references.items()):
            if metric in values:
                ax.axhline(values[metric], linestyle="--", linewidth=1, label=name,
                           color=("black", "#7f7f7f", "#bcbd22")[j % 3])
        ax.set_title(metric)
        ax.set_xlabel("generation / member")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig


def reliability_figure(panels: dict[str, pd.DataFrame], class_names: Sequence[str],
                       n_bins: int = 15) -> Figure:
    """Reliability diagram per output, before and after temperature scaling.

    Args:
        panels: ``{title: prediction rows}`` with ``p_<class>``, ``label`` and
            ``temperature`` columns (test rows).
    """
    fig, axes = _figure(len(panels), width=3.4, height=3.4)
    for ax, (title, rows) in zip(axes, panels.items(), strict=True):
        proba = rows[[f"p_{c}" for c in class_names]].to_numpy(dtype=np.float64)
        y = rows["label"].to_numpy()
        temps = rows["temperature"].to_numpy(dtype=np.float64)
        after = proba.copy()
        for t in np.unique(temps[np.isfinite(temps)]):  # one temperature per cell
            at = temps == t
            after[at] = apply_temperature(logits_from_proba(proba[at]), float(t))
        ax.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle=":")
        for probs, name, color in ((proba, "before", "#d62728"), (after, "after T", "#1f77b4")):
            curve = reliability_curve(y, probs, n_bins)
            ax.plot(curve["confidence"], curve["accuracy"], marker="o", markersize=3,
                    label=name, color=color)
        ax.set(title=title, xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7)
    return fig


def confusion_figure(matrices: dict[str, np.ndarray], class_names: Sequence[str]) -> Figure:
    """Row-normalised confusion matrices (rows = true, columns = predicted)."""
    fig, axes = _figure(len(matrices), width=3.2, height=3.0)
    for ax, (title, cm) in zip(axes, matrices.items(), strict=True):
        cm = np.asarray(cm, dtype=np.float64)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for (i, j), v in np.ndenumerate(norm):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if v > 0.6 else "black")
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, fontsize=7)
        ax.set_yticks(ticks, class_names, fontsize=7)
        ax.set(title=title, xlabel="predicted", ylabel="true")
    return fig


def _shade(ax: Any, times: pd.Series, regime: np.ndarray, class_names: Sequence[str]) -> None:
    for k, name in enumerate(class_names):
        ax.fill_between(_x(times), 0, 1, where=regime == k, step="post", alpha=0.25, linewidth=0,
                        color=REGIME_COLORS[k % 3], transform=ax.get_xaxis_transform(),
                        label=name)


def regimes_figure(prices: pd.DataFrame, predicted: pd.DataFrame, class_names: Sequence[str],
                   *, title: str) -> Figure:
    """Close price over the test blocks, shaded by predicted (and true) regime.

    Args:
        prices: ``open_time``, ``close`` (and ``true_regime``) per bar.
        predicted: ``open_time``, ``pred`` per test decision.
    """
    has_truth = "true_regime" in prices and prices["true_regime"].notna().any()
    fig, axes = _figure(2 if has_truth else 1, width=11, height=2.8, rows=2 if has_truth else 1)
    span = prices[(prices["open_time"] >= predicted["open_time"].min())
                  & (prices["open_time"] <= predicted["open_time"].max())]
    rows = [("predicted regime: " + title, predicted["open_time"], predicted["pred"])]
    if has_truth:
        truth = span.dropna(subset=["true_regime"])
        rows.append(("true regime (synthetic market)", truth["open_time"], truth["true_regime"]))
    for ax, (name, times, regime) in zip(axes, rows, strict=True):
        ax.plot(_x(span["open_time"]), span["close"], color="black", linewidth=0.7)
        _shade(ax, times, np.asarray(regime, dtype=np.int64), class_names)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("close")
        ax.set_xlabel("UTC")
    axes[0].legend(loc="upper left", fontsize=7, ncol=3)
    return fig


def equity_figure(curves: dict[str, pd.DataFrame]) -> Figure:
    """Equity (top) and drawdown (bottom) of each strategy over the test blocks.

    Args:
        curves: ``{name: frame}`` with ``open_time`` and ``net`` per decision, in time order.
    """
    fig, (top, bottom) = _figure(2, width=11, height=2.8, rows=2)
    for i, (name, frame) in enumerate(curves.items()):
        equity = np.cumprod(1.0 + frame["net"].to_numpy())
        peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
        color = _LINE_COLORS[i % len(_LINE_COLORS)]
        style = "--" if name in ("buy_and_hold", "always_flat", "random") else "-"
        top.plot(_x(frame["open_time"]), equity, label=name, color=color, linestyle=style,
                 linewidth=1)
        bottom.plot(_x(frame["open_time"]), equity / peak - 1.0, color=color, linestyle=style,
                    linewidth=1)
    top.set(title="equity (net of costs)", ylabel="equity")
    bottom.set(title="drawdown", ylabel="drawdown")
    top.legend(fontsize=7, ncol=3)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return fig


def uncertainty_figure(curves: dict[str, list[float]], measure: str) -> Figure:
    """Test error rate per disagreement quantile (least uncertain first), per method."""
    fig, (ax,) = _figure(1, width=5.5, height=3.4)
    for i, (method, errors) in enumerate(curves.items()):
        ax.plot(np.arange(1, len(errors) + 1), errors, marker="o", label=method,
                color=_LINE_COLORS[i % len(_LINE_COLORS)])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title=f"error rate vs {measure} quantile", xlabel="quantile (1 = most agreement)",
           ylabel="test error rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig

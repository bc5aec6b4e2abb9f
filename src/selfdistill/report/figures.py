"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no display).

Each function takes plain frames / dicts read from a run directory and returns a
:class:`~matplotlib.figure.Figure`; :func:`to_data_uri` turns it into a base64 PNG for
embedding, so the HTML needs no file or network next to it.

Axes are placed at fixed positions in inches (:func:`_canvas`), not by a layout engine:
constrained layout measured every tick label of every figure and cost more than half of
the report's time. Long lines and regime shadings are reduced to a few thousand points
or spans (:mod:`selfdistill.report.decimate`), after every number is computed from every
bar. Intervals are drawn as they are (``ci_low`` to ``ci_high``), never as
a mean plus or minus a half-width.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num, num2date
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from selfdistill.report.decimate import Line
from selfdistill.report.trading import EquityCurve

__all__ = [
    "BASELINE_STYLES",
    "MIN_BIN_ROWS",
    "REGIME_COLORS",
    "ReliabilityPanel",
    "auroc_figure",
    "equity_figure",
    "generations_figure",
    "regimes_figure",
    "reliability_figure",
    "to_data_uri",
]

#: bull, bear, sideways
REGIME_COLORS = ("#2ca02c", "#d62728", "#9e9e9e")
_LINE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                "#bcbd22", "#d62728")
#: Line style of the trading baselines in the equity chart.
BASELINE_STYLES = {"buy_and_hold": ("#555555", "--"), "always_flat": ("#999999", ":"),
                   "random": ("#aaaaaa", "-.")}
#: Reliability bins with fewer rows are drawn grey and hollow (too few to read).
MIN_BIN_ROWS = 30
_STYLE: dict[Any, Any] = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.6,
    "axes.edgecolor": "#888888", "axes.titleweight": "bold", "legend.frameon": False,
    "path.simplify": True, "agg.path.chunksize": 10000,
    # a fixed title height: matplotlib otherwise measures every tick label to place titles
    "axes.titley": 1.01,
}
P = ParamSpec("P")


def _styled(draw: Callable[P, Figure]) -> Callable[P, Figure]:
    """Draw under the report's style (a local rc context: the user's rcParams are untouched)."""
    @wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with mpl.rc_context(_STYLE):
            return draw(*args, **kwargs)
    return wrapper


def to_data_uri(fig: Figure, *, dpi: int = 90) -> str:
    """``data:image/png;base64,...`` of a figure."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with mpl.rc_context(_STYLE):
        fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _x(times: Any) -> np.ndarray:
    """Naive UTC datetime64 values (matplotlib handles them; tz-aware objects it may not)."""
    index = pd.DatetimeIndex(times)
    return (index.tz_convert(None) if index.tz is not None else index).to_numpy()


def _fixed(ax: Any, axis: str = "y", n: int = 4, *, integer: bool = False) -> None:
    """Freeze an axis's ticks at a few nice values of its current limits.

    Automatic locators re-run (and build tick artists) on every draw; fixed ticks drew
    this report's figures three times faster.
    """
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    values = MaxNLocator(n, integer=integer).tick_values(lo, hi)
    values = values[(values >= min(lo, hi) - 1e-12) & (values <= max(lo, hi) + 1e-12)]
    (ax.set_yticks if axis == "y" else ax.set_xticks)(values)


def _dates(ax: Any, shared: Any | None = None) -> None:
    """Fixed, short date ticks (2022-02, 03, ... rather than full stamps) on ``ax``, and
    the same positions without labels on ``shared``."""
    lo, hi = ax.get_xlim()
    locator = AutoDateLocator(maxticks=9)
    values = [v for v in locator.tick_values(num2date(lo), num2date(hi)) if lo <= v <= hi]
    labels = ConciseDateFormatter(locator).format_ticks(values)
    ax.set_xticks(values, labels)
    offset = ConciseDateFormatter(locator)
    offset.format_ticks(values)
    ax.set_xlabel(offset.get_offset(), loc="right")
    if shared is not None:
        shared.set_xlim(lo, hi)
        shared.set_xticks(values, [])


def _canvas(n: int, *, cols: int, width: float, height: float, left: float = 0.55,
            bottom: float = 0.5, top: float = 0.35, right: float = 0.15, gap_w: float = 0.55,
            gap_h: float = 0.75) -> tuple[Figure, list[tuple[float, float, float, float]]]:
    """A figure with ``n`` panel slots of ``width`` x ``height`` inches, ``cols`` a row.

    Returns the figure and each slot's (left, bottom, width, height) in figure fractions.
    """
    cols = max(1, min(cols, n))
    rows = int(np.ceil(n / cols))
    fw = left + cols * width + (cols - 1) * gap_w + right
    fh = top + rows * height + (rows - 1) * gap_h + bottom
    fig = Figure(figsize=(fw, fh))
    slots = []
    for i in range(n):
        r, c = divmod(i, cols)
        x0 = left + c * (width + gap_w)
        y0 = fh - top - (r + 1) * height - r * gap_h
        slots.append((x0 / fw, y0 / fh, width / fw, height / fh))
    return fig, slots


def _axes(n: int, **kwargs: Any) -> tuple[Figure, list[Any]]:
    fig, slots = _canvas(n, **kwargs)
    return fig, [fig.add_axes(s) for s in slots]


@_styled
def generations_figure(series: dict[str, dict[str, list[dict[str, Any]]]],
                       references: dict[str, dict[str, float]], metrics: Sequence[str]
                       ) -> Figure:
    """Mean and 95% interval (as it is) of each metric per member index, a panel a metric.

    Args:
        series: ``{method: {metric: [{"x": 0, "mean": .., "ci_low": .., "ci_high": ..}]}}``.
        references: ``{reference output: {metric: mean}}`` drawn as dashed lines.
        metrics: the panels, in order.
    """
    fig, axes = _axes(len(metrics), cols=5, width=2.05, height=1.75, gap_w=0.5, bottom=0.85)
    for ax, metric in zip(axes, metrics, strict=True):
        for i, (method, by_metric) in enumerate(series.items()):
            pts = by_metric.get(metric, [])
            if not pts:
                continue
            x = np.array([p["x"] for p in pts], dtype=float) + 0.06 * i
            mean = np.array([p["mean"] for p in pts], dtype=float)
            color = _LINE_COLORS[i % len(_LINE_COLORS)]
            ax.plot(x, mean, marker="o", markersize=3, color=color, label=method, linewidth=1)
            has = [p.get("ci_low") is not None and p.get("ci_high") is not None for p in pts]
            if any(has):  # the interval as it is: ci_low to ci_high, never mean +- half
                ax.vlines(x[has], [p["ci_low"] for p, h in zip(pts, has, strict=True) if h],
                          [p["ci_high"] for p, h in zip(pts, has, strict=True) if h],
                          color=color, linewidth=1)
        for j, (name, values) in enumerate(references.items()):
            if metric in values:
                ax.axhline(values[metric], linestyle="--", linewidth=0.9, label=name,
                           color=("black", "#7f7f7f", "#bcbd22", "#8c564b")[j % 4])
        ax.set_title(metric, loc="left")
        _fixed(ax, "x", 6, integer=True)
        _fixed(ax, "y", 4)
    for ax in axes:
        ax.set_xlabel("generation / member")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6),
                   bbox_to_anchor=(0.5, 0.0))
    return fig


@dataclass(frozen=True)
class ReliabilityPanel:
    """One reliability diagram: what it shows, and its curves (from ``reliability_curve``).

    ``after`` is the curve after temperature scaling (None when calibration is off).
    """

    title: str
    subtitle: str
    before: dict[str, list[float]]
    after: dict[str, list[float]] | None


def _reliability_axes(fig: Figure, slot: tuple[float, float, float, float]
                      ) -> tuple[Any, Any]:
    """The diagram over a short axis of rows per bin; fixed ticks (ticks cost the most)."""
    x0, y0, w, h = slot
    top = fig.add_axes((x0, y0 + 0.3 * h, w, 0.7 * h))
    bottom = fig.add_axes((x0, y0, w, 0.22 * h))
    ticks = [0.0, 0.5, 1.0]
    top.set_xticks(ticks, [])
    top.set_yticks(ticks)
    bottom.set_xticks(ticks)
    return top, bottom


def _draw_reliability(top: Any, curve: dict[str, list[float]], name: str, color: str) -> None:
    """The line joins the bins with enough rows; thin bins are hollow grey points only."""
    conf, acc = np.array(curve["confidence"]), np.array(curve["accuracy"])
    count = np.array(curve["count"])
    ok = count >= MIN_BIN_ROWS
    top.plot(conf[ok], acc[ok], color=color, linewidth=1, marker="o", markersize=3.5,
             label=name)
    top.scatter(conf[~ok], acc[~ok], s=12, facecolors="none", edgecolors="#b0b0b0", zorder=3)


@_styled
def reliability_figure(panels: Sequence[ReliabilityPanel]) -> Figure:
    """Reliability diagrams with the rows of every confidence bin underneath.

    Bins with fewer than :data:`MIN_BIN_ROWS` rows are hollow grey points and grey bars.
    """
    cols = len(panels) if len(panels) <= 5 else 4
    fig, slots = _canvas(len(panels), cols=cols, width=2.2, height=2.9, top=0.55, gap_w=0.45,
                         gap_h=0.95)
    for i, (slot, panel) in enumerate(zip(slots, panels, strict=True)):
        top, bottom = _reliability_axes(fig, slot)
        top.plot([0, 1], [0, 1], color="black", linewidth=0.7, linestyle=":")
        _draw_reliability(top, panel.before, "before T", "#d62728")
        if panel.after is not None:
            _draw_reliability(top, panel.after, "after T", "#1f77b4")
        top.set(xlim=(0, 1), ylim=(0, 1))
        top.set_title(f"{panel.title}\n{panel.subtitle}", loc="left", fontsize=8)
        if i % cols == 0:  # small multiples: labels and legend on the first column only
            top.set_ylabel("accuracy")
            bottom.set_ylabel("rows")
        if i == 0:
            top.legend(loc="upper left")
        lower = np.array(panel.before["bin_lower"])
        upper = np.array(panel.before["bin_upper"])
        count = np.array(panel.before["count"])
        colors = np.where(count >= MIN_BIN_ROWS, "#7f9fbf", "#d0d0d0")
        bottom.bar(lower, count, width=upper - lower, align="edge", color=colors,
                   edgecolor="white", linewidth=0.5)
        bottom.set(xlim=(0, 1), xlabel="confidence")
        bottom.set_yticks([0, int(count.max())] if len(count) else [0])
        bottom.grid(False)
    return fig


_NS_PER_DAY = 86_400e9


def _shade(ax: Any, spans: Sequence[tuple[float, float, int]],
           class_names: Sequence[str]) -> None:
    """One broken bar per class (cheap to draw, unlike a fill per bar); ``spans`` are
    (left, width, class) in nanoseconds since the epoch
    (:meth:`~selfdistill.report.decimate.ClassSlices.spans`)."""
    by_class: dict[int, list[tuple[float, float]]] = {}
    for left, width, k in spans:
        start = date2num(np.datetime64(int(left), "ns"))
        by_class.setdefault(k, []).append((start, width / _NS_PER_DAY))
    for k, name in enumerate(class_names):
        ax.broken_barh(by_class.get(k, []), (0, 1), transform=ax.get_xaxis_transform(),
                       color=REGIME_COLORS[k % 3], alpha=0.25, linewidth=0, label=name)


@_styled
def regimes_figure(close: Line, shadings: Sequence[tuple[str, Sequence[tuple[float, float, int]]]],
                   class_names: Sequence[str]) -> Figure:
    """Close price over the test blocks, one panel per regime shading.

    Args:
        close: the close over the test period (naive UTC datetime64 x), reduced to a few
            thousand points (:class:`~selfdistill.report.decimate.LineSlices`).
        shadings: (title, spans) per panel: the predicted regime, then the true one on
            synthetic data; spans as :meth:`~selfdistill.report.decimate.ClassSlices.spans`.
    """
    fig, axes = _axes(len(shadings), cols=1, width=10.6, height=2.0, left=0.8, gap_h=0.55)
    for ax, (name, spans) in zip(axes, shadings, strict=True):
        ax.plot(close.x, close.y, color="black", linewidth=0.7)
        _shade(ax, spans, class_names)
        ax.set_title(name, loc="left")
        ax.set_ylabel("close")
        ax.grid(False)
        _fixed(ax, "y", 4)
        _dates(ax)
    axes[0].legend(loc="upper left", ncol=3)
    return fig


@_styled
def equity_figure(curves: dict[str, EquityCurve], baselines: Sequence[str] = ()) -> Figure:
    """Equity (top) and drawdown (bottom) of each strategy over the test blocks.

    Args:
        curves: ``{label: curve}``, each computed from every decision and reduced to a few
            thousand points that keep its extremes
            (:func:`~selfdistill.report.trading.equity_curve`).
        baselines: labels drawn as the trading baselines (grey, dashed): keys of
            :data:`BASELINE_STYLES`.
    """
    fig, (top, bottom) = _axes(2, cols=1, width=8.2, height=2.3, left=0.7, right=3.1,
                               gap_h=0.45)
    # past 1000x a linear axis shows one line and a flat floor: draw log10 of equity
    logs = max((float(c.log10_equity.y.max()) for c in curves.values()), default=0.0) > 3.0
    k = 0
    for name, curve in curves.items():
        if name in baselines:
            color, style = BASELINE_STYLES.get(name, ("#777777", "--"))
        else:
            color, style, k = _LINE_COLORS[k % len(_LINE_COLORS)], "-", k + 1
        line = curve.log10_equity
        top.plot(line.x, line.y if logs else 10.0 ** line.y, label=name, color=color,
                 linestyle=style, linewidth=1.1)
        bottom.plot(curve.drawdown.x, curve.drawdown.y, color=color, linestyle=style,
                    linewidth=0.9)
    for ax in (top, bottom):
        _fixed(ax, "y", 5)
    _dates(bottom, shared=top)
    top.set_title("log10 of equity (net of costs, starts at 0 = 1x)" if logs
                  else "equity (net of costs, starts at 1)", loc="left")
    bottom.set_title("drawdown", loc="left")
    top.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


@_styled
def auroc_figure(points: Sequence[dict[str, Any]]) -> Figure:
    """AUROC of each score for predicting an error, with its interval as it is.

    Args:
        points: ``{"label", "mean", "low", "high", "reference"}``; references (the
            model's own confidence) are drawn grey.
    """
    fig, (ax,) = _axes(1, cols=1, width=5.0, height=0.28 * len(points) + 0.3, left=3.0,
                       bottom=0.45, top=0.3)
    y = np.arange(len(points))[::-1]
    for yi, p in zip(y, points, strict=True):
        color = "#888888" if p["reference"] else "#1f77b4"
        if p.get("low") is not None and p.get("high") is not None:
            ax.hlines(yi, p["low"], p["high"], color=color, linewidth=2)
        ax.plot([p["mean"]], [yi], marker="o", color=color, markersize=5)
    ax.axvline(0.5, color="black", linewidth=0.8, linestyle=":")
    ax.set_yticks(y, [p["label"] for p in points])
    ax.set_xlabel("AUROC for predicting a test error (0.5 = chance)")
    ax.set_ylim(-0.6, len(points) - 0.4)
    _fixed(ax, "x", 6)
    return fig

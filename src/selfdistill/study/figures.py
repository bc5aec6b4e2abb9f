"""The study's figures (matplotlib Agg, no display, no network), from study.json alone.

* :func:`gains_figure`: per point, each method's gain over the hard-label model (or over
  the best simple alternative) on the primary metric, with the run's 95% interval as it
  is (``ci_low`` to ``ci_high``). Filled markers: significant after the study-wide
  adjustment; hollow: not.
* :func:`levels_figure`: each method's test value of a metric per point, with its
  interval over folds.
* :func:`members_figure`: generation k (snapshot k, exit k) minus the first member, a
  line per variant (or per value of the first grid axis): where the gain saturates.

When the grid has a numeric axis (label noise, training size, temperature) it is the x
axis and every combination of the other settings is a panel; otherwise the points are
the x axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from selfdistill.study.results import BETTER, WORSE

__all__ = ["MAX_MEMBER_LINES", "gains_figure", "levels_figure", "members_figure", "x_axis"]

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#d62728", "#7f7f7f")
_STYLE: dict[Any, Any] = {"font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8,
                          "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7,
                          "axes.spines.top": False, "axes.spines.right": False,
                          "axes.grid": True, "grid.alpha": 0.25, "legend.frameon": False}
#: Lines (points) drawn in one members panel at most; more make it unreadable.
MAX_MEMBER_LINES = 12
_MAX_PANELS = 24
#: (point, method) -> (mean, low, high, significant) or None
Series = Callable[[dict[str, Any], str], tuple[float, float | None, float | None, bool] | None]


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def x_axis(payload: dict[str, Any]) -> str | None:
    """The first grid key whose values are all numbers (the figures' x axis), or None."""
    for key in payload.get("axes", []):
        if _numeric([p["settings"].get(key) for p in payload["points"]]):
            return key
    return None


def _panel_title(point: dict[str, Any], x: str | None) -> str:
    parts = [point["dataset"]] + ([point["variant"]] if point.get("variant") else [])
    parts += [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point["settings"].items() if k != x]
    return ", ".join(parts)


def _panels(payload: dict[str, Any]) -> tuple[str | None, dict[str, list[dict[str, Any]]]]:
    x = x_axis(payload)
    panels: dict[str, list[dict[str, Any]]] = {}
    for point in payload["points"]:
        title = _panel_title(point, x) if x is not None else "every point"
        panels.setdefault(title, []).append(point)
    return x, dict(list(panels.items())[:_MAX_PANELS])


def _figure(n: int, *, cols: int = 3, width: float = 3.2, height: float = 2.2
            ) -> tuple[Figure, list[Any]]:
    cols = max(1, min(cols, n))
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(0.7 + cols * (width + 0.45), 0.55 + rows * (height + 0.75)))
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    fig.subplots_adjust(left=0.7 / fig.get_figwidth(), right=0.98, top=0.93, bottom=0.2,
                        wspace=0.3, hspace=0.75)
    return fig, axes


def _draw(ax: Any, points: list[dict[str, Any]], methods: list[str], x: str | None,
          series: Series) -> None:
    xs = [p["settings"][x] for p in points] if x is not None else list(range(len(points)))
    ticks = sorted(set(xs)) if x is not None else xs
    position = {v: i for i, v in enumerate(ticks)}
    for j, method in enumerate(methods):
        color = _COLORS[j % len(_COLORS)]
        shift = (j - (len(methods) - 1) / 2) * 0.07
        found = [(position[v], series(p, method)) for v, p in zip(xs, points, strict=True)]
        rows = sorted((at, value) for at, value in found if value is not None)
        if not rows:
            continue
        pos = np.array([at for at, _ in rows], dtype=float) + shift
        values = [value for _, value in rows]
        ax.plot(pos, [v[0] for v in values], color=color, linewidth=0.9, alpha=0.7)
        for xp, (mean, low, high, strong) in zip(pos, values, strict=True):
            if low is not None and high is not None:
                ax.vlines(xp, low, high, color=color, linewidth=1)
            ax.plot([xp], [mean], marker="o", markersize=4, color=color,
                    markerfacecolor=color if strong else "white")
    labels = [f"{v:g}" if isinstance(v, float) else str(v) for v in ticks]
    if x is None:
        labels = [p["name"] for p in points]
    ax.set_xticks(range(len(ticks)), labels, rotation=0 if x is not None else 30,
                  ha="center" if x is not None else "right")
    ax.set_xlim(-0.5, len(ticks) - 0.5)
    ax.set_xlabel(x or "")


def _grid_figure(payload: dict[str, Any], methods: list[str], series: Series, ylabel: str,
                 *, zero: bool) -> Figure | None:
    if not methods:
        return None
    with mpl.rc_context(_STYLE):
        x, panels = _panels(payload)
        fig, axes = _figure(len(panels))
        for ax, (title, points) in zip(axes, panels.items(), strict=True):
            if zero:
                ax.axhline(0.0, color="black", linewidth=0.8)
            _draw(ax, points, methods, x, series)
            ax.set_title(title, loc="left")
            ax.set_ylabel(ylabel)
        handles = [Line2D([], [], color=_COLORS[j % len(_COLORS)], marker="o", label=m)
                   for j, m in enumerate(methods)]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(methods), 7))
    return fig


def _methods(payload: dict[str, Any], role: str | None = None) -> list[str]:
    found: dict[str, None] = {}
    for point in payload["points"]:
        for row in point["comparisons"]:
            if role is None or row["role"] == role:
                found[row["method"]] = None
    return list(found)


def gains_figure(payload: dict[str, Any], role: str) -> Figure | None:
    """Gain (candidate minus reference) on the primary metric, per point and method."""
    primary = payload["primary_metric"]

    def series(point: dict[str, Any], method: str
               ) -> tuple[float, float | None, float | None, bool] | None:
        row = next((r for r in point["comparisons"] if r["method"] == method
                    and r["role"] == role and r["metric"] == primary), None)
        if row is None or row["mean_diff"] is None:
            return None
        return (row["mean_diff"], row["ci_low"], row["ci_high"],
                row.get("verdict_study") in (BETTER, WORSE))

    reference = "hard-label model" if role == "hard_label" else "best simple alternative"
    return _grid_figure(payload, _methods(payload, role), series,
                        f"{primary}: gain over {reference}", zero=True)


def levels_figure(payload: dict[str, Any], metric: str) -> Figure | None:
    """Each method's test ``metric`` (mean and interval over folds) per point."""
    def series(point: dict[str, Any], method: str
               ) -> tuple[float, float | None, float | None, bool] | None:
        value = point["metrics"].get(point["outputs"].get(method, method), {}).get(metric)
        if value is None:
            return None
        return value["mean"], value["ci_low"], value["ci_high"], True

    methods = [m for m in dict.fromkeys(m for p in payload["points"] for m in p["outputs"])
               if m != "majority" and any(series(p, m) is not None for p in payload["points"])]
    return _grid_figure(payload, methods, series, f"test {metric}", zero=False)


def _member_groups(payload: dict[str, Any]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Panel title -> (line label, point): lines are the variants (or, without variants,
    the first grid axis's values), panels the datasets and the other settings."""
    axes = payload.get("axes", [])
    by_variant = any(p.get("variant") for p in payload["points"])
    line_axis = None if by_variant or not axes else axes[0]
    panels: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for point in payload["points"]:
        rest = [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point["settings"].items()
                if k != line_axis]
        title = ", ".join([point["dataset"], *rest])
        label = point["variant"] if by_variant else (
            f"{line_axis.rsplit('.', 1)[-1]}={point['settings'][line_axis]}"
            if line_axis else point["name"])
        panels.setdefault(title, []).append((str(label), point))
    return panels


def members_figure(payload: dict[str, Any]) -> Figure | None:
    """Member k minus the first member (primary metric, 95% interval): a panel per method
    and group of settings, a line per variant (or per value of the first grid axis)."""
    points = payload["points"]
    methods = list(dict.fromkeys(m for p in points for m, rows in p["members"].items()
                                 if len(rows) > 2))
    groups = _member_groups(payload)
    if not methods or max(len(g) for g in groups.values()) > MAX_MEMBER_LINES \
            or len(methods) * len(groups) > _MAX_PANELS:
        return None
    panels = [(m, title, lines) for m in methods for title, lines in groups.items()]
    with mpl.rc_context(_STYLE):
        fig, axes = _figure(len(panels), cols=2, width=4.2, height=2.6)
        for ax, (method, title, lines) in zip(axes, panels, strict=True):
            _member_panel(ax, method, lines, _first(points, method))
            key = next((r["key"] for p in points for r in p["members"].get(method, [])), "")
            ax.set_title(f"{method}, {title}", loc="left")
            ax.set_xlabel(key)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(f"{payload['primary_metric']}: {key} k minus "
                          f"{key} {_first(points, method)}")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4))
    return fig


def _member_panel(ax: Any, method: str, lines: list[tuple[str, dict[str, Any]]],
                  first: int) -> None:
    ax.axhline(0.0, color="black", linewidth=0.8)
    for j, (label, point) in enumerate(lines):
        rows = [r for r in point["members"].get(method, []) if r["vs_first"]]
        if not rows:
            continue
        color = _COLORS[j % len(_COLORS)]
        idx = np.array([r["index"] for r in rows], dtype=float) + 0.04 * j
        diff = [r["vs_first"] for r in rows]
        start = first + 0.04 * j  # the reference member: 0 by definition
        ax.plot([start, *idx], [0.0, *(d["mean_diff"] for d in diff)], color=color,
                marker="o", markersize=3, linewidth=0.9, label=label)
        for xp, d in zip(idx, diff, strict=True):
            if d["ci_low"] is not None and d["ci_high"] is not None:
                ax.vlines(xp, d["ci_low"], d["ci_high"], color=color, linewidth=0.8)


def _first(points: list[dict[str, Any]], method: str) -> int:
    return min((r["index"] for p in points for r in p["members"].get(method, [])), default=0)

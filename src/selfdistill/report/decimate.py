"""Fewer points for long series, so a 10M-bar figure draws as fast as a 20k-bar one.

A figure is about 1,000 pixels wide: a line of millions of points paints the same
pixels as one of a few thousand chosen well. Two reductions, both deterministic:

* :func:`minmax_indices` keeps, of a line, its first and last point and the lowest and
  highest point of each of equal slices (min/max decimation): every peak and trough
  of the full series, so the drawn envelope is the true one (an equity curve's worst
  drawdown stays on the chart, unlike with striding).
* :func:`majority_runs` shades a class series (regimes) by the most frequent class of
  each of equal slices of bars when there are more bars than slices.

Both return the input unchanged (every point, every run) when it is short enough.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

__all__ = ["MAX_LINE_POINTS", "MAX_SPANS", "majority_runs", "minmax_indices", "runs"]

#: Points kept of a long line (a few per pixel of the widest figure).
MAX_LINE_POINTS = 4000
#: Slices a long regime series is shaded by.
MAX_SPANS = 2000


def minmax_indices(values: np.ndarray, max_points: int = MAX_LINE_POINTS) -> np.ndarray:
    """Ascending indices of at most ``max_points`` points of ``values`` that keep its
    shape: the first, the last, and the minimum and maximum of each equal slice.

    Args:
        values: (N,) the line's y values, in drawing order.
        max_points: at most this many indices (at least 4).

    Returns:
        (M,) int64 indices, M <= max_points; ``arange(N)`` when N <= max_points.

    >>> minmax_indices(np.array([0.0, 5.0, 1.0, -3.0, 2.0, 2.5, 1.0]), 4).tolist()
    [0, 1, 3, 6]
    """
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4, not {max_points}")
    y = np.asarray(values)
    n = len(y)
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    slices = (max_points - 2) // 2
    edges = np.linspace(1, n - 1, slices + 1).astype(np.int64)  # inner points only
    keep = [np.int64(0)]
    for lo, hi in pairwise(edges):
        if hi > lo:
            part = y[lo:hi]
            keep += [lo + np.argmin(part), lo + np.argmax(part)]
    keep.append(np.int64(n - 1))
    return np.unique(np.array(keep, dtype=np.int64))


def runs(codes: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end exclusive, class) of each run of equal consecutive values.

    >>> runs(np.array([2, 2, 0, 0, 0, 1]))
    [(0, 2, 2), (2, 5, 0), (5, 6, 1)]
    """
    codes = np.asarray(codes)
    if len(codes) == 0:
        return []
    edges = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(codes)]])
    return [(int(s), int(e), int(codes[s])) for s, e in zip(starts, ends, strict=True)]


def majority_runs(x: np.ndarray, codes: np.ndarray, max_spans: int = MAX_SPANS
                  ) -> list[tuple[float, float, int]]:
    """(left, width, class) spans shading ``codes`` over positions ``x``.

    With at most ``max_spans`` bars every run of equal classes is a span (exact);
    beyond, the bars are cut into ``max_spans`` equal slices and each slice is shaded
    by its most frequent class (ties: the lower class id), neighbouring slices of one
    class merged.

    Args:
        x: (N,) increasing positions (matplotlib date numbers).
        codes: (N,) non-negative class ids.
        max_spans: slices beyond which the series is reduced.
    """
    x = np.asarray(x, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    n = len(codes)
    if n == 0:
        return []
    step = float(np.median(np.diff(x))) if n > 1 else 1.0
    if n <= max_spans:
        return [(x[s], x[e - 1] - x[s] + step, k) for s, e, k in runs(codes)]
    width = int(codes.max()) + 1
    starts = np.linspace(0, n, max_spans + 1).astype(np.int64)[:-1]  # (S,) first bar
    slice_of = np.searchsorted(starts, np.arange(n), side="right") - 1  # (N,)
    counts = np.bincount(slice_of * width + codes, minlength=max_spans * width)
    mode = counts.reshape(max_spans, width).argmax(axis=1)  # (S,)
    left = x[starts]
    right = np.append(x[starts[1:]], x[-1] + step)
    return [(left[s], right[e - 1] - left[s], k) for s, e, k in runs(mode)]

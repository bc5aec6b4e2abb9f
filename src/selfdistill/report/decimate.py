"""Fewer points for long series, so a 10M-bar figure draws as fast as a 20k-bar one.

A figure is about 1,000 pixels wide: a line of millions of points paints the same
pixels as one of a few thousand chosen well. Two reductions, both deterministic:

* :func:`minmax_indices` keeps, of a line, its first and last point and the lowest and
  highest point of each of equal slices (min/max decimation): every peak and trough
  of the full series, so the drawn envelope is the true one (an equity curve's worst
  drawdown stays on the chart, unlike with striding).
* :class:`LineSlices` and :class:`ClassSlices` do the same for a series read chunk by
  chunk, rows in any order (a 10M-bar price series is never held whole): per equal time
  slice the lowest and highest close with their times, or the rows of each regime (the
  slice is shaded by its most frequent one).

All keep the input as it is (every point, every run) when it is short enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

__all__ = ["MAX_LINE_POINTS", "MAX_SPANS", "ClassSlices", "Line", "LineSlices", "class_spans",
           "minmax_indices", "reduce_line", "runs"]

#: Points kept of a long line (a few per pixel of the widest figure).
MAX_LINE_POINTS = 4000
#: Time slices a long regime series is shaded by.
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


@dataclass(frozen=True)
class Line:
    """A line reduced for drawing: its kept points, and how many points it had."""

    x: np.ndarray
    y: np.ndarray
    points: int


def reduce_line(x: np.ndarray, y: np.ndarray, max_points: int = MAX_LINE_POINTS) -> Line:
    """The points of (``x``, ``y``) that :func:`minmax_indices` keeps.

    >>> reduce_line(np.arange(7), np.array([0.0, 5.0, 1.0, -3.0, 2.0, 2.5, 1.0]), 4).x
    array([0, 1, 3, 6])
    """
    keep = minmax_indices(y, max_points)
    return Line(np.asarray(x)[keep], np.asarray(y)[keep], len(y))


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


def class_spans(x: np.ndarray, codes: np.ndarray) -> list[tuple[float, float, int]]:
    """(left, width, class) of every run of equal classes at increasing positions ``x``
    (a run ends where the next begins; the last one is one median step wide).

    >>> class_spans(np.arange(5.0), np.array([1, 1, 0, 2, 2]))
    [(0.0, 2.0, 1), (2.0, 1.0, 0), (3.0, 2.0, 2)]
    """
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return []
    step = float(np.median(np.diff(x))) if len(x) > 1 else 1.0
    return [(float(x[s]), float(x[e - 1] - x[s] + step), k) for s, e, k in runs(codes)]


class _Slices:
    """Rows fed chunk by chunk, in any order, into ``slices`` equal time slices of
    [start, end] (int64 nanoseconds); rows outside are dropped. Series of at most
    ``exact`` rows are also kept whole."""

    def __init__(self, start: int, end: int, slices: int, exact: int) -> None:
        self.start, self.end, self.slices, self.exact = int(start), int(end), slices, exact
        self.width = max(1.0, (self.end - self.start + 1) / slices)  # ns per slice
        self.rows = 0
        self._raw: list[tuple[np.ndarray, np.ndarray]] | None = []

    def _take(self, times: np.ndarray, values: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(times, values, slice index) of the rows in [start, end]; keeps short series."""
        t = np.asarray(times).astype("datetime64[ns]").view(np.int64)
        inside = (t >= self.start) & (t <= self.end)
        t, v = t[inside], np.asarray(values)[inside]
        self.rows += len(t)
        if self._raw is not None:
            self._raw = [*self._raw, (t, v)] if self.rows <= self.exact else None
        at = np.minimum(((t - self.start) / self.width).astype(np.int64), self.slices - 1)
        return t, v, at

    def _whole(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Every row in time order, when the series was short; None otherwise."""
        if self._raw is None:
            return None
        t = np.concatenate([r[0] for r in self._raw]) if self._raw else np.zeros(0, np.int64)
        v = np.concatenate([r[1] for r in self._raw]) if self._raw else np.zeros(0)
        order = np.argsort(t, kind="stable")
        return t[order], v[order]


class LineSlices(_Slices):
    """A line reduced while read: per slice its lowest and highest point (with their
    times), plus the first and last point; every point when at most ``exact``.

    >>> line = LineSlices(0, 99, slices=2, exact=4)
    >>> line.add(np.array([90, 10, 40, 60, 99, 0]), np.array([5.0, -1.0, 3.0, 7.0, 2.0, 1.0]))
    >>> line.line().x.view(np.int64).tolist(), line.line().y.tolist()
    ([0, 10, 40, 60, 99], [1.0, -1.0, 3.0, 7.0, 2.0])
    """

    def __init__(self, start: int, end: int, slices: int = MAX_LINE_POINTS // 2,
                 exact: int = MAX_LINE_POINTS) -> None:
        super().__init__(start, end, slices, exact)
        self._low = np.full(slices, np.inf)
        self._high = np.full(slices, -np.inf)
        self._low_t = np.zeros(slices, np.int64)
        self._high_t = np.zeros(slices, np.int64)
        self._ends: list[tuple[int, float]] = []  # first and last point seen so far

    def add(self, times: np.ndarray, values: np.ndarray) -> None:
        """(N,) times (datetime64) and values of rows in any order (non-finite values are
        left out)."""
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        t, v, at = self._take(np.asarray(times)[finite], values[finite])
        if len(t) == 0:
            return
        if np.any(at[1:] < at[:-1]):  # rows out of time order: group them by slice
            order = np.argsort(at, kind="stable")
            t, v, at = t[order], v[order], at[order]
        starts = np.flatnonzero(np.diff(at, prepend=-1))  # (S,) each slice's first row
        lengths = np.diff(np.append(starts, len(at)))
        slot = at[starts]
        for reduce, best, best_t, better in ((np.minimum, self._low, self._low_t, np.less),
                                             (np.maximum, self._high, self._high_t,
                                              np.greater)):
            extreme = reduce.reduceat(v, starts)  # (S,)
            hits = np.flatnonzero(v == np.repeat(extreme, lengths))
            where = hits[np.searchsorted(hits, starts)]  # the first row at each extreme
            wins = better(extreme, best[slot])
            best[slot[wins]], best_t[slot[wins]] = extreme[wins], t[where][wins]
        ends = [*self._ends, (int(t.min()), float(v[t.argmin()])),
                (int(t.max()), float(v[t.argmax()]))]
        self._ends = [min(ends), max(ends)]

    def line(self) -> Line:
        """The kept points in time order (x: naive UTC datetime64[ns])."""
        whole = self._whole()
        if whole is not None:
            return Line(whole[0].view("datetime64[ns]"), whole[1], self.rows)
        used = np.isfinite(self._low)
        points = dict.fromkeys([*self._ends, *zip(self._low_t[used].tolist(),
                                                  self._low[used].tolist(), strict=True),
                                *zip(self._high_t[used].tolist(),
                                     self._high[used].tolist(), strict=True)])
        t, v = map(np.array, zip(*sorted(points), strict=True))
        return Line(t.astype(np.int64).view("datetime64[ns]"), v.astype(np.float64), self.rows)


class ClassSlices(_Slices):
    """A class series (regimes) reduced while read: the rows of each class per slice;
    every row when at most ``exact``."""

    def __init__(self, start: int, end: int, classes: int, slices: int = MAX_SPANS,
                 exact: int = MAX_SPANS) -> None:
        super().__init__(start, end, slices, exact)
        self.classes = classes
        self._counts = np.zeros(slices * classes, np.int64)  # (slices x classes,)

    def add(self, times: np.ndarray, codes: np.ndarray) -> None:
        """(N,) times (datetime64) and class ids of rows in any order (ids outside
        ``0 .. classes - 1`` are left out)."""
        codes = np.asarray(codes, dtype=np.int64)
        ok = (codes >= 0) & (codes < self.classes)
        _, k, at = self._take(np.asarray(times)[ok], codes[ok])
        self._counts += np.bincount(at * self.classes + k, minlength=len(self._counts))

    def spans(self) -> list[tuple[float, float, int]]:
        """(left, width, class) in nanoseconds: every run of equal classes when the
        series was short, else runs of slices with the same most frequent class (ties:
        the lower id); slices without rows are not shaded."""
        whole = self._whole()
        if whole is not None:
            return class_spans(whole[0].astype(np.float64), whole[1])
        counts = self._counts.reshape(self.slices, self.classes)
        used = np.flatnonzero(counts.sum(axis=1))
        mode = counts[used].argmax(axis=1)
        breaks = np.flatnonzero((np.diff(used) != 1) | (np.diff(mode) != 0)) + 1
        out = []
        for lo, hi in zip([0, *breaks], [*breaks, len(used)], strict=True):
            left = self.start + used[lo] * self.width
            out.append((left, (used[hi - 1] + 1 - used[lo]) * self.width, int(mode[lo])))
        return out

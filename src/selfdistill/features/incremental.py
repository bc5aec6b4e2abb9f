"""Causal features one bar at a time: the row :func:`compute_features` gives, without the history.

:class:`IncrementalFeatures` keeps the last ``warmup + 2`` bars in ring buffers and,
for each new bar, computes the feature row of that bar from them. Every feature is a
trailing window of at most ``warmup`` bars
(:func:`~selfdistill.features.causal.feature_warmup`), so these bars hold everything
the newest row reads; the result equals the last row of ``compute_features`` on the
full history (tests/test_live_features.py checks every row of long series with gaps
to 1e-9). Gaps follow the same rule: a bar flagged ``gap_before`` makes every
return-based window that straddles it NaN.

One update costs a few dozen NumPy calls on arrays of ``warmup`` values (tens of
microseconds), whatever the length of the history, and memory does not grow.

Example:
    >>> cfg = FeaturesConfig(return_windows=[1, 2], volatility_windows=[2], ma_windows=[2],
    ...                      volume_window=2, range_window=2, skew_window=3, volume="on")
    >>> feats = IncrementalFeatures(cfg)
    >>> for close in (100.0, 101.0, 102.0, 101.5):
    ...     row = feats.update(close, close + 1, close - 1, close, 10.0)  # (F,)
    >>> round(float(row[feats.names.index("ret_1")]), 5)  # log(101.5 / 102)
    -0.00491
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from selfdistill.config import FeaturesConfig
from selfdistill.errors import DataError
from selfdistill.features.causal import (
    _FLAT_VARIANCE,
    _unique,
    feature_names,
    feature_warmup,
    features_config,
)

__all__ = ["IncrementalFeatures"]


class _Ring:
    """The last ``size`` values of a series, readable as one contiguous view.

    Each value is written twice (at ``i`` and ``i + size``), so the newest ``n`` values
    are always the slice ``buf[i + size - n : i + size]``: no copy, no roll.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = np.full(2 * size, np.nan)
        self.pos = 0

    def push(self, value: float) -> None:
        self.buf[self.pos] = self.buf[self.pos + self.size] = value
        self.pos = (self.pos + 1) % self.size

    def last(self, n: int) -> np.ndarray:
        """(n,) the newest ``n`` values, oldest first."""
        end = self.pos + self.size
        return self.buf[end - n:end]

    def back(self, k: int) -> float:
        """The value ``k`` bars before the newest (0: the newest)."""
        return float(self.buf[self.pos + self.size - 1 - k])


class IncrementalFeatures:
    """The causal feature row of each new bar, from a bounded window of past bars.

    Args:
        cfg: the feature settings (a FeaturesConfig or the mapping a model file stores).
            ``volume`` must be decided (``on`` / ``off``): ``auto`` depends on the whole
            history, so pin it first (:func:`~selfdistill.features.causal.pin_volume`).

    Attributes:
        names: the feature columns of each row, in :func:`feature_names` order.
        bars: bars seen since construction or the last :meth:`reset`.
    """

    def __init__(self, cfg: FeaturesConfig | Mapping[str, Any]) -> None:
        self.cfg = features_config(cfg)
        if self.cfg.volume == "auto":
            raise DataError("incremental features need features.volume decided (on or off); "
                            "'auto' depends on the whole history (pin it with pin_volume)")
        self.names = feature_names(self.cfg)
        self.warmup = feature_warmup(self.cfg)
        size = self.warmup + 2
        self._returns = _unique(self.cfg.return_windows)
        self._vols = _unique(self.cfg.volatility_windows)
        self._mas = _unique(self.cfg.ma_windows)
        self._series = {k: _Ring(size) for k in ("log_close", "close", "range", "volume",
                                                  "r1", "gaps")}
        self.bars = 0
        self._gaps = 0  # cumulative gap_before marks, as compute_features counts them

    def reset(self) -> None:
        """Forget every bar (the next update starts a new history)."""
        for ring in self._series.values():
            ring.buf.fill(np.nan)
            ring.pos = 0
        self.bars = 0
        self._gaps = 0

    def update(self, open_: float, high: float, low: float, close: float, volume: float,
               gap_before: bool = False) -> np.ndarray:
        """Add one closed bar and return its (F,) feature row (NaN where incomplete).

        Args:
            open_, high, low, close, volume: the bar (``open_`` is not a feature input but
                is taken for symmetry with the candle columns).
            gap_before: candles are missing right before this bar.
        """
        s = self._series
        log_close = math.log(close)
        prev = s["log_close"].back(0) if self.bars else math.nan
        self._gaps += bool(gap_before) and self.bars > 0
        r1 = math.nan if (self.bars == 0 or gap_before) else log_close - prev
        for name, value in (("log_close", log_close), ("close", close),
                            ("range", math.log(high / low)), ("volume", volume),
                            ("r1", r1), ("gaps", float(self._gaps))):
            s[name].push(value)
        self.bars += 1
        values = self._returns_row() + self._bar_row(high, low, close, volume) + self._trend_row()
        return np.asarray(values, dtype=np.float64)

    # ------------------------------------------------------------------ the features

    def _crosses_gap(self, span: int) -> bool:
        """A gap between bar ``t - span`` and bar ``t`` (compute_features' _crosses_gap)."""
        if span <= 0 or span >= self.bars:
            return False
        gaps = self._series["gaps"]
        return gaps.back(0) - gaps.back(span) > 0

    def _mean(self, name: str, window: int) -> float:
        """Trailing mean of ``window`` values; NaN until full or when one is NaN."""
        if self.bars < window:
            return math.nan
        return float(self._series[name].last(window).sum()) / window  # == np.mean, faster

    def _returns_row(self) -> list[float]:
        log_close = self._series["log_close"]
        out = []
        for w in self._returns:
            ok = self.bars > w and not self._crosses_gap(w)
            out.append(log_close.back(0) - log_close.back(w) if ok else math.nan)
        for w in self._vols:
            r = self._series["r1"].last(w)
            out.append(math.sqrt(float((r * r).sum()) / w) if self.bars >= w else math.nan)
        return out

    def _bar_row(self, high: float, low: float, close: float, volume: float) -> list[float]:
        out = [self._series["range"].back(0), self._mean("range", self.cfg.range_window)]
        if self.cfg.volume != "off":
            mean_volume = self._mean("volume", self.cfg.volume_window)
            out.append(math.log1p(volume / mean_volume) if mean_volume > 0 else math.nan)
        out.append((close - low) / (high - low) if high > low else 0.5)
        return out

    def _trend_row(self) -> list[float]:
        out = []
        for w in self._mas:
            mean_close = self._mean("close", w)
            gap = self._crosses_gap(w - 1)
            out.append(math.nan if gap or mean_close != mean_close
                       else self._series["log_close"].back(0) - math.log(mean_close))
        out.append(self._skew(self.cfg.skew_window))
        return out

    def _skew(self, window: int) -> float:
        """Population skewness of the last ``window`` 1-bar returns (0 for a flat window)."""
        if self.bars < window:
            return math.nan
        r = self._series["r1"].last(window)
        r2 = r * r
        mean, raw2 = float(r.sum()) / window, float(r2.sum()) / window
        m2 = raw2 - mean**2
        if m2 != m2:
            return math.nan
        if m2 <= _FLAT_VARIANCE:
            return 0.0
        m3 = float((r2 * r).sum()) / window - 3 * mean * raw2 + 2 * mean**3
        return m3 / m2**1.5

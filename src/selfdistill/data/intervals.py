"""Bar intervals, spelled as Bybit spells them.

``"1" "3" "5" "15" "30" "60" "120" "240" "360" "720"`` are minutes, ``"D"`` a
day, ``"W"`` a week and ``"M"`` a calendar month (which has no fixed length, so
:func:`interval_to_timedelta` returns None for it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from selfdistill.config.sections import INTERVALS  # the schema owns the spellings
from selfdistill.errors import ConfigError

__all__ = ["INTERVALS", "infer_interval", "interval_to_timedelta", "periods_per_year"]


_MINUTES = {"D": 24 * 60, "W": 7 * 24 * 60}
# A 24/7 market: 365 days a year; weeks use the mean year of 365.25 days.
_DAYS_PER_YEAR = 365.0
_WEEKS_PER_YEAR = 365.25 / 7.0
_MONTH_DAYS = (28, 31)


def _check(interval: str) -> str:
    text = str(interval).strip()
    if text not in INTERVALS:
        raise ConfigError(
            f"interval {interval!r} is not one of {', '.join(INTERVALS)} "
            "(minutes, or D / W / M for day / week / month)"
        )
    return text


def interval_to_timedelta(interval: str) -> pd.Timedelta | None:
    """The length of one bar.

    Args:
        interval: a Bybit interval spelling, e.g. "60" or "D".

    Returns:
        The bar length, or None for "M" (calendar months differ in length).

    Raises:
        ConfigError: ``interval`` is not one of :data:`INTERVALS`.

    Example:
        >>> interval_to_timedelta("240")
        Timedelta('0 days 04:00:00')
    """
    text = _check(interval)
    if text == "M":
        return None
    return pd.Timedelta(minutes=_MINUTES.get(text) or int(text))


def periods_per_year(interval: str) -> float:
    """Bars per year in a market that trades around the clock (for annualising).

    "60" -> 8760 (365 days), "D" -> 365, "W" -> 52.18 (365.25 / 7), "M" -> 12.

    Raises:
        ConfigError: ``interval`` is not one of :data:`INTERVALS`.
    """
    text = _check(interval)
    if text == "M":
        return 12.0
    if text == "W":
        return _WEEKS_PER_YEAR
    step = interval_to_timedelta(text)
    assert step is not None
    return _DAYS_PER_YEAR * 86_400.0 / step.total_seconds()


def infer_interval(index: pd.DatetimeIndex) -> str | None:
    """The interval whose length is the most common spacing between bars.

    Gaps do not disturb it as long as most neighbours are one bar apart.

    Args:
        index: candle open times (sorted or not; duplicates are ignored).

    Returns:
        A spelling from :data:`INTERVALS`, or None when there are fewer than two
        distinct timestamps or the common spacing is no Bybit interval.
    """
    spacings = _spacings(pd.DatetimeIndex(index))
    if len(spacings) == 0:
        return None
    # Fast path: an interval that covers most spacings is the most common one.
    counts = {name: _count_matching(spacings, name) for name in INTERVALS}
    best = max(counts, key=lambda name: counts[name])
    if 2 * counts[best] > len(spacings):
        return best
    values, freq = np.unique(spacings, return_counts=True)
    common = int(values[np.argmax(freq)])
    return next((name for name in INTERVALS if _count_matching(np.array([common]), name)),
                None)


def _spacings(index: pd.DatetimeIndex) -> np.ndarray:
    """Positive gaps between consecutive distinct times, int64 nanoseconds."""
    ns = index.dropna().as_unit("ns").asi8
    if not index.is_monotonic_increasing:
        ns = np.sort(ns)
    diffs = np.diff(ns)
    return diffs[diffs > 0]


def _count_matching(spacings: np.ndarray, name: str) -> int:
    step = interval_to_timedelta(name)
    if step is None:  # calendar month: 28 to 31 days
        low, high = (pd.Timedelta(days=d).value for d in _MONTH_DAYS)
        return int(np.count_nonzero((spacings >= low) & (spacings <= high)))
    return int(np.count_nonzero(spacings == step.value))

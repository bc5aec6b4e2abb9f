"""What a kline request names, checked, and how a time range becomes request windows.

A :class:`MarketKey` (category, symbol, interval) is validated when it is built,
so a value like ``../x`` or ``btc/usdt`` can never reach a request or a file
path. Candle open times follow Bybit: minute intervals and ``D`` are aligned to
multiples of their length since the Unix epoch, ``W`` to Mondays 00:00 UTC,
``M`` to the first day of a month.

Ranges are half-open on candle open times: ``[start, end)`` holds the candles
that open at or after ``start`` and before ``end``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from selfdistill.data.intervals import INTERVALS, interval_to_timedelta
from selfdistill.errors import ConfigError

__all__ = [
    "CATEGORIES",
    "MAX_LIMIT",
    "MarketKey",
    "Window",
    "ceil_open",
    "floor_open",
    "parse_time",
    "plan_windows",
    "resolve_range",
    "to_ms",
    "validate_category",
    "validate_interval",
    "validate_symbol",
]

#: Bybit v5 product categories.
CATEGORIES: tuple[str, ...] = ("spot", "linear", "inverse")
#: The most candles Bybit returns for one kline request.
MAX_LIMIT = 1000

_SYMBOL = re.compile(r"^[A-Z0-9]{2,32}$")
_EPOCH = pd.Timestamp(0, tz="UTC")
_MONDAY = pd.Timestamp("1970-01-05", tz="UTC")  # weekly candles open on Mondays
TimeLike = str | datetime | pd.Timestamp


def validate_symbol(symbol: str) -> str:
    """Return ``symbol`` if it matches ``^[A-Z0-9]{2,32}$``, else raise ConfigError."""
    if isinstance(symbol, str) and _SYMBOL.fullmatch(symbol):
        return symbol
    hint = ""
    if isinstance(symbol, str) and _SYMBOL.fullmatch(symbol.upper()):
        hint = f"; did you mean {symbol.upper()!r}?"
    raise ConfigError(f"symbol {symbol!r} is not valid: use 2-32 upper-case letters and "
                      f"digits as Bybit spells it, e.g. 'BTCUSDT'{hint}")


def validate_interval(interval: str | int) -> str:
    """Return the interval spelling, or raise ConfigError listing :data:`INTERVALS`."""
    text = str(interval).strip()
    if text not in INTERVALS:
        raise ConfigError(f"interval {interval!r} is not one of {', '.join(INTERVALS)} "
                          "(minutes, or D / W / M for day / week / month)")
    return text


def validate_category(category: str) -> str:
    """Return ``category``, or raise ConfigError listing :data:`CATEGORIES`."""
    if category not in CATEGORIES:
        raise ConfigError(f"category {category!r} is not one of {', '.join(CATEGORIES)}")
    return category


@dataclass(frozen=True)
class MarketKey:
    """One candle series: (category, symbol, interval), validated on construction.

    Raises:
        ConfigError: a field is not valid (the message lists what is).
    """

    category: str
    symbol: str
    interval: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "category", validate_category(self.category))
        object.__setattr__(self, "symbol", validate_symbol(self.symbol))
        object.__setattr__(self, "interval", validate_interval(self.interval))

    def __str__(self) -> str:
        return f"{self.category} {self.symbol} {self.interval}"


def parse_time(value: TimeLike, *, name: str = "time") -> pd.Timestamp:
    """Parse a date or time as UTC (naive values are taken as UTC).

    Raises:
        ConfigError: ``value`` is not a date; the message names ``name``.
    """
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        stamp = None
    if not isinstance(stamp, pd.Timestamp) or pd.isna(stamp):
        raise ConfigError(f"{name} {value!r} is not a date or time; use ISO 8601 such as "
                          "2024-01-01, 2024-01-01T12:00 or 2024-01-01T12:00:00Z (UTC)")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def to_ms(stamp: pd.Timestamp) -> int:
    """Milliseconds since the Unix epoch (Bybit's time unit)."""
    return int(stamp.value // 1_000_000)


def floor_open(stamp: pd.Timestamp, interval: str) -> pd.Timestamp:
    """The open time of the candle that contains ``stamp``."""
    step = interval_to_timedelta(interval)
    if step is None:
        return pd.Timestamp(year=stamp.year, month=stamp.month, day=1, tz="UTC")
    anchor = _MONDAY if interval == "W" else _EPOCH
    return anchor + ((stamp - anchor) // step) * step


def next_open(open_time: pd.Timestamp, interval: str) -> pd.Timestamp:
    """The open time of the candle after the one opening at ``open_time``."""
    step = interval_to_timedelta(interval)
    return open_time + (pd.DateOffset(months=1) if step is None else step)


def ceil_open(stamp: pd.Timestamp, interval: str) -> pd.Timestamp:
    """The first candle open time at or after ``stamp``."""
    first = floor_open(stamp, interval)
    return first if first == stamp else next_open(first, interval)


def resolve_range(start: TimeLike, end: TimeLike | None, interval: str, *,
                  now: pd.Timestamp | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Turn user bounds into aligned open-time bounds ``[first, stop)`` of closed candles.

    Args:
        start: first time wanted; a candle opening before it is not included.
        end: exclusive end (None: now). Clamped to the open time of the candle
            still open at ``now``, which is never fetched.
        interval: the candle interval.
        now: the current time (default: the system clock).

    Returns:
        ``(first, stop)``; ``first >= stop`` when no closed candle lies in the range.

    Raises:
        ConfigError: a bound is not a date, ``start`` is not before ``end``, or
            ``start`` lies in the future.
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    begin = parse_time(start, name="start")
    finish = now if end is None else parse_time(end, name="end")
    if begin >= finish:
        raise ConfigError(f"start {begin.isoformat()} must be before end {finish.isoformat()}")
    if begin > now:
        raise ConfigError(f"start {begin.isoformat()} is in the future (now is "
                          f"{now.isoformat(timespec='seconds')})")
    first = ceil_open(begin, interval)
    stop = min(ceil_open(finish, interval), floor_open(now, interval))
    return first, stop


@dataclass(frozen=True)
class Window:
    """Consecutive candle slots asked for in one request.

    Attributes:
        first: open time of its first candle.
        end: open time right after its last candle (exclusive bound).
        count: candle slots in it, 1 to :data:`MAX_LIMIT`.
    """

    first: pd.Timestamp
    end: pd.Timestamp
    count: int


def plan_windows(first: pd.Timestamp, stop: pd.Timestamp, interval: str, *,
                 limit: int = MAX_LIMIT, newest_first: bool = False) -> list[Window]:
    """Split the aligned range ``[first, stop)`` into windows of at most ``limit`` candles.

    Args:
        first: an aligned open time (see :func:`ceil_open`).
        stop: exclusive aligned bound.
        interval: candle interval.
        limit: most candles per window.
        newest_first: order windows from ``stop`` backwards (for prepending to a store).

    Returns:
        Windows covering the range exactly, without overlap.
    """
    step = interval_to_timedelta(interval)
    if step is None:
        starts = pd.date_range(first, stop, freq="MS", inclusive="left")
        bounds = [*starts[::limit], stop]
        windows = [Window(a, b, min(limit, len(starts) - i * limit))
                   for i, (a, b) in enumerate(itertools.pairwise(bounds))]
    else:
        total = max(0, -(-(stop - first) // step))
        windows = [Window(first + i * step, first + min(i + limit, total) * step,
                          min(limit, total - i)) for i in range(0, total, limit)]
    return windows[::-1] if newest_first else windows

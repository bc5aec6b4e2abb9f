"""Deterministic synthetic Bybit candles for the fake server (tests/bybit_server.py).

Every value is a function of (category, symbol, interval, open time) only, so
any window of any history can be produced on its own, identically every time.
Open times follow Bybit: minute intervals and ``D`` aligned to the Unix epoch,
``W`` to Mondays, ``M`` to the first of the month.
"""

from __future__ import annotations

import calendar
import time
import zlib

import numpy as np
import pandas as pd

INTERVAL_MINUTES = {"1": 1, "3": 3, "5": 5, "15": 15, "30": 30, "60": 60, "120": 120,
                    "240": 240, "360": 360, "720": 720, "D": 1440, "W": 10080}
INTERVALS = (*INTERVAL_MINUTES, "M")
_MONDAY_MS = 4 * 86_400_000  # 1970-01-05, the first Monday: weekly candles open on Mondays
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)



def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64: a deterministic hash of uint64 values to uint64."""
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (z ^ (z >> np.uint64(31))) & _MASK


def _uniform(seed: int, index: np.ndarray, salt: int) -> np.ndarray:
    """Uniform [0, 1) numbers keyed by (seed, index, salt)."""
    with np.errstate(over="ignore"):
        keyed = index.astype(np.uint64) * np.uint64(0x100000001B3) + np.uint64(seed * 31 + salt)
        return (_mix(keyed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def open_times_ms(interval: str, first_ms: int, last_ms: int) -> np.ndarray:
    """Open times (ms) of the candles of ``interval`` opening in ``[first_ms, last_ms]``."""
    if interval == "M":
        months = pd.date_range(pd.Timestamp(first_ms, unit="ms", tz="UTC").floor("D"),
                               pd.Timestamp(last_ms, unit="ms", tz="UTC"), freq="MS")
        ms = months.as_unit("ms").asi8
        return ms[(ms >= first_ms) & (ms <= last_ms)]
    step = INTERVAL_MINUTES[interval] * 60_000
    anchor = _MONDAY_MS if interval == "W" else 0
    lo = anchor + -(-(first_ms - anchor) // step) * step
    return np.arange(lo, max(lo, last_ms + 1), step, dtype=np.int64)


def floor_ms(interval: str, stamp_ms: int) -> int:
    """Open time of the candle containing ``stamp_ms`` (how Bybit rounds ``start``)."""
    if interval == "M":
        t = time.gmtime(stamp_ms // 1000)
        return calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)) * 1000
    step = INTERVAL_MINUTES[interval] * 60_000
    anchor = _MONDAY_MS if interval == "W" else 0
    return anchor + (stamp_ms - anchor) // step * step


def next_open_ms(interval: str, times_ms: np.ndarray) -> np.ndarray:
    """Open times of the candles after those opening at ``times_ms``."""
    if interval == "M":
        opens = pd.DatetimeIndex(pd.to_datetime(times_ms, unit="ms", utc=True))
        return (opens + pd.DateOffset(months=1)).as_unit("ms").asi8
    return times_ms + INTERVAL_MINUTES[interval] * 60_000


def kline_rows(category: str, symbol: str, interval: str, times_ms: np.ndarray) -> list[list[str]]:
    """Deterministic candles opening at ``times_ms``, as Bybit strings, in the order given.

    Each value depends only on (category, symbol, interval, open time), so any
    window of the history can be served on its own.
    """
    seed = zlib.crc32(f"{category}|{symbol}|{interval}".encode())
    base = 100.0 + seed % 50_000

    def mid(ms: np.ndarray) -> np.ndarray:
        k = ms // 60_000
        wave = 0.08 * np.sin(k / 5000.0 + seed) + 0.01 * np.sin(k / 97.0)
        return base * np.exp(wave + 0.004 * (_uniform(seed, k, 1) - 0.5))

    times_ms = np.asarray(times_ms, dtype=np.int64)
    slot = times_ms // 60_000
    opens = np.round(mid(times_ms), 2)
    closes = np.round(mid(next_open_ms(interval, times_ms)), 2)
    highs = np.round(np.maximum(opens, closes) * (1 + 0.002 * _uniform(seed, slot, 2)), 2)
    lows = np.round(np.minimum(opens, closes) * (1 - 0.002 * _uniform(seed, slot, 3)), 2)
    volumes = np.round(1.0 + 500.0 * _uniform(seed, slot, 4), 3)
    turnovers = np.round(volumes * (opens + closes) / 2.0, 4)
    columns = [times_ms, opens, highs, lows, closes, volumes, turnovers]
    return [[str(row[0]), *map(repr, row[1:])]
            for row in zip(*(c.tolist() for c in columns), strict=True)]


def to_ms(stamp: str | pd.Timestamp) -> int:
    """Epoch milliseconds of a time (naive values are UTC)."""
    ts = pd.Timestamp(stamp)
    return int((ts.tz_localize("UTC") if ts.tzinfo is None else ts).value // 1_000_000)

"""Candle data: the Candles contract, file loaders, the synthetic market.

The Candles contract (a UTC ``open_time`` index and float64 OHLCV columns) is
checked by :func:`validate_candles`; every loader here returns validated candles.
"""

from __future__ import annotations

from selfdistill.data.candles import (
    CANDLE_COLUMNS,
    INTERVALS,
    find_gaps,
    gap_table,
    infer_interval,
    interval_to_timedelta,
    load_candles_file,
    load_csv,
    load_parquet,
    normalise_columns,
    periods_per_year,
    save_candles,
    validate_candles,
)

__all__ = [
    "CANDLE_COLUMNS",
    "INTERVALS",
    "find_gaps",
    "gap_table",
    "infer_interval",
    "interval_to_timedelta",
    "load_candles_file",
    "load_csv",
    "load_parquet",
    "normalise_columns",
    "periods_per_year",
    "save_candles",
    "validate_candles",
]

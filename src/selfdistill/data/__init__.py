"""Candle data: the Candles contract, file loaders, the synthetic market.

``from selfdistill.data import load_candles_file, generate_market`` covers most
uses; the Bybit client and the local store are in their own modules.

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
    normalise_columns,
    periods_per_year,
    validate_candles,
)
from selfdistill.data.files import load_candles_file, load_csv, load_parquet, save_candles
from selfdistill.data.sessions import GAP_POLICIES, apply_gap_policy
from selfdistill.data.synthetic import REGIME_NAMES, RegimeParams, generate_market

__all__ = [
    "CANDLE_COLUMNS",
    "GAP_POLICIES",
    "INTERVALS",
    "REGIME_NAMES",
    "RegimeParams",
    "apply_gap_policy",
    "find_gaps",
    "gap_table",
    "generate_market",
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

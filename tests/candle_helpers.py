"""Small hand-made candles for the causality tests of features and labels."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_candles(n: int, seed: int = 0, gaps: tuple[int, ...] = (), *,
                 noisy_bars: bool = True) -> pd.DataFrame:
    """Random-walk candles obeying the Candles contract, with optional gap marks.

    ``noisy_bars`` draws a small open gap and random wicks; without it the open is
    the previous close and the wicks are a fixed 0.2 %.
    """
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    if noisy_bars:
        open_ = open_ * np.exp(rng.normal(0.0, 0.001, n))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.003, n)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.003, n)))
    else:
        high = np.maximum(open_, close) * 1.002
        low = np.minimum(open_, close) * 0.998
    gap_before = np.zeros(n, dtype=bool)
    gap_before[list(gaps)] = True
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC", name="open_time")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.gamma(2.0, 10.0, n), "gap_before": gap_before},
                        index=index)


def scale_prices(candles: pd.DataFrame, factor: np.ndarray) -> pd.DataFrame:
    """Copy with open/high/low/close multiplied by ``factor`` (N,): stays a valid candle."""
    out = candles.copy()
    for col in ("open", "high", "low", "close"):
        out[col] = candles[col].to_numpy() * factor
    return out

"""Incremental features equal compute_features on the same candles, row for row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from selfdistill.config import FeaturesConfig
from selfdistill.data.candles import validate_candles
from selfdistill.errors import DataError
from selfdistill.features import compute_features
from selfdistill.features.incremental import IncrementalFeatures

SMALL = {"return_windows": [1, 4, 12], "volatility_windows": [5, 24], "ma_windows": [1, 12, 24],
         "volume_window": 24, "range_window": 12, "skew_window": 24}


def _rows(candles: pd.DataFrame, cfg: FeaturesConfig) -> np.ndarray:
    feats = IncrementalFeatures(cfg)
    gaps = (candles["gap_before"].to_numpy() if "gap_before" in candles.columns
            else np.zeros(len(candles), dtype=bool))
    cols = candles[["open", "high", "low", "close", "volume"]].to_numpy()
    return np.stack([feats.update(*row, gap_before=bool(g)) for row, g in zip(cols, gaps,
                                                                              strict=True)])


def _with_gaps(candles: pd.DataFrame, drop: list[int]) -> pd.DataFrame:
    kept = candles.drop(index=candles.index[drop]).drop(columns=["gap_before"], errors="ignore")
    return validate_candles(kept, interval="60", gaps="mark")


@pytest.mark.parametrize("volume", ["on", "off"])
@pytest.mark.parametrize("settings", [SMALL, {}], ids=["small", "defaults"])
def test_every_row_equals_compute_features(candles: pd.DataFrame, volume: str,
                                           settings: dict) -> None:
    cfg = FeaturesConfig(**settings, volume=volume)
    bars = _with_gaps(candles, [100, 101, 102, 250, 251, 400])
    expected = compute_features(bars, cfg).to_numpy()
    got = _rows(bars, cfg)
    assert bars["gap_before"].sum() == 3
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))  # warm-up and gaps alike
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert np.isfinite(got[-1]).all()


def test_gap_windows_are_nan_and_bar_local_features_survive(candles: pd.DataFrame) -> None:
    cfg = FeaturesConfig(**SMALL, volume="on")
    bars = _with_gaps(candles, [300])
    got = _rows(bars, cfg)
    names = IncrementalFeatures(cfg).names
    after = int(np.flatnonzero(bars["gap_before"].to_numpy())[0])
    assert np.isnan(got[after, names.index("ret_1")])  # a return across missing candles
    assert np.isnan(got[after + 3, names.index("ret_4")])
    assert np.isfinite(got[after + 4, names.index("ret_4")])  # the window is past the gap
    assert np.isfinite(got[after, names.index("range")])  # bar-local: kept


def test_flat_prices_give_zero_skew_like_compute_features() -> None:
    index = pd.date_range("2024-01-01", periods=80, freq="h", tz="UTC", name="open_time")
    flat = pd.DataFrame({"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0,
                         "volume": 5.0}, index=index)
    cfg = FeaturesConfig(**SMALL, volume="on")
    got = _rows(flat, cfg)
    expected = compute_features(flat, cfg).to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert got[-1, IncrementalFeatures(cfg).names.index("skew_24")] == 0.0


def test_memory_is_bounded_and_reset_starts_over(candles: pd.DataFrame) -> None:
    cfg = FeaturesConfig(**SMALL, volume="on")
    feats = IncrementalFeatures(cfg)
    cols = candles[["open", "high", "low", "close", "volume"]].to_numpy()
    for row in cols:
        feats.update(*row)
    sizes = {len(ring.buf) for ring in feats._series.values()}
    assert sizes == {2 * (feats.warmup + 2)}  # the ring never grows with the history
    feats.reset()
    first = feats.update(*cols[0])
    assert np.isnan(first[feats.names.index("ret_1")])
    assert feats.bars == 1


def test_volume_auto_is_refused() -> None:
    with pytest.raises(DataError, match="volume decided"):
        IncrementalFeatures(FeaturesConfig(volume="auto"))

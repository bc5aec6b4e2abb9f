"""The synthetic regime-switching market."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from selfdistill.data.candles import validate_candles
from selfdistill.data.synthetic import (
    REGIME_NAMES,
    RegimeParams,
    _ar1,
    generate_market,
    simulate_regimes,
)
from selfdistill.errors import ConfigError

N = 20_000


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, pd.Series]:
    return generate_market(N, seed=3)


def log_returns(candles: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(candles["close"].to_numpy()), prepend=np.log(candles["open"].iloc[0]))


def test_same_seed_same_market_other_seed_other_market() -> None:
    a, ra = generate_market(500, seed=11)
    b, rb = generate_market(500, seed=11)
    c, _rc = generate_market(500, seed=12)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_series_equal(ra, rb)
    assert not np.allclose(a["close"], c["close"])


def test_output_shape_index_and_regime_series(market: tuple[pd.DataFrame, pd.Series]) -> None:
    candles, regime = market
    assert len(candles) == N
    assert candles.index.equals(regime.index)
    assert candles.index[0] == pd.Timestamp("2022-01-01", tz="UTC")
    assert candles.attrs["interval"] == "60"
    assert not candles["gap_before"].any()
    assert regime.name == "regime"
    assert regime.dtype == np.int8
    assert set(np.unique(regime)) == {0, 1, 2}
    assert REGIME_NAMES == ("bull", "bear", "sideways")
    assert candles["open"].iloc[0] == 30_000.0


def test_ohlc_invariants_and_positivity(market: tuple[pd.DataFrame, pd.Series]) -> None:
    c = market[0]
    assert (c["low"] > 0).all()
    assert (c["volume"] > 0).all()
    assert (c["high"] >= np.maximum(c["open"], c["close"])).all()
    assert (c["low"] <= np.minimum(c["open"], c["close"])).all()
    assert (c["high"] > c["low"]).all()
    np.testing.assert_array_equal(c["open"].to_numpy()[1:], c["close"].to_numpy()[:-1])
    pd.testing.assert_frame_equal(validate_candles(c, interval="60", gaps="error"), c)


@pytest.mark.parametrize("persistence", [0.9, 0.98, 0.995])
def test_regime_persistence_matches_the_setting(persistence: float) -> None:
    regimes = simulate_regimes(200_000, persistence, np.random.default_rng(0))
    stay = np.mean(regimes[1:] == regimes[:-1])
    assert stay == pytest.approx(persistence, abs=3 * np.sqrt(persistence * (1 - persistence)
                                                              / 200_000) + 1e-4)
    switches = regimes[1:][regimes[1:] != regimes[:-1]]
    shares = np.bincount(switches, minlength=3) / len(switches)
    assert np.all(np.abs(shares - 1 / 3) < 0.05)  # symmetric: every regime entered alike


def test_persistence_edges() -> None:
    rng = np.random.default_rng(0)
    assert len(np.unique(simulate_regimes(1000, 1.0, rng))) == 1
    flips = simulate_regimes(1000, 0.0, rng)
    assert np.all(flips[1:] != flips[:-1])


def test_drift_orders_bull_above_sideways_above_bear(
        market: tuple[pd.DataFrame, pd.Series]) -> None:
    candles, regime = market
    r = log_returns(candles)
    mean = [r[regime.to_numpy() == k].mean() for k in range(3)]
    assert mean[0] > mean[2] > mean[1]
    assert mean[0] - mean[2] > 3e-4
    assert mean[2] - mean[1] > 3e-4


def test_volatility_clusters_within_regimes(market: tuple[pd.DataFrame, pd.Series]) -> None:
    candles, regime = market
    r = np.abs(log_returns(candles))
    labels = regime.to_numpy()
    for k in range(3):
        same = (labels[1:] == k) & (labels[:-1] == k)
        lag1 = np.corrcoef(r[1:][same], r[:-1][same])[0, 1]
        assert lag1 > 0.05, f"{REGIME_NAMES[k]}: lag-1 autocorrelation of |r| is {lag1:.3f}"
    sd = [np.log(r[labels == k] + 1e-12).mean() for k in range(3)]
    assert sd[1] > sd[0] > sd[2]  # bear wildest, sideways calmest


def test_volume_is_higher_in_trending_regimes(market: tuple[pd.DataFrame, pd.Series]) -> None:
    candles, regime = market
    med = candles["volume"].groupby(regime.to_numpy()).median()
    assert min(med[0], med[1]) > 1.3 * med[2]


def test_regimes_are_learnable_but_not_given_away(
        market: tuple[pd.DataFrame, pd.Series]) -> None:
    """A linear model on trailing (causal) features: clearly above chance, far from 100 %."""
    candles, regime = market
    close, r = np.log(candles["close"]), pd.Series(log_returns(candles), index=candles.index)
    feats = pd.DataFrame({f"ret{w}": close.diff(w) for w in (6, 24, 96)})
    feats["vol24"] = np.log(r.rolling(24).std())
    feats["volume24"] = np.log(candles["volume"]).rolling(24).mean()
    ok = feats.notna().all(axis=1).to_numpy()
    x, y = feats.to_numpy()[ok], regime.to_numpy()[ok]
    cut = int(0.6 * len(y))
    mu, sd = x[:cut].mean(0), x[:cut].std(0)
    model = LogisticRegression(max_iter=500).fit((x[:cut] - mu) / sd, y[:cut])
    accuracy = model.score((x[cut:] - mu) / sd, y[cut:])
    majority = np.bincount(y[cut:]).max() / len(y[cut:])
    assert accuracy > majority + 0.1
    assert accuracy < 0.9


def test_the_market_of_a_seed_never_changes() -> None:
    """Pinned values (drawn before the in-place rewrite): same seed, same bars, forever."""
    candles, regime = generate_market(3000, seed=7)
    last = candles.iloc[-1]
    assert [float(last[k]) for k in ("open", "high", "low", "close", "volume")] == [
        3219.3060908158577, 3237.9772756395464, 3219.2112936224826, 3237.894583451378,
        496.4517510433585]
    assert int(regime.iloc[-1]) == 2
    assert int(regime.sum()) == 3126


def test_ar1_matches_the_recursion() -> None:
    rng = np.random.default_rng(1)
    level, noise = rng.normal(size=1000), rng.normal(size=1000)
    expected, prev = np.empty(1000), level[0]
    for t in range(1000):
        prev = 0.97 * prev + 0.03 * level[t] + noise[t]
        expected[t] = prev
    np.testing.assert_allclose(_ar1(level, 0.97, noise), expected, rtol=1e-10, atol=1e-10)


def test_custom_params_interval_and_start() -> None:
    params = [RegimeParams(0.01, 0.001, 5.0), RegimeParams(-0.01, 0.001, 5.0),
              RegimeParams(0.0, 0.001, 1.0)]
    candles, regime = generate_market(300, seed=0, params=params, interval="D",
                                      start="2023-06-01T00:00:00+02:00", persistence=0.9)
    assert candles.index[0] == pd.Timestamp("2023-05-31 22:00", tz="UTC")
    assert candles.attrs["interval"] == "D"
    r = log_returns(candles)
    assert r[regime.to_numpy() == 0].mean() > 0.008
    monthly, _ = generate_market(24, interval="M", start="2020-01-01")
    assert monthly.index[-1] == pd.Timestamp("2021-12-01", tz="UTC")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_bars": 1}, "n_bars must be an integer >= 2"),
    ({"persistence": 1.5}, r"persistence must be a probability in \[0, 1\]"),
    ({"start_price": 0.0}, "start_price must be a positive number"),
    ({"interval": "2h"}, "interval '2h' is not one of"),
    ({"start": "not a date"}, "start 'not a date' is not a date"),
    ({"params": [RegimeParams(0.0, 0.01, 1.0)] * 2}, "one RegimeParams per regime"),
    ({"params": [RegimeParams(0.0, 0.01, 1.0)] * 2 + [RegimeParams(0.0, -1.0, 1.0)]},
     "sideways regime params"),
])
def test_bad_arguments_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_market(**kwargs)  # type: ignore[arg-type]


def test_tiny_fixture_has_every_regime(candles: pd.DataFrame,
                                       true_regimes: pd.Series) -> None:
    assert len(candles) == 600
    assert candles.index.equals(true_regimes.index)
    assert set(np.unique(true_regimes)) == {0, 1, 2}


def test_a_market_past_the_last_timestamp_is_a_config_error() -> None:
    # 4M hourly bars from 2022 would end in the 25th century: name the fix, no traceback
    with pytest.raises(ConfigError, match=r"run past 2262-04-11.*shorter interval"):
        generate_market(4_000_000, interval="60")

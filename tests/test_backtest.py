"""Backtest: timing convention (no look-ahead), costs, metrics, baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from selfdistill.errors import ConfigError, DataError
from selfdistill.evaluation.backtest import (
    BASELINES,
    annualisation,
    backtest_with_baselines,
    baseline_positions,
    disagreement_gate,
    drawdown,
    holding_returns,
    positions_from_proba,
    run_backtest,
    trading_metrics,
)


def _opens(values: np.ndarray, start: str = "2024-01-01") -> pd.Series:
    index = pd.date_range(start, periods=len(values), freq="h", tz="UTC", name="open_time")
    return pd.Series(np.asarray(values, dtype=np.float64), index=index)


def _proba_for(classes: np.ndarray) -> np.ndarray:
    proba = np.full((len(classes), 3), 0.1)
    proba[np.arange(len(classes)), classes] = 0.8
    return proba


def _pnl(opens: pd.Series, decisions: pd.Index, positions: np.ndarray, **kw: float) -> np.ndarray:
    rets = holding_returns(opens, decisions)
    return run_backtest(positions, rets, periods_per_year=8760, **kw).net


# ------------------------------------------------------------------ positions


def test_positions_follow_the_most_likely_class() -> None:
    proba = _proba_for(np.array([0, 1, 2, 0]))
    assert positions_from_proba(proba).tolist() == [1.0, -1.0, 0.0, 1.0]
    assert positions_from_proba(proba, allow_short=False).tolist() == [1.0, 0.0, 0.0, 1.0]


def test_confidence_sizing_is_zero_at_chance_and_one_at_certainty() -> None:
    proba = np.array([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.0, 2 / 3, 1 / 3]])
    pos = positions_from_proba(proba, sizing="confidence")
    np.testing.assert_allclose(pos, [0.0, 1.0, -0.5])


def test_gate_forces_flat() -> None:
    proba = _proba_for(np.array([0, 1, 0]))
    pos = positions_from_proba(proba, gate=np.array([False, True, False]))
    assert pos.tolist() == [1.0, 0.0, 1.0]


def test_bad_sizing_is_a_config_error_listing_valid_values() -> None:
    with pytest.raises(ConfigError, match="fixed, confidence"):
        positions_from_proba(_proba_for(np.array([0])), sizing="kelly")  # type: ignore[arg-type]


def test_disagreement_gate_uses_the_validation_quantile() -> None:
    val = np.arange(100, dtype=float)  # 80th percentile = 79.2
    gate = disagreement_gate(np.array([10.0, 79.0, 80.0, 500.0]), val, 0.8)
    assert gate.tolist() == [False, False, True, True]
    # the rows being traded never move the threshold
    assert disagreement_gate(np.array([80.0, 1e9]), val, 0.8).tolist() == [True, True]
    with pytest.raises(ConfigError):
        disagreement_gate(np.zeros(2), val, 1.5)


# ------------------------------------------------------------------ timing


def test_holding_return_runs_from_next_open_to_the_open_after() -> None:
    opens = _opens([100.0, 101.0, 103.0, 99.0, 98.0])
    rets = holding_returns(opens, opens.index[:3])
    np.testing.assert_allclose(rets, [103 / 101 - 1, 99 / 103 - 1, 98 / 99 - 1])
    # the last bars have no exit (or no fill) in the data: they earn nothing
    np.testing.assert_allclose(holding_returns(opens, opens.index[3:]), [0.0, 0.0])


def test_holding_spans_skipped_decisions_until_the_next_fill() -> None:
    opens = _opens([100.0, 101.0, 103.0, 99.0, 98.0, 97.0])
    rets = holding_returns(opens, opens.index[[0, 3]])
    np.testing.assert_allclose(rets, [98 / 101 - 1, 97 / 98 - 1])  # fills at open[1], open[4]


def test_unknown_decision_time_is_a_data_error() -> None:
    opens = _opens([100.0, 101.0, 102.0])
    with pytest.raises(DataError, match="not a bar"):
        holding_returns(opens, pd.DatetimeIndex(["1999-01-01"], tz="UTC"))


def test_changing_prices_after_the_fill_never_changes_earlier_pnl() -> None:
    rng = np.random.default_rng(0)
    n = 60
    opens = _opens(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))))
    decisions = opens.index[: n - 2]
    positions = rng.choice([-1.0, 0.0, 1.0], size=n - 2)
    base = _pnl(opens, decisions, positions)
    for k in range(n - 2):
        # decision k's P&L ends at open[k+2]: every price after it is its future
        changed = opens.copy()
        changed.iloc[k + 3:] *= rng.uniform(0.5, 1.5, n - k - 3)
        np.testing.assert_array_equal(_pnl(changed, decisions, positions)[: k + 1], base[: k + 1])


def test_a_decision_never_earns_the_move_of_its_own_bar() -> None:
    # bar 0 closes at the jump (its close is ~ open[1] = 200): a same-bar-close fill would
    # earn +100%, a next-open fill earns nothing
    opens = _opens([100.0, 200.0, 200.0, 200.0])
    rets = holding_returns(opens, opens.index[:2])
    assert np.all(rets == 0.0)
    # the move right after the fill is earned, by the decision one bar earlier only
    opens = _opens([100.0, 100.0, 200.0, 200.0])
    np.testing.assert_allclose(holding_returns(opens, opens.index[:2]), [1.0, 0.0])


def test_perfect_foresight_earns_every_move_and_never_loses() -> None:
    rng = np.random.default_rng(1)
    n = 200
    opens = _opens(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))))
    decisions = opens.index[: n - 2]
    rets = holding_returns(opens, decisions)
    oracle = np.where(rets > 0, 0, 1)  # bull before every rise, bear before every fall
    result = run_backtest(positions_from_proba(_proba_for(oracle)), rets, fee_bps=0,
                          slippage_bps=0, periods_per_year=8760)
    np.testing.assert_allclose(result.net, np.abs(rets))
    assert result.metrics["max_drawdown"] == 0.0
    assert result.metrics["total_return"] == pytest.approx(np.prod(1 + np.abs(rets)) - 1)
    # the inverted oracle loses every bar
    worst = run_backtest(-result.positions, rets, fee_bps=0, slippage_bps=0, periods_per_year=1)
    assert np.all(worst.net[rets != 0] < 0)


# ------------------------------------------------------------------ costs and metrics


def test_costs_are_charged_per_side_on_position_changes() -> None:
    positions = np.array([1.0, 1.0, -1.0, 0.0, 0.0])
    result = run_backtest(positions, np.zeros(5), fee_bps=5.0, slippage_bps=5.0,
                          periods_per_year=365)
    # enter 1, hold, flip 2, exit 1, stay flat
    np.testing.assert_allclose(result.costs, [1e-3, 0.0, 2e-3, 1e-3, 0.0])
    assert result.metrics["turnover"] == pytest.approx(4.0)
    assert result.metrics["total_return"] == pytest.approx(np.prod(1 - result.costs) - 1)


def test_metrics_on_a_hand_computed_series() -> None:
    net = np.array([0.1, -0.2, 0.05, 0.0])
    positions = np.array([1.0, 1.0, -1.0, 0.0])
    m = trading_metrics(net, positions, periods_per_year=4)
    equity = np.cumprod(1 + net)
    assert m["total_return"] == pytest.approx(equity[-1] - 1)
    assert m["annual_return"] == pytest.approx(equity[-1] - 1)  # exactly one year
    assert m["sharpe"] == pytest.approx(net.mean() / net.std(ddof=1) * 2)
    assert m["sortino"] == pytest.approx(net.mean() / np.sqrt(np.mean([0, 0.04, 0, 0])) * 2)
    assert m["max_drawdown"] == pytest.approx(0.2)
    assert m["max_drawdown_bars"] == 3.0  # under water from period 2 to the end
    assert m["exposure"] == pytest.approx(0.75)
    assert m["hit_rate"] == pytest.approx(2 / 3)
    assert m["calmar"] == pytest.approx(m["annual_return"] / 0.2)


def test_drawdown_duration_in_days_uses_the_times() -> None:
    times = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    m = trading_metrics(np.array([0.1, -0.1, -0.1, 0.5]), np.ones(4), periods_per_year=365,
                        times=times)
    assert m["max_drawdown_bars"] == 2.0
    assert m["max_drawdown_days"] == pytest.approx(2.0)  # peak on day 0, last low on day 2


def test_flat_series_has_zero_ratios_not_nan() -> None:
    m = trading_metrics(np.zeros(10), np.zeros(10), periods_per_year=252)
    assert all(np.isfinite(v) for v in m.values())
    assert m["sharpe"] == 0.0
    assert m["exposure"] == 0.0


def test_drawdown_is_relative_to_the_running_peak() -> None:
    np.testing.assert_allclose(drawdown(np.array([1.1, 0.99, 1.2, 0.6])),
                               [0.0, -0.1, 0.0, -0.5])


def test_annualisation_prefers_the_configured_value() -> None:
    assert annualisation("60", 252.0) == 252.0
    assert annualisation("60") == pytest.approx(8760.0)
    assert annualisation("D") == pytest.approx(365.0)
    with pytest.raises(ConfigError, match="periods_per_year"):
        annualisation(None)


# ------------------------------------------------------------------ baselines


def test_baselines_sit_next_to_the_model() -> None:
    rng = np.random.default_rng(3)
    positions = rng.choice([-1.0, 0.0, 1.0], size=300)
    rets = rng.normal(0, 0.01, 300)
    table = backtest_with_baselines(positions, rets, fee_bps=1, slippage_bps=1,
                                    periods_per_year=8760, seed=0)
    assert list(table) == ["model", *BASELINES]
    assert table["always_flat"].metrics["total_return"] == 0.0
    np.testing.assert_allclose(table["buy_and_hold"].gross, rets)


def test_random_baseline_matches_turnover_and_is_seeded() -> None:
    rng = np.random.default_rng(4)
    # a persistent model: about 40 changes in 1000 decisions
    positions = np.repeat(rng.choice([-1.0, 0.0, 1.0], size=40), 25)
    a = baseline_positions("random", positions, seed=7)
    b = baseline_positions("random", positions, seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, baseline_positions("random", positions, seed=8))
    n_model = np.count_nonzero(np.diff(positions, prepend=0.0))
    assert np.count_nonzero(np.diff(a, prepend=0.0)) == n_model
    assert not np.array_equal(a, positions)


@pytest.mark.parametrize("kind", ["jumps", "confidence", "long_only", "never"])
def test_random_baseline_has_exactly_the_models_turnover(kind: str) -> None:
    """Turnover = sum |position change| from flat; costs are charged on it."""
    rng = np.random.default_rng(5)
    positions = {
        "jumps": np.repeat(rng.choice([-1.0, 1.0], size=60), 10),  # -1 <-> +1 flips
        "confidence": np.round(rng.uniform(-1, 1, 500), 3),  # confidence sizing
        "long_only": np.repeat(rng.choice([0.0, 1.0], size=50), 7),
        "never": np.zeros(100),
    }[kind]
    turnover = np.abs(np.diff(positions, prepend=0.0)).sum()
    for seed in range(5):
        a = baseline_positions("random", positions, seed=seed)
        assert np.abs(np.diff(a, prepend=0.0)).sum() == pytest.approx(turnover, abs=1e-12)
    rets = rng.normal(0, 0.01, positions.size)
    table = backtest_with_baselines(positions, rets, fee_bps=5, slippage_bps=2,
                                    periods_per_year=365, seed=3)
    assert table["random"].costs.sum() == pytest.approx(table["model"].costs.sum())


def test_random_baseline_respects_long_only() -> None:
    positions = np.tile([0.0, 1.0], 50)
    assert set(baseline_positions("random", positions, allow_short=False).tolist()) <= {0.0, 1.0}


def test_unknown_baseline_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="buy_and_hold"):
        baseline_positions("martingale", np.zeros(3))


def test_a_test_split_too_long_for_float_equity_still_has_its_drawdowns() -> None:
    # 2M one-minute bars of a winning strategy: equity overflows float; drawdown must not
    import warnings

    from selfdistill.evaluation.backtest import compound

    rng = np.random.default_rng(0)
    net = 0.001 + rng.normal(0, 0.002, 2_000_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warnings either
        equity, dd = compound(net)
        metrics = trading_metrics(net, np.ones_like(net), periods_per_year=525_600)
    assert np.isinf(equity[-1])
    assert np.isfinite(dd).all()
    assert 0 < metrics["max_drawdown"] < 0.2
    short = net[:5000]  # in float range: the log-space drawdown is the plain one
    np.testing.assert_allclose(compound(short)[1], drawdown(np.cumprod(1 + short)), atol=1e-12)
    ruined = np.array([0.1, -1.0, 0.5])
    assert compound(ruined)[1].tolist() == [0.0, -1.0, -1.0]


def test_holding_returns_find_their_bars_by_binary_search_without_a_hash_table() -> None:
    # the candles' index must not grow a cached hash table (~40 B per bar at 10M bars)
    times = pd.date_range("2024-01-01", periods=50, freq="h", tz="UTC")
    opens = pd.Series(np.linspace(100, 149, 50), index=times)
    got = holding_returns(opens, times[[3, 10, 48]])
    assert got.tolist() == pytest.approx([opens.iloc[11] / opens.iloc[4] - 1,
                                          opens.iloc[49] / opens.iloc[11] - 1, 0.0])
    assert not opens.index._engine.is_mapping_populated
    with pytest.raises(DataError, match="not a bar"):
        holding_returns(opens, pd.DatetimeIndex([times[3] + pd.Timedelta(minutes=1)]))

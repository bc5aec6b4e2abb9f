"""Vectorised backtest of regime predictions, with costs, trading metrics and baselines.

NumPy / pandas only (no torch). The timing convention is the whole point:

* Decision ``k`` is made from the features of bar ``t_k``, which are known at
  that bar's **close**.
* It is executed at the **open of the next bar** ``t_k + 1`` and held until the
  next decision's fill, at the open of bar ``t_{k+1} + 1``. With one decision per
  bar the position taken after bar ``t`` earns ``open[t+2] / open[t+1] - 1``.
* The close of bar ``t`` (the price that produced the features) is never a fill
  price. The last decision is held for one bar (``open[t+1] -> open[t+2]``);
  decisions without that bar in the data earn nothing (return 0).
* Costs: ``(fee_bps + slippage_bps) / 1e4`` per side, charged on
  ``|position change|`` at each fill; the book starts flat, so the first entry
  pays too. The final position is marked to market, not liquidated.

Positions: +1 long when bull is most likely, -1 short when bear is (0 with
``allow_short=False``), 0 flat in sideways. ``sizing="confidence"`` scales the
position by how far the top probability is above chance. An uncertainty gate
(see :func:`disagreement_gate`) forces flat where generation disagreement is
above a quantile of the *validation* disagreement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from selfdistill.errors import ConfigError, DataError

__all__ = [
    "BASELINES",
    "BacktestResult",
    "annualisation",
    "backtest_with_baselines",
    "baseline_positions",
    "compound",
    "disagreement_gate",
    "drawdown",
    "holding_returns",
    "positions_from_proba",
    "run_backtest",
    "trading_metrics",
]

log = logging.getLogger(__name__)

#: Baselines reported next to every model, in table order.
BASELINES = ("buy_and_hold", "always_flat", "random")
_BULL, _BEAR = 0, 1
_BPS = 1e-4


@dataclass
class BacktestResult:
    """One backtest: per-decision series and the summary metrics.

    Attributes:
        positions: (N,) position held after each decision's fill.
        gross: (N,) position * asset holding-period return.
        costs: (N,) fees + slippage paid at each fill (fraction of equity).
        net: (N,) gross - costs.
        equity: (N,) compounded equity, starting from 1 before the first fill.
        drawdown: (N,) equity / running peak - 1 (<= 0).
        metrics: see :func:`trading_metrics`.
    """

    positions: np.ndarray
    gross: np.ndarray
    costs: np.ndarray
    net: np.ndarray
    equity: np.ndarray
    drawdown: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------ positions


def positions_from_proba(
    proba: np.ndarray,
    *,
    allow_short: bool = True,
    sizing: Literal["fixed", "confidence"] = "fixed",
    gate: np.ndarray | None = None,
) -> np.ndarray:
    """Target positions from class probabilities.

    Args:
        proba: (N, C) probabilities, columns 0 = bull, 1 = bear, 2 = sideways.
        allow_short: False turns every short into flat.
        sizing: "fixed" holds +-1; "confidence" holds +-(p_max - 1/C) / (1 - 1/C),
            i.e. 0 at chance and 1 at certainty.
        gate: (N,) bool, True where the position must be flat (uncertainty gate).

    Returns:
        (N,) float64 positions in [-1, 1].
    """
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise DataError(f"proba must be (N, C) with C >= 2, got shape {proba.shape}")
    if sizing not in ("fixed", "confidence"):
        raise ConfigError(f"backtest.sizing '{sizing}' is not one of: fixed, confidence")
    top = proba.argmax(axis=1)
    pos = np.where(top == _BULL, 1.0, np.where(top == _BEAR, -1.0, 0.0))
    if not allow_short:
        pos = np.maximum(pos, 0.0)
    if sizing == "confidence":
        chance = 1.0 / proba.shape[1]
        pos = pos * np.clip((proba.max(axis=1) - chance) / (1.0 - chance), 0.0, 1.0)
    if gate is not None:
        pos = np.where(np.asarray(gate, dtype=bool), 0.0, pos)
    return pos + 0.0  # no negative zeros


def disagreement_gate(values: np.ndarray, val_values: np.ndarray, quantile: float) -> np.ndarray:
    """True where ``values`` exceed the ``quantile`` of the validation disagreement.

    The threshold comes from validation rows only, so the gate never looks at
    the rows it is applied to.

    Args:
        values: (N,) disagreement on the rows to trade.
        val_values: (M,) disagreement on validation rows.
        quantile: in [0, 1]; 0.8 goes flat on rows above the 80th percentile.

    Returns:
        (N,) bool gate mask.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ConfigError(f"backtest.uncertainty_gate {quantile} must be in [0, 1]")
    val_values = np.asarray(val_values, dtype=np.float64)
    if val_values.size == 0:
        raise DataError("the uncertainty gate needs validation disagreement, got none")
    threshold = float(np.quantile(val_values, quantile))
    return np.asarray(values, dtype=np.float64) > threshold


def baseline_positions(
    kind: str, model_positions: np.ndarray, *, allow_short: bool = True, seed: int = 0
) -> np.ndarray:
    """Positions of a baseline with the same length as ``model_positions``.

    ``buy_and_hold`` is always +1, ``always_flat`` always 0, and ``random`` takes
    the model's own sequence of positions at randomly chosen decisions (seeded), so
    its turnover (sum of |position change|) and costs equal the model's exactly while
    its timing is random.
    """
    n = len(model_positions)
    if kind == "buy_and_hold":
        return np.ones(n)
    if kind == "always_flat":
        return np.zeros(n)
    if kind != "random":
        raise ConfigError(f"baseline '{kind}' is not one of: {', '.join(BASELINES)}")
    return _random_positions(np.asarray(model_positions, dtype=np.float64), seed)


def _random_positions(model: np.ndarray, seed: int) -> np.ndarray:
    """The model's positions, in the model's order, held from random decisions on.

    The model's path is a sequence of held values v_1, v_2, ... (starting flat).
    The random baseline takes the same values in the same order and only moves the
    decisions at which each is entered to randomly chosen bars, so its turnover,
    sum |v_k - v_(k-1)|, equals the model's exactly, and so do its costs.
    """
    rng = np.random.default_rng(seed)
    n = len(model)
    change = np.flatnonzero(np.diff(model, prepend=0.0))  # bars where the model trades
    if change.size == 0:
        return np.zeros(n)
    change_at = np.sort(rng.choice(n, size=change.size, replace=False))
    out = np.zeros(n)
    segment = np.searchsorted(change_at, np.arange(n), side="right") - 1  # last change <= i
    held = segment >= 0
    out[held] = model[change][segment[held]]
    return out


# ------------------------------------------------------------------ returns


def _positions(index: pd.Index, times: pd.Index) -> np.ndarray:
    """Position of each of ``times`` in ``index`` (-1 where absent).

    On a sorted time index by binary search: ``get_indexer`` would build (and cache on the
    candles' index) a hash table of every bar, ~40 bytes a bar at 10M bars.
    """
    if not (isinstance(index, pd.DatetimeIndex) and isinstance(times, pd.DatetimeIndex)
            and index.is_monotonic_increasing and (index.tz is None) == (times.tz is None)):
        return np.asarray(index.get_indexer(times), dtype=np.int64)
    keys = index.as_unit("ns").asi8
    wanted = times.as_unit("ns").asi8 if times.tz is None else \
        times.tz_convert(index.tz).as_unit("ns").asi8
    at = np.searchsorted(keys, wanted).clip(0, max(len(keys) - 1, 0))
    found = (keys[at] == wanted) if len(keys) else np.zeros(len(wanted), dtype=bool)
    return np.where(found, at, -1).astype(np.int64)


def holding_returns(open_prices: pd.Series, decision_times: pd.Index) -> np.ndarray:
    """Asset return of each decision's holding period, from fill to next fill.

    Args:
        open_prices: bar open prices indexed by open time (validated candles).
        decision_times: (N,) open times of the bars whose close produced each
            decision, strictly increasing, each present in ``open_prices``.

    Returns:
        (N,) float64: ``open[t_k + 1] -> open[t_{k+1} + 1]`` for every decision but
        the last, ``open[t_N + 1] -> open[t_N + 2]`` for the last; 0 where the data
        end before the fill or the exit bar.
    """
    where = _positions(open_prices.index, pd.Index(decision_times))
    if np.any(where < 0):
        missing = pd.Index(decision_times)[where < 0][0]
        raise DataError(f"decision time {missing} is not a bar of the price series")
    if np.any(np.diff(where) <= 0):
        raise DataError("decision times must be strictly increasing")
    prices = open_prices.to_numpy(dtype=np.float64)
    entry = where + 1
    exit_ = np.append(where[1:] + 1, where[-1] + 2) if len(where) else where
    ok = exit_ < len(prices)
    out = np.zeros(len(where))
    out[ok] = prices[exit_[ok]] / prices[entry[ok]] - 1.0
    return out


def annualisation(interval: str | None, periods_per_year: float | None = None) -> float:
    """Periods per year: the configured value, else from the bar interval (24/7 market).

    Raises:
        ConfigError: neither is given, or the interval is unknown.
    """
    if periods_per_year is not None:
        if periods_per_year <= 0:
            raise ConfigError(f"backtest.periods_per_year must be > 0, got {periods_per_year}")
        return float(periods_per_year)
    if interval is None:
        raise ConfigError("set backtest.periods_per_year: the bar interval is unknown")
    from selfdistill.data.candles import periods_per_year as from_interval

    return float(from_interval(interval))


# ------------------------------------------------------------------ backtest


def drawdown(equity: np.ndarray) -> np.ndarray:
    """(N,) equity / running peak - 1, with the peak starting at 1."""
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return equity / peak - 1.0


def compound(net: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(equity, drawdown) of per-period net returns, the drawdown taken in log space.

    ``equity = cumprod(1 + net)`` can overflow (a winning strategy over millions of
    bars: a test split of 2M one-minute bars) or underflow; the drawdown
    ``equity / peak - 1`` is computed from the log equity, so it stays exact where the
    equity is out of float range. A period that loses everything (net <= -1) ruins it.
    """
    net = np.asarray(net, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore"):
        equity = np.cumprod(1.0 + net)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_equity = np.cumsum(np.where(net > -1.0, np.log1p(np.maximum(net, -1.0)), -np.inf))
    log_peak = np.maximum.accumulate(np.maximum(log_equity, 0.0)) if len(net) else log_equity
    with np.errstate(invalid="ignore"):
        dd = np.where(np.isneginf(log_equity), -1.0, np.expm1(log_equity - log_peak))
    return equity, dd


def run_backtest(
    positions: np.ndarray,
    asset_returns: np.ndarray,
    *,
    fee_bps: float = 5.5,
    slippage_bps: float = 2.0,
    periods_per_year: float,
    times: pd.Index | None = None,
) -> BacktestResult:
    """Apply ``positions`` to holding-period returns, net of costs.

    Args:
        positions: (N,) position after each decision's fill.
        asset_returns: (N,) holding-period returns from :func:`holding_returns`.
        fee_bps / slippage_bps: cost per side in basis points.
        periods_per_year: decisions per year, for annualisation.
        times: (N,) fill times (for the drawdown duration in days); optional.
    """
    positions = np.asarray(positions, dtype=np.float64)
    asset_returns = np.asarray(asset_returns, dtype=np.float64)
    if positions.shape != asset_returns.shape:
        raise DataError(f"positions {positions.shape} and returns {asset_returns.shape} differ")
    if fee_bps < 0 or slippage_bps < 0:
        raise ConfigError(f"fees and slippage must be >= 0 bps, got {fee_bps}, {slippage_bps}")
    changes = np.abs(np.diff(positions, prepend=0.0))
    costs = changes * (fee_bps + slippage_bps) * _BPS
    gross = positions * asset_returns
    net = gross - costs
    equity, dd = compound(net)
    metrics = trading_metrics(net, positions, periods_per_year=periods_per_year, times=times,
                              _compounded=(equity, dd))
    return BacktestResult(positions, gross, costs, net, equity, dd, metrics)


def backtest_with_baselines(
    positions: np.ndarray,
    asset_returns: np.ndarray,
    *,
    fee_bps: float,
    slippage_bps: float,
    periods_per_year: float,
    allow_short: bool = True,
    seed: int = 0,
    times: pd.Index | None = None,
) -> dict[str, BacktestResult]:
    """The model's backtest plus every baseline of :data:`BASELINES`, same costs.

    Returns:
        ``{"model": ..., "buy_and_hold": ..., "always_flat": ..., "random": ...}``.
    """
    def backtest(pos: np.ndarray) -> BacktestResult:
        return run_backtest(pos, asset_returns, fee_bps=fee_bps, slippage_bps=slippage_bps,
                            periods_per_year=periods_per_year, times=times)

    out = {"model": backtest(positions)}
    for kind in BASELINES:
        out[kind] = backtest(baseline_positions(kind, positions, allow_short=allow_short,
                                                seed=seed))
    return out


# ------------------------------------------------------------------ metrics


def trading_metrics(
    net: np.ndarray,
    positions: np.ndarray,
    *,
    periods_per_year: float,
    times: pd.Index | None = None,
    _compounded: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """Summary of a net return series.

    Returns:
        total_return, annual_return (geometric), annual_vol, sharpe (risk-free 0),
        sortino (downside deviation over all periods), calmar (annual return / max
        drawdown), max_drawdown (a positive fraction of the peak), max_drawdown_bars
        and max_drawdown_days (longest time under water), turnover (sum of
        |position change|, the first entry included), turnover_per_year, exposure
        (fraction of periods with a position), hit_rate (fraction of invested
        periods with a positive net return), n_periods. Undefined ratios are 0.
    """
    net = np.asarray(net, dtype=np.float64)
    n = len(net)
    equity, dd = _compounded if _compounded is not None else compound(net)
    total = float(equity[-1] - 1.0) if n else 0.0  # inf past float range (JSON: null)
    annual = _annual_return(total, n, periods_per_year)
    std = float(net.std(ddof=1)) if n > 1 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(net, 0.0) ** 2))) if n else 0.0
    mean = float(net.mean()) if n else 0.0
    root = float(np.sqrt(periods_per_year))
    max_dd = float(-dd.min()) if n else 0.0
    dd_bars, dd_days = _longest_underwater(dd, times)
    changes = np.abs(np.diff(np.asarray(positions, dtype=np.float64), prepend=0.0))
    invested = np.asarray(positions) != 0
    return {
        "total_return": total,
        "annual_return": annual,
        "annual_vol": std * root,
        "sharpe": mean / std * root if std > 0 else 0.0,
        "sortino": mean / downside * root if downside > 0 else 0.0,
        "calmar": annual / max_dd if max_dd > 0 else 0.0,
        "max_drawdown": max_dd,
        "max_drawdown_bars": float(dd_bars),
        "max_drawdown_days": dd_days,
        "turnover": float(changes.sum()),
        "turnover_per_year": float(changes.mean() * periods_per_year) if n else 0.0,
        "exposure": float(invested.mean()) if n else 0.0,
        "hit_rate": float((net[invested] > 0).mean()) if invested.any() else 0.0,
        "n_periods": float(n),
    }


def _annual_return(total: float, n: int, periods_per_year: float) -> float:
    """Geometric annual return of ``total`` earned over ``n`` periods (-1 when ruined)."""
    if n == 0:
        return 0.0
    if total <= -1.0:
        return -1.0
    return float((1.0 + total) ** (periods_per_year / n) - 1.0)


def _longest_underwater(dd: np.ndarray, times: pd.Index | None) -> tuple[int, float]:
    """Longest run of periods below the running peak (drawdown ``dd``): (periods, days).

    The duration in days runs from the peak (the period before the run) to the
    last period under water.
    """
    under = np.concatenate([[False], dd < -1e-12, [False]])
    edges = np.flatnonzero(np.diff(under.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2] - 1  # inclusive run bounds, in periods
    if len(starts) == 0:
        return 0, 0.0
    longest = int(np.argmax(ends - starts))
    first, last = int(starts[longest]), int(ends[longest])
    if times is None:
        return last - first + 1, 0.0
    t = pd.DatetimeIndex(times)
    days = (t[last] - t[max(first - 1, 0)]) / pd.Timedelta(days=1)
    return last - first + 1, float(days)

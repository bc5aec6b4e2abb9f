"""Trading details of an output, recomputed from its backtest curves.

A curve holds, per test decision of one (fold, seed) cell, the ``position`` held and
the ``asset_return`` of its holding period (see :mod:`selfdistill.evaluation.backtest`).
From them, cell by cell (the book starts flat in every cell, as in the backtest):

* **trades**: positions opened: decisions where the direction (long / short) changes
  to a non-flat one; a reversal from long to short is one trade;
* **average holding period**: invested decisions per trade, in bars (pooled over cells);
* **long / short / flat**: the share of decisions in each direction; **exposure** is
  long + short, the backtest's own ``exposure``;
* **Sharpe at k x costs**: the net return ``position x asset_return - k x |position
  change| x (fee_bps + slippage_bps) / 1e4`` scored by the backtest's own
  :func:`~selfdistill.evaluation.backtest.trading_metrics`, so ``k = 1`` reproduces the
  run's Sharpe ratio exactly and ``k = 0`` shows what the strategy earns before costs.

Across cells, counts are summed over folds (the whole test period) and averaged over
seeds; Sharpe ratios are averaged over seeds within a fold, then over folds, like
every aggregate of metrics.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from selfdistill.evaluation.backtest import trading_metrics
from selfdistill.report.decimate import Line, reduce_line

__all__ = ["COST_MULTIPLES", "CostModel", "EquityCurve", "TradingSummary", "cell_trades",
           "equity_curve", "net_returns", "summarise_trading"]

#: Multiples of the configured costs the Sharpe ratio is shown at.
COST_MULTIPLES = (0.0, 1.0, 2.0)
_BPS = 1e-4


@dataclass(frozen=True)
class CostModel:
    """The backtest's costs per side and its annualisation."""

    fee_bps: float
    slippage_bps: float
    periods_per_year: float


@dataclass(frozen=True)
class TradingSummary:
    """One output's trading details over every cell (see the module docstring)."""

    trades: float
    holding_bars: float | None
    long: float
    short: float
    flat: float
    exposure: float
    sharpe: dict[float, float]  # cost multiple -> Sharpe ratio
    folds: int
    seeds: int


def net_returns(position: np.ndarray, asset_return: np.ndarray, costs: CostModel,
                multiple: float = 1.0) -> np.ndarray:
    """(N,) per-decision net returns at ``multiple`` times the configured costs.

    The same arithmetic as :func:`selfdistill.evaluation.backtest.run_backtest`, so
    ``multiple=1`` gives the run's own net returns bit for bit.
    """
    position = np.asarray(position, dtype=np.float64)
    changes = np.abs(np.diff(position, prepend=0.0))  # the book starts flat
    paid = changes * (costs.fee_bps + costs.slippage_bps) * _BPS * multiple  # x 1.0 is exact
    return position * np.asarray(asset_return, dtype=np.float64) - paid


def cell_trades(position: np.ndarray) -> dict[str, float]:
    """Trades, invested bars and the long / short / flat counts of one cell's positions."""
    side = np.sign(np.asarray(position, dtype=np.float64))  # (N,) -1, 0, +1
    before = np.concatenate([[0.0], side[:-1]])
    opened = (side != 0) & (side != before)
    return {"trades": float(opened.sum()), "invested": float((side != 0).sum()),
            "long": float((side > 0).sum()), "short": float((side < 0).sum()),
            "bars": float(side.size)}


def _utc_ns(times: pd.Series) -> np.ndarray:
    """(N,) datetime64[ns] UTC values of an ``open_time`` column (tz-aware or naive)."""
    return times.to_numpy(dtype="datetime64[ns]")


def _in_order(order: np.ndarray) -> bool:
    """Whether a permutation is the identity."""
    return bool(np.all(order[1:] > order[:-1])) if len(order) > 1 else True


def _per_cell(curve: pd.DataFrame, costs: CostModel, multiples: Sequence[float]
              ) -> pd.DataFrame:
    seeds = curve["seed"].to_numpy(dtype=np.int64)
    folds = curve["fold"].to_numpy(dtype=np.int64)
    positions = curve["position"].to_numpy(dtype=np.float64)
    returns = curve["asset_return"].to_numpy(dtype=np.float64)
    order = np.lexsort((_utc_ns(curve["open_time"]), folds, seeds))  # seed, fold, time
    if not _in_order(order):  # files are mostly written in order: then no copies
        seeds, folds, positions, returns = (a[order] for a in (seeds, folds, positions,
                                                                returns))
    del order
    starts = np.flatnonzero(np.diff(seeds, prepend=seeds[0] - 1)
                            | np.diff(folds, prepend=folds[0] - 1))  # each cell's first row
    rows = []
    for lo, hi in zip(starts, [*starts[1:], len(seeds)], strict=True):
        pos, ret = positions[lo:hi], returns[lo:hi]
        row: dict[str, float] = {"seed": int(seeds[lo]), "fold": int(folds[lo]),
                                 **cell_trades(pos)}
        for k in multiples:
            row[f"sharpe_{k}"] = _sharpe(net_returns(pos, ret, costs, k), pos,
                                         costs.periods_per_year)
        rows.append(row)
    return pd.DataFrame(rows)


def _fold_mean(cells: pd.DataFrame, column: str) -> float:
    """Mean over seeds within each fold, then over folds (metrics.json's aggregate)."""
    folds = cells["fold"].to_numpy(dtype=np.int64)
    values = cells[column].to_numpy(dtype=np.float64)
    order = sorted(set(folds.tolist()), key=str)  # metrics.json orders folds the same way
    return float(np.mean([float(np.mean(values[folds == f])) for f in order]))


def summarise_trading(curve: pd.DataFrame, costs: CostModel,
                      multiples: Sequence[float] = COST_MULTIPLES) -> TradingSummary | None:
    """Trading details of one output from its curve rows (every cell); None when empty."""
    if curve.empty:
        return None
    cells = _per_cell(curve, costs, multiples)
    per_seed = cells.groupby("seed")[["trades", "invested", "long", "short", "bars"]].sum()
    trades = float(per_seed["trades"].mean())
    opened = float(per_seed["trades"].sum())
    bars = per_seed["bars"]
    long, short = float((per_seed["long"] / bars).mean()), float((per_seed["short"] / bars).mean())
    return TradingSummary(
        trades=trades,
        holding_bars=float(per_seed["invested"].sum()) / opened if opened else None,
        long=long, short=short, flat=1.0 - long - short, exposure=long + short,
        sharpe={k: _fold_mean(cells, f"sharpe_{k}") for k in multiples},
        folds=int(cells["fold"].nunique()), seeds=int(cells["seed"].nunique()))


@dataclass(frozen=True)
class EquityCurve:
    """One strategy's log10 equity (0 = the starting 1x) and drawdown, computed from every
    decision and reduced for drawing (:func:`~selfdistill.report.decimate.reduce_line`).

    In logs because a strong strategy over millions of bars grows past what float64 holds
    (the synthetic market's 1.001^N does); the figure draws ``10 ** y`` when it can.
    """

    log10_equity: Line
    drawdown: Line


def equity_curve(times: pd.Series, net: np.ndarray) -> EquityCurve:
    """The equity and drawdown of (N,) net returns at (N,) decision times (any order:
    put in time order here); a loss of 100% or more is ruin (equity ~0)."""
    x = _utc_ns(times)  # (N,) naive UTC
    growth = np.asarray(net, dtype=np.float64)
    if np.any(x[1:] < x[:-1]):
        order = np.argsort(x, kind="stable")
        x, growth = x[order], growth[order]
    growth = np.maximum(growth, -1.0 + 1e-15)  # (N,) a new array; a loss of 100% is ruin
    np.log1p(growth, out=growth)
    log_equity = np.cumsum(growth, out=growth)  # natural log of 1 x prod(1 + net)
    drawdown = np.maximum.accumulate(log_equity)
    np.maximum(drawdown, 0.0, out=drawdown)  # the peak, counting the starting 1x
    np.subtract(log_equity, drawdown, out=drawdown)
    np.expm1(drawdown, out=drawdown)
    return EquityCurve(reduce_line(x, log_equity / np.log(10.0)), reduce_line(x, drawdown))


def _sharpe(net: np.ndarray, position: np.ndarray, periods_per_year: float) -> float:
    """The backtest's own Sharpe ratio (its drawdown, unused here, may overflow on long
    strong runs: silenced)."""
    with np.errstate(over="ignore", invalid="ignore"):
        metrics = trading_metrics(net, position, periods_per_year=periods_per_year)
    return float(metrics["sharpe"])

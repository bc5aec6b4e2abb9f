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

__all__ = ["COST_MULTIPLES", "CostModel", "TradingSummary", "cell_trades", "net_returns",
           "summarise_trading"]

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


def _per_cell(curve: pd.DataFrame, costs: CostModel, multiples: Sequence[float]
              ) -> pd.DataFrame:
    ordered = curve.sort_values(["seed", "fold", "open_time"])
    seeds = ordered["seed"].to_numpy(dtype=np.int64)
    folds = ordered["fold"].to_numpy(dtype=np.int64)
    positions = ordered["position"].to_numpy(dtype=np.float64)
    returns = ordered["asset_return"].to_numpy(dtype=np.float64)
    rows = []
    for seed, fold in dict.fromkeys(zip(seeds.tolist(), folds.tolist(), strict=True)):
        at = (seeds == seed) & (folds == fold)
        pos, ret = positions[at], returns[at]
        row: dict[str, float] = {"seed": seed, "fold": fold, **cell_trades(pos)}
        for k in multiples:
            net = net_returns(pos, ret, costs, k)
            row[f"sharpe_{k}"] = trading_metrics(
                net, pos, periods_per_year=costs.periods_per_year)["sharpe"]
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

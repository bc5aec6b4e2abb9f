"""Scoring a cell's outputs as strategies: backtests, the gate, the baseline strategies.

Part of :mod:`selfdistill.evaluation.scoring` (see its docstring): each test output is
backtested on its (calibrated) probabilities with its random-timing twin
(:func:`trade`), gated where the disagreement gate applies, and the cell's baseline
strategies run once from the reference positions (:func:`baseline_results`). A
backtest keeps only positions, net returns and metrics; its rows are written in pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from selfdistill.evaluation.backtest import (
    BacktestResult,
    backtest_with_baselines,
    baseline_positions,
    disagreement_gate,
    positions_from_proba,
    run_backtest,
)
from selfdistill.evaluation.scorestate import CellState as Cell
from selfdistill.evaluation.scorestate import OutputProbs as Output

__all__ = ["GATED", "GATE_MEASURE", "ROWS_PER_PIECE", "baseline_results", "gate_of", "trade",
           "write_curve"]

#: The disagreement measure the uncertainty gate thresholds.
GATE_MEASURE = "mutual_information"
#: Suffix of a gated strategy's output name (``born_again+gate``).
GATED = "+gate"
#: Prediction / backtest rows per written piece (a Parquet row group).
ROWS_PER_PIECE = 1 << 18


def write_curve(cell: Cell, method: str, member: str, result: BacktestResult | _Traded,
                 random_net: np.ndarray | None) -> None:
    times = cell.test_index()
    rets = cell.returns()
    for a in range(0, len(times), ROWS_PER_PIECE):
        b = a + ROWS_PER_PIECE
        frame = pd.DataFrame({"open_time": times[a:b], "method": method, "member": member,
                              "position": result.positions[a:b], "asset_return": rets[a:b],
                              "net": result.net[a:b],
                              "random_net": np.nan if random_net is None else random_net[a:b]})
        for k, v in cell.base.items():
            frame[k] = v
        cell.curves.write(frame)


@dataclass
class _Traded:
    """What a cell keeps of a backtest: positions, per-decision net returns, metrics."""

    positions: np.ndarray
    net: np.ndarray
    metrics: dict[str, float]


def _run(cell: Cell, positions: np.ndarray) -> _Traded:
    s = cell.settings
    result = run_backtest(positions, cell.returns(), fee_bps=s.fee_bps,
                          slippage_bps=s.slippage_bps, periods_per_year=s.periods_per_year,
                          times=cell.test_index())
    return _Traded(result.positions, result.net, result.metrics)  # the rest is dropped


def _backtest(cell: Cell, proba: np.ndarray, gate: np.ndarray | None
              ) -> dict[str, _Traded]:
    """The strategy and its random-timing twin (exactly ``backtest_with_baselines``'s
    ``model`` and ``random``; the other baselines once per cell, :func:`_baselines`)."""
    s = cell.settings
    positions = positions_from_proba(proba, allow_short=s.allow_short, sizing=s.sizing,
                                     gate=gate)
    twin = baseline_positions("random", positions, allow_short=s.allow_short,
                              seed=cell.rng_seed)
    return {"model": _run(cell, positions), "random": _run(cell, twin)}


def baseline_results(cell: Cell) -> dict[str, BacktestResult]:
    """Buy-and-hold, always-flat and random timing with the reference output's turnover."""
    s = cell.settings
    assert cell.reference is not None
    return backtest_with_baselines(
        cell.reference, cell.returns(), fee_bps=s.fee_bps, slippage_bps=s.slippage_bps,
        periods_per_year=s.periods_per_year, allow_short=s.allow_short, seed=cell.rng_seed,
        times=cell.test_index())


def _trading_fields(table: dict[str, _Traded]) -> dict[str, Any]:
    return {**table["model"].metrics, "random_sharpe": table["random"].metrics["sharpe"],
            "random_total_return": table["random"].metrics["total_return"]}


def _gated_record(rec: dict[str, Any], table: dict[str, _Traded], quantile: float
                  ) -> dict[str, Any]:
    """The gated strategy as an output of its own (``<method>+gate``): trading fields only,
    so it is compared with the same output ungated, never with another model."""
    keep = {k: v for k, v in rec.items()
            if k in ("generation", "split", "seed", "fold", "selected")
            or (k not in ("method", "n") and (v is None or isinstance(v, str)
                                              or type(v) is int))}
    return {"method": f"{rec['method']}{GATED}", **keep, "gate_quantile": quantile,
            **_trading_fields(table)}


def trade(cell: Cell, out: Output, rec: dict[str, Any], proba: np.ndarray,
           gate: np.ndarray | None) -> None:
    """Backtest an output's test rows (``proba``: calibrated where calibration is on),
    and gated where the gate applies."""
    times = cell.test_times()
    table = _backtest(cell, proba, None)
    rec.update(_trading_fields(table))
    write_curve(cell, out.method, out.member, table["model"], table["random"].net)
    cell.evidence.add_trades((out.method, out.member), times, table["model"].net,
                             table["random"].net)
    quantile = cell.settings.uncertainty_gate
    if gate is not None and quantile is not None:
        gated = _backtest(cell, proba, gate)
        cell.gated.append(_gated_record(rec, gated, quantile))
        name = f"{out.method}{GATED}"
        write_curve(cell, name, out.member, gated["model"], gated["random"].net)
        cell.evidence.add_trades((name, out.member), times, gated["model"].net,
                                 gated["random"].net)
    if cell.reference is None or out.method == "baseline":
        cell.reference = table["model"].positions  # the baselines' turnover


def gate_of(measures: dict[str, np.ndarray], val_values: np.ndarray | None,
          quantile: float | None) -> np.ndarray | None:
    """Where to stand aside: test disagreement above the ``quantile`` of validation's."""
    if quantile is None or not measures or val_values is None:
        return None
    test = measures[GATE_MEASURE]
    val = val_values[np.isfinite(val_values)]
    if val.size == 0 or np.isnan(test).all():
        return None
    return disagreement_gate(test, val, quantile)

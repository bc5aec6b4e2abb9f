"""The state scoring a cell carries from output to output, shared by
:mod:`selfdistill.evaluation.scoring` and :mod:`selfdistill.evaluation.scoring_trades`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from selfdistill.evaluation.backtest import holding_returns
from selfdistill.evaluation.evidence import CellEvidence, times_ns
from selfdistill.evaluation.fold import Dataset, member_name
from selfdistill.rundir.frames import FrameWriter
from selfdistill.splits import Split

__all__ = ["BacktestSettings", "CellState", "OutputProbs"]


@dataclass(frozen=True)
class BacktestSettings:
    """What a cell's backtest needs besides the predictions."""

    enabled: bool
    fee_bps: float
    slippage_bps: float
    allow_short: bool
    sizing: Literal["fixed", "confidence"]
    uncertainty_gate: float | None
    periods_per_year: float
    calibrate: bool = True



@dataclass
class CellState:
    """What scoring one cell carries from output to output."""

    ds: Dataset
    split: Split
    x: torch.Tensor | None  # None once every split is predicted
    settings: BacktestSettings
    base: dict[str, Any]
    rng_seed: int
    predictions: FrameWriter
    curves: FrameWriter
    evidence: CellEvidence
    flagged: bool  # some method's members disagree: prediction rows carry the measures
    records: dict[tuple[int, int, int], dict[str, Any]] = field(default_factory=dict)
    gated: list[dict[str, Any]] = field(default_factory=list)
    uncertainty: dict[tuple[int, int], list[dict[str, Any]]] = field(default_factory=dict)
    temperatures: dict[tuple[str, str], float] = field(default_factory=dict)
    reference: np.ndarray | None = None  # positions whose turnover the baselines take
    _returns: np.ndarray | None = None
    _test_times: np.ndarray | None = None
    _test_index: pd.DatetimeIndex | None = None

    def rows(self, split: str) -> np.ndarray:
        return np.asarray(getattr(self.split, split))

    def test_index(self) -> pd.DatetimeIndex:
        """Open times of the test bars (taken once: every backtest of the cell uses them)."""
        if self._test_index is None:
            self._test_index = self.ds.times[self.rows("test")]
        return self._test_index

    def test_times(self) -> np.ndarray:
        """(T,) int64 open times of the test bars: one array every output's evidence shares."""
        if self._test_times is None:
            self._test_times = times_ns(self.test_index())
        return self._test_times

    def returns(self) -> np.ndarray:
        """Per-decision holding returns of the test bars (computed once)."""
        if self._returns is None:
            self._returns = holding_returns(self.ds.candles["open"], self.test_index())
        return self._returns


@dataclass
class OutputProbs:
    """One output of a method on one split."""

    index: int
    method: str
    keys: dict[str, Any]
    proba: np.ndarray  # (N, C) float64
    extra: dict[str, Any]

    @property
    def member(self) -> str:
        return member_name(self.keys)

"""What the report reads from a run directory, held in memory (nothing else is read)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd

from selfdistill.report.outputs import OutputIndex
from selfdistill.report.trading import CostModel

__all__ = ["RunData"]


@dataclass
class RunData:
    """Everything the report reads, all from the run directory.

    Attributes:
        metrics: metrics.json.
        config: config.yaml, parsed; ``config_text`` as written.
        predictions: predictions.parquet (validation and test rows).
        curves: backtest.parquet (None when the backtest was off).
        prices: prices.parquet (None for runs from before it existed).
        created_at: timings.json's ``created_at`` (ISO-8601 UTC), when known.
        incomplete: why the run is marked INCOMPLETE, or None.
        tune: tune.json of a run written by ``selfdistill tune`` (None otherwise).
    """

    metrics: dict[str, Any]
    config: dict[str, Any]
    config_text: str
    predictions: pd.DataFrame
    curves: pd.DataFrame | None
    prices: pd.DataFrame | None
    created_at: str | None = None
    incomplete: str | None = None
    tune: dict[str, Any] | None = None

    @property
    def class_names(self) -> list[str]:
        return list(self.metrics.get("class_names", ["bull", "bear", "sideways"]))

    def aggregates(self, split: str) -> list[dict[str, Any]]:
        return [r for r in self.metrics.get("records", [])
                if r.get("aggregate") and r["split"] == split]

    @cached_property
    def index(self) -> OutputIndex:
        """The run's outputs and each cell's selected member."""
        return OutputIndex.from_records(self.metrics.get("records", []))

    @property
    def findings(self) -> dict[str, Any]:
        return dict(self.metrics.get("findings") or {})

    @property
    def costs(self) -> CostModel | None:
        """The backtest's costs and annualisation (None without a backtest)."""
        bt = self.metrics.get("backtest") or {}
        ppy = bt.get("periods_per_year_used") or bt.get("periods_per_year")
        if not bt.get("enabled", True) or ppy is None:
            return None
        return CostModel(float(bt.get("fee_bps", 0.0)), float(bt.get("slippage_bps", 0.0)),
                         float(ppy))

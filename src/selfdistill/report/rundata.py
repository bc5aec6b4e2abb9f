"""What the report reads from a run directory (nothing else is read).

metrics.json, config.yaml, timings.json and tune.json are small and held in memory; the
Parquet files are read output by output, as each section needs them
(:meth:`RunData.output_rows`, :class:`~selfdistill.report.runfiles.RunFiles`), so the
report's memory does not grow with the run's outputs x seeds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd

from selfdistill.report.outputs import Output, OutputIndex
from selfdistill.report.runfiles import KEYS, RunFiles
from selfdistill.report.trading import CostModel
from selfdistill.rundir.read import Filters

__all__ = ["RunData"]


@dataclass
class RunData:
    """Everything the report reads, all from the run directory.

    Attributes:
        metrics: metrics.json.
        config: config.yaml, parsed; ``config_text`` as written.
        files: predictions.parquet, backtest.parquet and prices.parquet, read on demand.
        created_at: timings.json's ``created_at`` (ISO-8601 UTC), when known.
        incomplete: why the run is marked INCOMPLETE, or None.
        tune: tune.json of a run written by ``selfdistill tune`` (None otherwise).
    """

    metrics: dict[str, Any]
    config: dict[str, Any]
    config_text: str
    files: RunFiles
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

    @property
    def first_seed(self) -> int | None:
        """The lowest seed with a cell (the one single-seed figures show)."""
        seeds = self.index.seeds()
        return seeds[0] if seeds else None

    def output_rows(self, output: Output, columns: Sequence[str], *, curves: bool = False,
                    split: str | None = None, seed: int | None = None) -> pd.DataFrame:
        """The output's rows of predictions.parquet (or backtest.parquet with ``curves``)
        on ``split`` / ``seed`` when given: ``columns`` plus seed and fold (and method and
        member for a selection); a selected output's rows are its chosen member's, cell by
        cell."""
        read = self.files.curves if curves else self.files.predictions
        return self._resolved(output, read(*self._query(output, columns, split, seed)))

    def prediction_chunks(self, output: Output, columns: Sequence[str], *,
                          split: str | None = None, seed: int | None = None
                          ) -> Iterator[pd.DataFrame]:
        """:meth:`output_rows` of predictions.parquet, one row group at a time (for sums
        over the rows: memory of one row group, whatever the run's length)."""
        for frame in self.files.prediction_chunks(*self._query(output, columns, split, seed)):
            yield self._resolved(output, frame)

    def _query(self, output: Output, columns: Sequence[str], split: str | None,
               seed: int | None) -> tuple[list[str], Filters]:
        sources = self.index.sources(output)
        filters: Filters = [("method", "in", sorted({m for m, _ in sources})),
                            ("member", "in", sorted({s for _, s in sources})),
                            *([("split", "==", split)] if split is not None else []),
                            *([("seed", "==", seed)] if seed is not None else [])]
        # an exact filter leaves method and member constant: not read, not held
        keys = ("seed", "fold") if sources == [output] else KEYS
        return list(dict.fromkeys([*keys, *columns])), filters

    def _resolved(self, output: Output, frame: pd.DataFrame) -> pd.DataFrame:
        if self.index.sources(output) == [output]:  # the filter was exact
            return frame
        return self.index.rows(frame, output)

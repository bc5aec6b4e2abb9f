"""The run directory's Parquet files as the report reads them: one output at a time.

A 10M-bar run's predictions.parquet holds tens of millions of rows (validation and test
rows x every output x seed); the report never holds it whole. Each figure or table asks
for the rows of one output (its method and member, on one split or seed) and the
columns it draws, and :class:`RunFiles` reads just those with pyarrow's ``columns=`` and
``filters=`` (row group by row group, skipping row groups that hold none of the output:
:class:`~selfdistill.rundir.read.ParquetScan`). The output's name columns come back as
pandas categories.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from selfdistill.errors import DataError
from selfdistill.rundir.layout import BACKTEST_FILE, PREDICTIONS_FILE, PRICES_FILE
from selfdistill.rundir.read import Filters, ParquetScan

__all__ = ["KEYS", "RunFiles"]

#: The columns that name an output's cell: every read of predictions or curves has them.
KEYS = ("method", "member", "seed", "fold")
_NAMES = ("split", "method", "member")


@dataclass(frozen=True)
class RunFiles:
    """Filtered reads of one run directory's predictions, backtest and prices files."""

    path: Path

    @property
    def has_curves(self) -> bool:
        """Whether the run has backtest.parquet (the backtest was on)."""
        return (self.path / BACKTEST_FILE).is_file()

    @property
    def has_prices(self) -> bool:
        """Whether the run has prices.parquet (runs before it existed do not)."""
        return (self.path / PRICES_FILE).is_file()

    def check(self) -> None:
        """Read every file's footer now: a missing or damaged file is one error up front,
        before any section is drawn."""
        if not (self.path / PREDICTIONS_FILE).is_file():
            raise DataError(f"'{self.path}' is not a run directory (no {PREDICTIONS_FILE})")
        for name in (PREDICTIONS_FILE, BACKTEST_FILE, PRICES_FILE):
            if (self.path / name).is_file():
                self._scan(name)

    @cached_property
    def _scans(self) -> dict[str, ParquetScan]:
        """One scan per file, so each file's row-group index is built once."""
        return {}

    def _scan(self, name: str) -> ParquetScan:
        if name not in self._scans:
            self._scans[name] = ParquetScan(self.path / name)
        return self._scans[name]

    @property
    def prediction_columns(self) -> list[str]:
        """predictions.parquet's columns (from its footer)."""
        return list(self._scan(PREDICTIONS_FILE).schema.names)

    @property
    def price_columns(self) -> list[str]:
        """prices.parquet's columns (empty without the file)."""
        return list(self._scan(PRICES_FILE).schema.names) if self.has_prices else []

    def predictions(self, columns: Sequence[str], filters: Filters) -> pd.DataFrame:
        """The ``columns`` of the prediction rows matching ``filters``."""
        return self._scan(PREDICTIONS_FILE).read(columns, filters, _NAMES)

    def prediction_chunks(self, columns: Sequence[str], filters: Filters
                          ) -> Iterator[pd.DataFrame]:
        """:meth:`predictions` one row group at a time."""
        return self._scan(PREDICTIONS_FILE).chunks(columns, filters, _NAMES)

    def curves(self, columns: Sequence[str], filters: Filters) -> pd.DataFrame:
        """The ``columns`` of the backtest rows matching ``filters`` (empty without a
        backtest)."""
        if not self.has_curves:
            return pd.DataFrame(columns=list(columns))
        return self._scan(BACKTEST_FILE).read(columns, filters, _NAMES)

    def price_chunks(self, columns: Sequence[str], filters: Filters
                     ) -> Iterator[pd.DataFrame]:
        """The ``columns`` of the bars matching ``filters``, one row group at a time (those
        of ``columns`` the file has: ``true_regime`` only on synthetic data)."""
        return self._scan(PRICES_FILE).chunks(
            [c for c in columns if c in self.price_columns], filters)

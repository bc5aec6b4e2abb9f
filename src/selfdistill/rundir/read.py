"""Reading a run directory back: metrics, predictions, backtest series, prices.

A missing file says the directory is not a run directory (or predates the file); a
file that exists but cannot be parsed is one :class:`~selfdistill.errors.DataError`
naming it (:func:`selfdistill.rundir.layout.damaged`). Reading the metrics of a run that
never finished (an ``INCOMPLETE`` marker, see :mod:`selfdistill.rundir.lifecycle`) logs a
warning, so ``selfdistill report`` says so. The layout is described in
:mod:`selfdistill.rundir.layout`.

The Parquet readers take ``columns=`` and ``filters=`` (pyarrow's: a conjunction of
``(column, op, value)``, e.g. ``[("split", "==", "test"), ("method", "in", {"baseline"})]``)
so that a reader of a 10M-bar run holds only the rows and columns it uses: the filter is
applied row group by row group while reading, never to the whole file in memory.
``categories=`` reads string columns as pandas categories (one small dictionary instead
of a Python string per row). Row order is the file's; do not rely on it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from selfdistill.errors import DataError
from selfdistill.rundir.layout import (
    BACKTEST_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PRICES_FILE,
    damaged,
)
from selfdistill.rundir.lifecycle import incomplete_reason

__all__ = [
    "Filters",
    "parquet_columns",
    "read_curves",
    "read_metrics",
    "read_predictions",
    "read_prices",
    "read_run_parquet",
]

log = logging.getLogger(__name__)

#: pyarrow's row filter: every ``(column, op, value)`` must hold (ops ``==``, ``!=``,
#: ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``).
Filters = Sequence[tuple[str, str, Any]]


def parquet_columns(path: Path) -> list[str]:
    """The column names of a run directory's Parquet file (its footer only)."""
    try:
        return list(pq.read_schema(path).names)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise damaged(path, exc) from exc


def read_run_parquet(path: Path, *, columns: Sequence[str] | None = None,
                     filters: Filters | None = None, categories: Iterable[str] = ()
                     ) -> pd.DataFrame:
    """A Parquet file of a run directory (the ``columns`` and rows matching ``filters``
    only, when given); a damaged file is a DataError naming it, and so is a column the
    file lacks."""
    wanted = [*(columns or []), *(f[0] for f in filters or [])]
    if wanted:
        missing = sorted(set(wanted) - set(parquet_columns(path)))
        if missing:
            raise DataError(f"'{path}' has no column {', '.join(map(repr, missing))}; it was "
                            "written by another selfdistill version: run the experiment again")
    try:
        table = pq.read_table(path, columns=None if columns is None else list(columns),
                              filters=None if filters is None else list(filters),
                              read_dictionary=list(categories) or None)
        return table.to_pandas()
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise damaged(path, exc) from exc  # the message keeps only its first line


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The parsed metrics.json of a run directory."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise DataError(f"'{run_dir}' is not a run directory (no metrics.json)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(path, exc) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        raise damaged(path, ValueError("no list of 'records'"))
    why = incomplete_reason(run_dir)
    if why is not None:
        log.warning("%s is an INCOMPLETE run (%s): its results are partial; run the "
                    "experiment again for complete ones", run_dir, why)
    return payload


def read_predictions(run_dir: str | Path, *, columns: Sequence[str] | None = None,
                     filters: Filters | None = None, categories: Iterable[str] = ()
                     ) -> pd.DataFrame:
    """The predictions.parquet of a run directory (see :func:`read_run_parquet`)."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        raise DataError(f"'{run_dir}' is not a run directory (no predictions.parquet)")
    return read_run_parquet(path, columns=columns, filters=filters, categories=categories)


def read_curves(run_dir: str | Path, *, columns: Sequence[str] | None = None,
                filters: Filters | None = None, categories: Iterable[str] = ()
                ) -> pd.DataFrame | None:
    """The backtest series of a run directory (None when the backtest was off)."""
    path = Path(run_dir) / BACKTEST_FILE
    if not path.is_file():
        return None
    return read_run_parquet(path, columns=columns, filters=filters, categories=categories)


def read_prices(run_dir: str | Path, *, columns: Sequence[str] | None = None,
                filters: Filters | None = None) -> pd.DataFrame:
    """The bar prices (and true regimes on synthetic data) of a run directory."""
    path = Path(run_dir) / PRICES_FILE
    if not path.is_file():
        raise DataError(f"'{run_dir}' has no {PRICES_FILE}; run it again with this version")
    return read_run_parquet(path, columns=columns, filters=filters)

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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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
    "ParquetScan",
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


class ParquetScan:
    """Filtered reads of one Parquet file, row group by row group.

    pyarrow's own ``read_table(filters=...)`` decodes every requested column of every row
    group, several row groups at a time, before it filters: on a 10M-bar run that is most
    of the file in memory and seconds per read. Here a row group is skipped when an
    ``==`` / ``in`` filter names no value its column holds there (each filtered column's
    distinct values per row group are read once and kept: the index), and of the others
    the filter columns are read first and the wanted columns only where a row matches.
    Memory: the result plus one row group's columns. String columns are compared through
    their dictionary (codes, not strings).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._distinct: dict[str, list[frozenset[Any]]] = {}
        try:
            self.schema = pq.read_schema(path)
            self._strings = [f.name for f in self.schema
                             if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            self._file = pq.ParquetFile(path, read_dictionary=self._strings)
        except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
            raise damaged(path, exc) from exc

    def read(self, columns: Sequence[str], filters: Filters = (),
             categories: Iterable[str] = ()) -> pd.DataFrame:
        """The ``columns`` of the rows where every filter holds, in file order; string
        columns named in ``categories`` come back as pandas categories."""
        names = list(dict.fromkeys(columns))
        self._check([*names, *(f[0] for f in filters)])
        try:
            parts = [self._row_group(i, names, filters)
                     for i in range(self._file.num_row_groups) if self._may_hold(i, filters)]
        except (OSError, ValueError) as exc:
            raise damaged(self.path, exc) from exc
        kept = [t for t in parts if t.num_rows]
        table = self._decoded(pa.concat_tables(kept) if kept else self._empty(names),
                              set(categories))
        del parts, kept  # the table alone holds the rows: converting frees them as it goes
        return table.to_pandas(split_blocks=True, self_destruct=True)

    def _check(self, names: Iterable[str]) -> None:
        missing = sorted(set(names) - set(self.schema.names))
        if missing:
            raise DataError(f"'{self.path}' has no column {', '.join(map(repr, missing))}; it "
                            "was written by another selfdistill version: run the experiment "
                            "again")

    def _row_group(self, i: int, names: list[str], filters: Filters) -> pa.Table:
        keys = list(dict.fromkeys(f[0] for f in filters))
        mask = np.ones(self._file.metadata.row_group(i).num_rows, dtype=bool)
        if keys:
            table = self._file.read_row_group(i, columns=keys)
            for column, op, value in filters:
                mask &= _holds(table[column], op, value)
            if not mask.any():
                return self._empty(names)
        table = self._file.read_row_group(i, columns=names)
        return table if mask.all() else table.filter(pa.array(mask))

    def _may_hold(self, i: int, filters: Filters) -> bool:
        """False when an ``==`` / ``in`` filter names no value of row group ``i``."""
        for column, op, value in filters:
            if op in ("==", "in") and self.distinct(column)[i].isdisjoint(_value_set(op, value)):
                return False
        return True

    def distinct(self, column: str) -> list[frozenset[Any]]:
        """The distinct values of ``column`` in each row group (read once, then kept)."""
        if column not in self._distinct:
            self._check([column])
            self._distinct[column] = [
                frozenset(pc.unique(self._file.read_row_group(i, columns=[column])[column])
                          .to_pylist()) for i in range(self._file.num_row_groups)]
        return self._distinct[column]

    def _empty(self, names: list[str]) -> pa.Table:
        return self._file.schema_arrow.empty_table().select(names)

    def _decoded(self, table: pa.Table, categories: set[str]) -> pa.Table:
        """String columns read as dictionaries back to strings, except ``categories``."""
        for name in table.column_names:
            if name in self._strings and name not in categories:
                index = table.column_names.index(name)
                table = table.set_column(index, name,
                                         pc.cast(table[name], self.schema.field(name).type))
        return table


_COMPARE = {"==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
            ">": pc.greater, ">=": pc.greater_equal}


def _value_set(op: str, value: Any) -> set[Any]:
    values = [value] if op in _COMPARE else list(value)
    return {v.item() if isinstance(v, np.generic) else v for v in values}


def _holds(column: pa.ChunkedArray, op: str, value: Any) -> np.ndarray:
    """(N,) bool: where ``column op value`` holds (never on nulls); dictionary columns
    are compared by their codes."""
    if op not in (*_COMPARE, "in", "not in"):
        raise ValueError(f"filter operator {op!r} is not one of {', '.join(_COMPARE)}, in, "
                         "not in")
    negate = op in ("!=", "not in")
    if pa.types.is_dictionary(column.type) and op in ("==", "!=", "in", "not in"):
        wanted = pa.array(sorted(_value_set(op, value)), column.type.value_type)
        parts = [(np.isin(chunk.indices.to_numpy(zero_copy_only=False),
                          np.flatnonzero(pc.is_in(chunk.dictionary, value_set=wanted)
                                         .to_numpy(zero_copy_only=False))) ^ negate)
                 & chunk.is_valid().to_numpy(zero_copy_only=False) for chunk in column.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
    if op in ("in", "not in"):
        found = pc.is_in(column, value_set=pa.array(sorted(_value_set(op, value)), column.type))
        found = pc.invert(found) if negate else found
    else:
        found = _COMPARE[op](column, pa.scalar(value, type=column.type))
    valid = pc.and_(found, pc.is_valid(column))
    return np.asarray(pc.fill_null(valid, False).to_numpy(zero_copy_only=False), dtype=bool)


def read_run_parquet(path: Path, *, columns: Sequence[str] | None = None,
                     filters: Filters | None = None, categories: Iterable[str] = ()
                     ) -> pd.DataFrame:
    """A Parquet file of a run directory (the ``columns`` and rows matching ``filters``
    only, when given: :class:`ParquetScan`); a damaged file is a DataError naming it, and
    so is a column the file lacks."""
    if columns is not None or filters is not None or categories:
        scan = ParquetScan(path)
        return scan.read(scan.schema.names if columns is None else columns, filters or (),
                         categories)
    try:
        return pd.read_parquet(path)
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

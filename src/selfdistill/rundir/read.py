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
from collections.abc import Iterable, Iterator, Sequence
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

#: Files of at most this many rows are read whole once by a :class:`ParquetScan` and kept.
KEEP_ROWS = 250_000
#: Rows of a row group decoded at a time by a :class:`ParquetScan` (filter columns: four
#: times as many, they are narrow and each slice costs a dictionary lookup).
BATCH_ROWS = 65_536
_BUFFER_BYTES = 1 << 20
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
    their dictionary (codes, not strings). A file of at most ``keep_rows`` rows (default
    :data:`KEEP_ROWS`) is read whole on the first read and kept (the demo's files: many
    small reads cost more than one whole one), so small runs report as fast as before.
    """

    def __init__(self, path: Path, keep_rows: int | None = None) -> None:
        self.path = path
        self._distinct: dict[str, list[frozenset[Any]]] = {}
        self._whole: pa.Table | None = None
        try:
            self.schema = pq.read_schema(path)
            self._strings = [f.name for f in self.schema
                             if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            # buffer_size: column chunks are streamed page by page, not read whole
            self._file = pq.ParquetFile(path, read_dictionary=self._strings,
                                        buffer_size=_BUFFER_BYTES)
        except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
            raise damaged(path, exc) from exc
        self._keep = self._file.metadata.num_rows <= (KEEP_ROWS if keep_rows is None
                                                      else keep_rows)
        self._groups = 1 if self._keep else self._file.num_row_groups

    def _slices(self, i: int, columns: list[str], rows: int = BATCH_ROWS
                ) -> Iterator[pa.Table]:
        """Row group ``i``'s ``columns`` in slices of ``rows`` rows (the kept
        whole file in one piece, when it is small)."""
        if self._keep:
            if self._whole is None:
                self._whole = self._file.read()
            yield self._whole.select(columns)
            return
        for batch in self._file.iter_batches(batch_size=rows, row_groups=[i],
                                             columns=columns, use_threads=False):
            yield pa.Table.from_batches([batch])

    def read(self, columns: Sequence[str], filters: Filters = (),
             categories: Iterable[str] = ()) -> pd.DataFrame:
        """The ``columns`` of the rows where every filter holds, in file order; string
        columns named in ``categories`` come back as pandas categories."""
        names = list(dict.fromkeys(columns))
        self._check([*names, *(f[0] for f in filters)])
        parts = [t for i in range(self._groups) for t in self._matching(i, names, filters)]
        return self._frame(parts, names, categories)

    def chunks(self, columns: Sequence[str], filters: Filters = (),
               categories: Iterable[str] = ()) -> Iterator[pd.DataFrame]:
        """:meth:`read`'s rows as one frame per row group that holds any: for sums over
        rows in the memory of one row group."""
        names = list(dict.fromkeys(columns))
        self._check([*names, *(f[0] for f in filters)])
        for i in range(self._groups):
            parts = self._matching(i, names, filters)
            if parts:
                yield self._frame(parts, names, categories)

    def _matching(self, i: int, names: list[str], filters: Filters) -> list[pa.Table]:
        try:
            return self._row_group(i, names, filters) if self._may_hold(i, filters) else []
        except (OSError, ValueError) as exc:
            raise damaged(self.path, exc) from exc

    def _frame(self, parts: list[pa.Table], names: list[str], categories: Iterable[str]
               ) -> pd.DataFrame:
        table = self._decoded(pa.concat_tables(parts) if parts else self._empty(names),
                              set(categories))
        parts.clear()  # the table alone holds the rows: converting frees them as it goes
        frame = table.to_pandas(split_blocks=True, self_destruct=True)
        pa.default_memory_pool().release_unused()  # give the row groups' memory back now
        return frame

    def _check(self, names: Iterable[str]) -> None:
        missing = sorted(set(names) - set(self.schema.names))
        if missing:
            raise DataError(f"'{self.path}' has no column {', '.join(map(repr, missing))}; it "
                            "was written by another selfdistill version: run the experiment "
                            "again")

    def _mask(self, i: int, filters: Filters) -> np.ndarray | None:
        """(rows of row group i,) where every filter holds; None without filters."""
        keys = list(dict.fromkeys(f[0] for f in filters))
        if not keys:
            return None
        parts = []
        for piece in self._slices(i, keys, 4 * BATCH_ROWS):
            hold = np.ones(piece.num_rows, dtype=bool)
            for column, op, value in filters:
                hold &= _holds(piece[column], op, value)
            parts.append(hold)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)

    def _row_group(self, i: int, names: list[str], filters: Filters) -> list[pa.Table]:
        """The matching rows of row group ``i``, slice by slice: the filter columns first,
        the wanted ones only when a row matches (never the whole row group at once)."""
        mask = self._mask(i, filters)
        if mask is not None and not mask.any():
            return []
        kept, at = [], 0
        for piece in self._slices(i, names):
            hold = None if mask is None else mask[at:at + piece.num_rows]
            at += piece.num_rows
            if hold is None or hold.all():
                kept.append(piece)
            elif hold.any():
                kept.append(piece.filter(pa.array(hold)))
        return kept

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
                frozenset(v for piece in self._slices(i, [column], 4 * BATCH_ROWS)
                          for v in pc.unique(piece[column]).to_pylist())
                for i in range(self._groups)]
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
        parts = []
        for chunk in column.chunks:
            # (D,) whether each dictionary entry is wanted, then looked up by code
            hit = pc.is_in(chunk.dictionary, value_set=wanted).to_numpy(zero_copy_only=False)
            codes = chunk.indices.fill_null(0).to_numpy(zero_copy_only=False)
            parts.append(((hit ^ negate)[codes] if len(hit) else np.zeros(len(chunk), bool))
                         & chunk.is_valid().to_numpy(zero_copy_only=False))
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

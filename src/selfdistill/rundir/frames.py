"""Row frames written piece by piece: a cell's predictions and backtest rows, and the run's.

A cell's prediction rows (val + test, every output) are as many as its bars times its
outputs: at 10M bars, tens of millions. They are never held whole. A cell writes them as
they come (:class:`FrameWriter`: one Parquet row group per piece, to a temporary file
renamed when the cell is done), into its folder of the cell cache
(:mod:`selfdistill.rundir.cellcache`); a cell computed elsewhere (a Ray worker on
another node) keeps them in memory instead and the driver writes them. The run's
predictions.parquet and backtest.parquet are then the cells' files one after another
(:func:`concat_parquet`), copied row group by row group.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from selfdistill.atomic import atomic_write, finish_temp, storage_error, temp_path

__all__ = ["FrameWriter", "concat_parquet"]


class FrameWriter:
    """Frames of one kind appended as Parquet row groups to ``path``, or kept in memory.

    With ``path`` None the frames are kept and :meth:`frame` returns them concatenated.
    Every frame must have the columns of the first, in the same order and types. The file
    appears (atomically) on :meth:`close`; a writer left by an exception removes its
    temporary file.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._frames: list[pd.DataFrame] = []
        self._tmp: Path | None = None
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        if self.path is None:
            self._frames.append(frame)
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        try:
            if self._writer is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._tmp = temp_path(self.path)
                self._writer = pq.ParquetWriter(self._tmp, table.schema)
            self._writer.write_table(table.cast(self._writer.schema))
        except OSError as exc:
            self.abort()
            raise storage_error(self.path, exc) from exc

    def frame(self) -> pd.DataFrame | None:
        """The frames kept in memory (None when written to a file, or none came)."""
        return pd.concat(self._frames, ignore_index=True) if self._frames else None

    def close(self) -> None:
        if self._writer is None:
            return
        assert self.path is not None
        assert self._tmp is not None
        try:
            self._writer.close()
        except OSError as exc:
            self.abort()
            raise storage_error(self.path, exc) from exc
        self._writer = None
        finish_temp(self._tmp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in its order (nulls where it has none)."""
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def concat_parquet(parts: Sequence[Path], path: Path) -> Path | None:
    """The Parquet files ``parts`` one after another as ``path``, one row group at a time.

    Columns are the union of the parts' (by name, in order of first appearance); a part
    without a column gets nulls. Returns None (and writes nothing) without parts.
    """
    files = [pq.ParquetFile(p) for p in parts]
    if not files:
        return None
    schema = pa.unify_schemas([f.schema_arrow for f in files], promote_options="permissive")
    metadata = files[0].schema_arrow.metadata  # pandas' column types, e.g. nullable Int64

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema.with_metadata(metadata)) as writer:
            for f in files:
                for i in range(f.num_row_groups):
                    writer.write_table(_conform(f.read_row_group(i), writer.schema))

    try:
        return atomic_write(path, write)
    finally:
        for f in files:
            f.close()

"""Reading and writing candle files (CSV and Parquet).

Every loader returns validated candles (:func:`~selfdistill.data.candles.validate_candles`)
and turns whatever goes wrong while reading (missing file, empty file, binary
junk, unparseable numbers) into a :class:`~selfdistill.errors.DataError` that
names the file. The one reordering a loader does on its own: a file whose rows
are *entirely* newest-first (as exchange exports often are) is reversed; any
other disorder is an error, because sorting would hide a broken file.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from selfdistill.atomic import atomic_write
from selfdistill.data.candles import validate_candles
from selfdistill.data.columns import normalise_columns
from selfdistill.errors import DataError

__all__ = ["load_candles_file", "load_csv", "load_parquet", "save_candles"]

logger = logging.getLogger(__name__)

GapPolicy = Literal["error", "mark"]

_CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_SEPARATORS = (",", ";", "\t", "|")
_SNIFF_BYTES = 64 * 1024


def load_candles_file(path: str | Path, *, interval: str | None = None,
                      gaps: GapPolicy = "mark", time_format: str | None = None,
                      time_format_hint: str | None = None) -> pd.DataFrame:
    """Load candles from a CSV or Parquet file, chosen by the file extension.

    ``.csv``, ``.csv.gz``, ``.txt``, ``.tsv`` are read as CSV; ``.parquet`` and
    ``.pq`` as Parquet.

    Args:
        path: the file.
        interval: bar interval ("1" ... "720", "D", "W", "M"); inferred when None.
        gaps: gap policy, "mark" or "error" (see ``validate_candles``).
        time_format: how text dates are read: None infers it (ISO-8601, or the one
            day/month order that reads every value in time order), ``dayfirst`` /
            ``monthfirst`` or a strptime format forces it (``data.time_format``).
        time_format_hint: the format to prefer when the dates are ambiguous (a model's
            training format).

    Returns:
        Validated candles; ``attrs["time_format"]`` records a strptime format the
        times needed (numeric day/month dates).

    Raises:
        DataError: unknown extension, missing or malformed file, or bad candles.
    """
    file = Path(path)
    load = load_csv if _kind(file) == "csv" else load_parquet
    return load(file, interval=interval, gaps=gaps, time_format=time_format,
                time_format_hint=time_format_hint)


def load_csv(path: str | Path, *, interval: str | None = None, gaps: GapPolicy = "mark",
             time_format: str | None = None, time_format_hint: str | None = None
             ) -> pd.DataFrame:
    """Load candles from a CSV file (optionally gzip-compressed).

    The separator (comma, semicolon, tab or pipe) is detected from the header.
    Column spellings and timestamp formats are those of ``normalise_columns``.

    Raises:
        DataError: the file is missing, empty, binary or malformed, or its rows
            break the Candles contract; the message names the file, and where it
            applies the row and column.
    """
    file = _existing_file(path)
    return _finish(_read_csv(file), file, interval, gaps, time_format, time_format_hint)


def load_parquet(path: str | Path, *, interval: str | None = None, gaps: GapPolicy = "mark",
                 time_format: str | None = None, time_format_hint: str | None = None
                 ) -> pd.DataFrame:
    """Load candles from a Parquet file (via pyarrow).

    The time may be the DataFrame index stored in the file or a column.

    Raises:
        DataError: the file is missing or not Parquet, or its rows break the
            Candles contract.
    """
    file = _existing_file(path)
    try:
        raw = pd.read_parquet(file, engine="pyarrow")
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{file}: cannot be read as Parquet ({_first_line(exc)})") from exc
    return _finish(raw, file, interval, gaps, time_format, time_format_hint)


def save_candles(df: pd.DataFrame, path: str | Path) -> None:
    """Write candles to CSV (``.csv``, ``.csv.gz``, ``.tsv``, ...) or Parquet (``.parquet``).

    The frame is validated first (with its recorded interval), so only valid
    candles reach disk; ``gap_before`` is not written (loading recomputes it).
    The write is atomic: a temporary file in the same folder replaces ``path``
    only once it is complete, so readers never see half a file.

    Args:
        df: candles.
        path: destination; missing parent folders are created.

    Raises:
        DataError: ``df`` breaks the Candles contract or the extension is unknown.
        StorageError: the file cannot be written (disk full, permissions).
    """
    file = Path(path)
    kind = _kind(file)
    data = validate_candles(df, interval=df.attrs.get("interval"), source=str(file))
    data = data.drop(columns=["gap_before"])
    data.attrs = {}
    name = file.name.lower()

    def write(tmp: Path) -> None:
        if kind == "csv":
            data.to_csv(tmp, sep="\t" if name.endswith(".tsv") else ",",
                        compression="gzip" if name.endswith(".gz") else None)
        else:
            data.to_parquet(tmp, engine="pyarrow")

    atomic_write(file, write)
    logger.info("wrote %d candles to %s", len(data), file)


# ------------------------------------------------------------------ helpers


def _kind(file: Path) -> Literal["csv", "parquet"]:
    name = file.name.lower()
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise DataError(
        f"{file}: unknown candle file type; use one of "
        f"{', '.join(_CSV_SUFFIXES + _PARQUET_SUFFIXES)}"
    )


def _existing_file(path: str | Path) -> Path:
    file = Path(path)
    if not file.exists():
        raise DataError(f"{file}: no such file; check the path (data.path in the config)")
    if not file.is_file():
        raise DataError(f"{file}: is not a file (a folder?); point to a CSV or Parquet file")
    return file


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _head_bytes(file: Path) -> bytes:
    opener = gzip.open if file.name.lower().endswith(".gz") else open
    try:
        with opener(file, "rb") as fh:
            return fh.read(_SNIFF_BYTES)
    except (OSError, EOFError) as exc:
        raise DataError(f"{file}: cannot be read ({_first_line(exc)})") from exc


def _sniff_separator(file: Path) -> str:
    head = _head_bytes(file)
    if not head.strip():
        raise DataError(f"{file}: the file is empty; expected a header row and candles")
    if head.startswith(b"PAR1"):
        raise DataError(f"{file}: is a Parquet file; give it a .parquet extension")
    if b"\x00" in head:
        raise DataError(f"{file}: is binary, not a text CSV file")
    try:
        first = head.decode("utf-8-sig", errors="strict").splitlines()[0]
    except UnicodeDecodeError as exc:
        raise DataError(f"{file}: is not UTF-8 text ({_first_line(exc)})") from exc
    return max(_SEPARATORS, key=first.count)


def _read_csv(file: Path) -> pd.DataFrame:
    sep = _sniff_separator(file)
    try:
        return pd.read_csv(file, sep=sep, skipinitialspace=True, compression="infer",
                           encoding="utf-8-sig")
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{file}: the file is empty; expected a header row and candles") from exc
    except (ValueError, OSError, EOFError) as exc:  # ParserError, UnicodeDecodeError, ...
        raise DataError(f"{file}: cannot be read as CSV ({_first_line(exc)})") from exc


def _finish(raw: pd.DataFrame, file: Path, interval: str | None, gaps: GapPolicy,
            time_format: str | None, hint: str | None) -> pd.DataFrame:
    if len(raw) == 0:
        raise DataError(f"{file}: has a header but no candles")
    df = normalise_columns(raw, source=str(file), copy=False,  # validate_candles copies
                           time_format=time_format, hint=hint)
    fmt = df.attrs.get("time_format")
    ns = pd.DatetimeIndex(df.index).asi8
    if len(ns) > 1 and bool(np.all(ns[1:] < ns[:-1])):
        logger.info("%s: rows are newest-first; reversed into time order", file)
        df = df.iloc[::-1]
    out = validate_candles(df, interval=interval, gaps=gaps, source=str(file))
    if fmt is not None:
        out.attrs["time_format"] = fmt
    return out

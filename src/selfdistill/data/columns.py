"""Column-name normalisation and timestamp parsing for candle tables.

Exchange exports, Yahoo downloads and hand-made CSVs spell the same columns
many ways. :func:`normalise_columns` maps the usual spellings, case-insensitively,
onto the canonical names and turns the timestamp column (or index) into a UTC
``DatetimeIndex`` named ``open_time``. It checks names and times only; values
are checked by :func:`selfdistill.data.candles.validate_candles`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from selfdistill.data.dates import forced_format, parse_text_times
from selfdistill.errors import DataError

__all__ = ["COLUMN_ALIASES", "TIMESTAMP_ALIASES", "accepted_spellings", "normalise_columns",
           "parse_timestamps"]

#: Canonical column -> accepted spellings (compared after lower-casing and
#: turning spaces / hyphens into underscores).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "open": ("open", "o", "open_price"),
    "high": ("high", "h", "high_price"),
    "low": ("low", "l", "low_price"),
    "close": ("close", "c", "close_price"),
    "volume": ("volume", "vol", "v", "base_volume"),
    "turnover": ("turnover", "quote_volume", "quotevolume", "quote_asset_volume"),
}
#: Used as ``close`` only when the table has no close column.
_ADJ_CLOSE = ("adj_close", "adjclose", "adjusted_close")
#: pandas' name for a CSV's first column with an empty header (an index it wrote)
_PANDAS_INDEX = re.compile(r"(Unnamed: 0)?")
#: Timestamp spellings, in order of preference when several are present.
TIMESTAMP_ALIASES: tuple[str, ...] = (
    "open_time", "opentime", "start", "starttime", "start_time", "timestamp",
    "datetime", "date", "time", "ts",
)
_TIME_INDEX_NAME = "open_time"
# Epoch magnitude thresholds: |t| below 1e11 is seconds (until year 5138), below
# 1e14 milliseconds, below 1e17 microseconds, above that nanoseconds.
_EPOCH_UNITS: tuple[tuple[float, Literal["s", "ms", "us"]], ...] = (
    (1e11, "s"), (1e14, "ms"), (1e17, "us"),
)


def _key(name: object) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def accepted_spellings(columns: Iterable[str]) -> str:
    """'open: open, o, open_price; ...' for the given canonical columns."""
    parts = []
    for col in columns:
        names = COLUMN_ALIASES[col] + (_ADJ_CLOSE if col == "close" else ())
        parts.append(f"{col}: {', '.join(names)}")
    return "; ".join(parts)


def normalise_columns(df: pd.DataFrame, *, source: str = "candles", copy: bool = True,
                      time_format: str | None = None, hint: str | None = None
                      ) -> pd.DataFrame:
    """Rename candle columns to canonical names and index by UTC open time.

    Accepted spellings are in :data:`COLUMN_ALIASES` (e.g. ``Open``, ``OPEN``,
    ``o``; ``Adj Close`` only when there is no close). The time comes from a
    ``DatetimeIndex`` or from the first column (or index) named like one of
    :data:`TIMESTAMP_ALIASES`; see :func:`parse_timestamps` for the formats.
    Unrecognised columns are kept unchanged. Idempotent.

    Args:
        df: a candle table as read from a file or an API.
        source: what to call the data in messages.
        copy: False skips copying the values, so the result may share memory
            with ``df`` (for callers that copy anyway).
        time_format, hint: how text dates are read (see
            :func:`selfdistill.data.dates.parse_text_times`).

    Returns:
        A new DataFrame with renamed columns and a UTC ``DatetimeIndex``
        (nanosecond unit) named ``open_time``; when text dates were read with a
        strptime format (``dd/mm/yyyy`` and the like, inferred or forced),
        ``attrs["time_format"]`` records it.

    Raises:
        DataError: two columns mean the same thing, no timestamp can be found,
            or a timestamp cannot be parsed (the message names row and column).
    """
    mapping = _rename_map(df.columns, source)
    out = df.copy(deep=copy)
    out.columns = pd.Index([mapping.get(col, col) for col in df.columns])
    if isinstance(out.index, pd.DatetimeIndex) or _key(out.index.name) in TIMESTAMP_ALIASES:
        values: pd.Series | pd.Index = out.index
        name = "index" if isinstance(out.index, pd.DatetimeIndex) else str(out.index.name)
    else:
        col = _timestamp_column(out, source)
        values, name = out[col], str(col)
        out = out.drop(columns=[col])
    index, fmt = _parse(values, name=name, source=source, time_format=time_format, hint=hint)
    out.index = index
    if "%" in fmt:  # a numeric date format was inferred or forced: remember which
        out.attrs = {**df.attrs, "time_format": fmt}
    return out


def _rename_map(columns: pd.Index, source: str) -> dict[object, str]:
    lookup = {alias: canon for canon, names in COLUMN_ALIASES.items() for alias in names}
    mapping: dict[object, str] = {}
    for col in columns:
        canon = lookup.get(_key(col))
        if canon is None:
            continue
        clash = [k for k, v in mapping.items() if v == canon]
        if clash:
            raise DataError(
                f"{source}: columns {clash[0]!r} and {col!r} both mean '{canon}'; "
                "keep only one of them"
            )
        mapping[col] = canon
    if "close" not in mapping.values():
        adjusted = [c for c in columns if _key(c) in _ADJ_CLOSE]
        if adjusted:
            mapping[adjusted[0]] = "close"
    return mapping


def _timestamp_column(frame: pd.DataFrame, source: str) -> object:
    columns = frame.columns
    by_key: dict[str, object] = {}
    for col in columns:
        by_key.setdefault(_key(col), col)
    for alias in TIMESTAMP_ALIASES:
        if alias in by_key:
            return by_key[alias]
    first = columns[0] if len(columns) else None
    if first is not None and _PANDAS_INDEX.fullmatch(str(first)) \
            and not pd.api.types.is_numeric_dtype(frame[first].dtype):
        return first  # DataFrame.to_csv wrote its datetime index under an empty header
    raise DataError(
        f"{source}: no timestamp column (found: {', '.join(map(str, columns)) or 'none'}); "
        f"name one of {', '.join(TIMESTAMP_ALIASES)} (any case), or use a datetime index"
    )


def parse_timestamps(values: pd.Series | pd.Index, *, name: str = "timestamp",
                     source: str = "candles") -> pd.DatetimeIndex:
    """Parse candle times into a UTC ``DatetimeIndex`` named ``open_time``.

    Accepted: datetimes (naive ones are taken as UTC, aware ones converted),
    epoch numbers in seconds, milliseconds, microseconds or nanoseconds (the unit
    is chosen by magnitude), and ISO-8601 strings (other date strings are tried
    too; a UTC offset in the string is honoured).

    Args:
        values: one timestamp per row.
        name: the column name, for messages.
        source: what to call the data in messages.

    Raises:
        DataError: a value is missing or unparseable (names row, column, value).
    """
    return _parse(values, name=name, source=source)[0]


def _parse(values: pd.Series | pd.Index, *, name: str, source: str,
           time_format: str | None = None, hint: str | None = None
           ) -> tuple[pd.DatetimeIndex, str]:
    """The UTC ``open_time`` index and how it was read (see :func:`parse_timestamps`)."""
    raw = pd.Series(values, copy=False).reset_index(drop=True)
    _raise_if_null(raw, name, source)
    fixed = forced_format(time_format)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed, fmt = raw.dt.tz_convert("UTC"), "datetime"
    elif pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed, fmt = raw.dt.tz_localize("UTC"), "datetime"
    elif pd.api.types.is_bool_dtype(raw.dtype):
        raise DataError(f"{source}: column '{name}' holds booleans, not timestamps")
    elif fixed is None and pd.api.types.is_numeric_dtype(raw.dtype):
        parsed, fmt = _from_epoch(raw, name, source)
    elif fixed is None and _is_number(raw.iloc[0]):  # epoch numbers as text (Bybit's JSON)
        parsed, fmt = _from_epoch(_epoch_text_to_numbers(raw, name, source), name, source)
    else:
        parsed, fmt = parse_text_times(raw.astype(str), name=name, source=source,
                                       time_format=time_format, hint=hint)
    return pd.DatetimeIndex(parsed, name=_TIME_INDEX_NAME).as_unit("ns"), fmt


def _raise_if_null(raw: pd.Series, name: str, source: str) -> None:
    null = np.flatnonzero(raw.isna().to_numpy())
    if len(null):
        raise DataError(
            f"{source}: row {null[0]}, column '{name}': the timestamp is empty; "
            "every candle needs its open time"
        )


def _from_epoch(numbers: pd.Series, name: str, source: str) -> tuple[pd.Series, str]:
    magnitude = float(np.nanmax(np.abs(numbers.to_numpy(dtype=np.float64))))
    unit: Literal["s", "ms", "us", "ns"] = next(
        (u for limit, u in _EPOCH_UNITS if magnitude < limit), "ns"
    )
    try:
        return pd.to_datetime(numbers, unit=unit, utc=True), f"epoch {unit}"
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
        raise DataError(
            f"{source}: column '{name}': epoch values (read as {unit}) are out of range "
            f"({exc}); use epoch seconds or milliseconds, or ISO strings"
        ) from exc


def _is_number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _epoch_text_to_numbers(raw: pd.Series, name: str, source: str) -> pd.Series:
    numbers = pd.to_numeric(raw, errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy())
    if len(bad):
        raise DataError(
            f"{source}: row {bad[0]}, column '{name}': {raw.iloc[bad[0]]!r} is not an epoch "
            "time like the rows before it; fix the row or use one time format throughout"
        )
    return numbers

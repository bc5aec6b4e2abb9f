"""The Candles contract: bar intervals, validation and gap detection.

Candles are a pandas DataFrame indexed by a tz-aware UTC ``DatetimeIndex``
named ``open_time`` (each candle's open time), strictly increasing, with float64
columns ``open, high, low, close, volume`` and, when the source has it,
``turnover``. :func:`validate_candles` is the single gate: every loader returns
its output, and every consumer may assume the contract without re-checking.

Missing candles (gaps) are never filled: under gap policy ``"mark"`` the bar
right after a gap carries ``gap_before=True`` and ``df.attrs["gaps"]`` lists
every gap (:func:`gap_table` turns it back into a DataFrame); under ``"error"``
a :class:`~selfdistill.errors.GapError` is raised.

``df.attrs`` holds only JSON-friendly values (``interval``: str or None;
``gaps``: ``{"start": [ISO str], "end": [ISO str], "missing": [int]}``): pandas
copies and compares ``attrs`` in ``concat`` and writes them into Parquet
metadata, and a DataFrame or Timestamp there would break both.

The file loaders (``load_candles_file``, ``load_csv``, ``load_parquet``,
``save_candles``) live in :mod:`selfdistill.data.files`, which imports this module
(never the other way round), and column-name normalisation in
:mod:`selfdistill.data.columns`; :mod:`selfdistill.data` re-exports them all.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd

from selfdistill.data.columns import normalise_columns
from selfdistill.data.intervals import (
    INTERVALS,
    infer_interval,
    interval_to_timedelta,
    periods_per_year,
)
from selfdistill.errors import ConfigError, DataError, GapError

__all__ = [
    "CANDLE_COLUMNS",
    "INTERVALS",
    "OPTIONAL_COLUMNS",
    "find_gaps",
    "gap_table",
    "infer_interval",
    "interval_to_timedelta",
    "normalise_columns",
    "periods_per_year",
    "validate_candles",
]

logger = logging.getLogger(__name__)

#: The columns every candle frame has, in this order, all float64.
CANDLE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
#: Columns kept when present (float64); every other column is dropped.
OPTIONAL_COLUMNS: tuple[str, ...] = ("turnover",)
_PRICE_COLUMNS = ("open", "high", "low", "close")
_MAX_LISTED_GAPS = 5

GapPolicy = Literal["error", "mark"]


def validate_candles(
    df: pd.DataFrame,
    *,
    interval: str | None = None,
    gaps: GapPolicy = "mark",
    source: str = "candles",
    copy: bool = True,
) -> pd.DataFrame:
    """Check ``df`` against the Candles contract and return a validated copy.

    Column names are normalised first (:func:`normalise_columns`), so ``Open``,
    ``o`` or a ``timestamp`` column are accepted. Nothing is sorted, filled or
    dropped silently: every violation raises :class:`DataError` naming the row
    (position and timestamp) and the column.

    Args:
        df: candles with a datetime index (or a timestamp column) and OHLCV columns.
        interval: Bybit interval spelling ("1" ... "720", "D", "W", "M"); inferred
            from the most common bar spacing when None. Gaps are checked only when
            the interval is known or inferable.
        gaps: "mark" keeps the data and adds a boolean ``gap_before`` column plus
            ``attrs["gaps"]`` (see :func:`find_gaps`); "error" raises
            :class:`GapError` when any candle is missing.
        source: what to call the data in messages (a file path, a symbol).
        copy: False lets the result share float64 columns with ``df`` instead of
            copying them (for callers that drop ``df``, like the synthetic market).

    Returns:
        A new DataFrame: UTC ``open_time`` index, float64 OHLCV (+ ``turnover``),
        ``gap_before``; ``attrs`` holds ``interval`` and ``gaps`` (see
        :func:`gap_table`).

    Raises:
        DataError: the data break the contract (the message says where and how).
        GapError: candles are missing and ``gaps="error"``.
        ConfigError: ``interval`` or ``gaps`` is not a valid value.
    """
    if gaps not in ("error", "mark"):
        raise ConfigError(f"gap policy {gaps!r} is not one of 'error', 'mark'")
    if interval is not None:
        interval_to_timedelta(interval)  # rejects a bad spelling before any work
        interval = str(interval).strip()
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise DataError(f"{source}: has no rows; candles need at least one bar")
    out = normalise_columns(df, source=source, copy=False)
    _check_required_columns(out, source)
    keep = list(CANDLE_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in out.columns]
    out = pd.DataFrame(
        {c: _to_float(out[c], c, source) for c in keep}, index=out.index, copy=copy
    )
    _check_index(out.index, source)
    _check_values(out, source)
    return _apply_gap_policy(out, interval, gaps, source)


def find_gaps(index: pd.DatetimeIndex, interval: str) -> pd.DataFrame:
    """List the missing candles in a strictly increasing index of aligned bars.

    Args:
        index: candle open times, strictly increasing.
        interval: Bybit interval spelling; "M" counts calendar months.

    Returns:
        One row per gap with columns ``start`` (open time of the last bar before
        the gap), ``end`` (open time of the first bar after it) and ``missing``
        (number of candles absent in between, int64). Empty when there are none.
    """
    steps = _spacing_in_steps(index, interval)
    where = np.flatnonzero(steps > 1)
    return pd.DataFrame(
        {
            "start": index[where],
            "end": index[where + 1],
            "missing": (steps[where] - 1).astype(np.int64),
        }
    )


# ------------------------------------------------------------------ checks


def _where(index: pd.Index, pos: int) -> str:
    """'row 17 (2022-01-01 17:00:00+00:00)' for messages."""
    return f"row {pos} ({index[pos]})"


def _more(n_bad: int) -> str:
    return f" (and {n_bad - 1} more rows)" if n_bad > 1 else ""


def _check_required_columns(df: pd.DataFrame, source: str) -> None:
    missing = [c for c in CANDLE_COLUMNS if c not in df.columns]
    if missing:
        from selfdistill.data.columns import accepted_spellings

        have = ", ".join(map(str, df.columns)) or "none"
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)} (found: {have}); "
            f"accepted spellings, case-insensitive: {accepted_spellings(missing)}"
        )


def _to_float(col: pd.Series, name: str, source: str) -> np.ndarray:
    """Column -> float64 array; unparseable values raise naming row and value."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    values = pd.to_numeric(col, errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy() & col.notna().to_numpy())
    if len(bad):
        raise DataError(
            f"{source}: {_where(col.index, int(bad[0]))}, column '{name}': value "
            f"{col.iloc[bad[0]]!r} is not a number{_more(len(bad))}; fix or remove the row"
        )
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _check_index(index: pd.Index, source: str) -> None:
    if not isinstance(index, pd.DatetimeIndex):  # normalise_columns guarantees it
        raise DataError(f"{source}: the index is not a DatetimeIndex")
    nat = np.flatnonzero(index.isna())
    if len(nat):
        raise DataError(
            f"{source}: row {nat[0]} has no timestamp (NaT){_more(len(nat))}; "
            "every candle needs its open time"
        )
    ns = index.asi8
    back = np.flatnonzero(ns[1:] < ns[:-1]) + 1
    dup = np.flatnonzero(ns[1:] == ns[:-1]) + 1
    if len(dup) == 0 and len(back):  # only unsorted data can hide non-adjacent repeats
        dup = np.flatnonzero(index.duplicated())
    if len(dup):
        raise DataError(
            f"{source}: {_where(index, int(dup[0]))} repeats an earlier timestamp"
            f"{_more(len(dup))}; remove the duplicate candles"
        )
    if len(back) == len(index) - 1 and len(back) > 0:
        raise DataError(
            f"{source}: timestamps run newest-first; reverse the rows "
            "(df.iloc[::-1]) before validating; the file loaders do this for you"
        )
    if len(back):
        raise DataError(
            f"{source}: {_where(index, int(back[0]))} is earlier than row {back[0] - 1} "
            f"({index[back[0] - 1]}), so the data are not in time order; sort them "
            "by time (selfdistill never reorders data silently)"
        )


def _check_values(df: pd.DataFrame, source: str) -> None:
    """NaN/inf, positivity, OHLC consistency and volume sign, all vectorised."""
    for col in df.columns:
        _raise_first(df, ~np.isfinite(df[col].to_numpy()), col, "is NaN or infinite",
                     "fill it from the source or drop the row", source)
    for col in _PRICE_COLUMNS:
        _raise_first(df, df[col].to_numpy() <= 0, col, "is not a positive price",
                     "prices must be > 0", source)
    o, h, lo, c = (df[k].to_numpy() for k in _PRICE_COLUMNS)
    _raise_first(df, h < lo, "high", "is below low", "are high and low swapped?",
                 source, reference=lo)
    body_top, body_bottom = np.maximum(o, c), np.minimum(o, c)
    _raise_first(df, h < body_top, "high", "is below max(open, close)",
                 "every bar needs high >= open, close", source, reference=body_top)
    _raise_first(df, lo > body_bottom, "low", "is above min(open, close)",
                 "every bar needs low <= open, close", source, reference=body_bottom)
    for col in ("volume", *OPTIONAL_COLUMNS):
        if col in df.columns:
            _raise_first(df, df[col].to_numpy() < 0, col, "is negative",
                         "volumes must be >= 0", source)


def _raise_first(df: pd.DataFrame, bad: np.ndarray, col: str, problem: str, fix: str,
                 source: str, reference: np.ndarray | None = None) -> None:
    """Raise DataError for the first True in ``bad`` (N,), naming row and column."""
    rows = np.flatnonzero(bad)
    if len(rows) == 0:
        return
    pos = int(rows[0])
    than = f" {float(reference[pos])!r}" if reference is not None else ""
    raise DataError(
        f"{source}: {_where(df.index, pos)}, column '{col}': value "
        f"{float(df[col].iloc[pos])!r} {problem}{than}{_more(len(rows))}; {fix}"
    )


# ------------------------------------------------------------------ gaps


def _spacing_in_steps(index: pd.DatetimeIndex, interval: str) -> np.ndarray:
    """Spacing between consecutive bars in whole intervals, shape (len(index) - 1,).

    Fractional spacings (misaligned bars) are rounded up; :func:`validate_candles`
    rejects them before gaps are counted.
    """
    step = interval_to_timedelta(interval)
    if step is None:  # calendar months
        months = index.year.to_numpy() * 12 + index.month.to_numpy()
        return np.diff(months).astype(np.int64)
    diffs = np.diff(index.as_unit("ns").asi8)
    return -(-diffs // step.value)  # ceil division on int64 nanoseconds


def _check_spacing(index: pd.DatetimeIndex, interval: str, source: str) -> None:
    step = interval_to_timedelta(interval)
    if step is None:
        short = np.flatnonzero(_spacing_in_steps(index, interval) < 1) + 1
        wrong = short
    else:
        diffs = np.diff(index.as_unit("ns").asi8)
        wrong = np.flatnonzero((diffs < step.value) | (diffs % step.value != 0)) + 1
    if len(wrong):
        pos = int(wrong[0])
        gap = index[pos] - index[pos - 1]
        guess = infer_interval(index)
        hint = f"; the data look like interval '{guess}'" if guess and guess != interval else ""
        raise DataError(
            f"{source}: {_where(index, pos)} is {gap} after the previous bar, not a whole "
            f"number of '{interval}' intervals{_more(len(wrong))}{hint}; pass the right "
            "interval or fix the timestamps"
        )


def _apply_gap_policy(df: pd.DataFrame, interval: str | None, gaps: GapPolicy,
                      source: str) -> pd.DataFrame:
    index = pd.DatetimeIndex(df.index)
    if interval is None:
        interval = infer_interval(index)
        if interval is None and len(index) > 1:
            _refuse_jitter(index, source)
            logger.warning("%s: bar interval not recognised; gaps are not checked", source)
    gap_frame = pd.DataFrame({"start": index[:0], "end": index[:0],
                              "missing": np.zeros(0, np.int64)})
    if interval is not None and len(index) > 1:
        _check_spacing(index, interval, source)
        gap_frame = find_gaps(index, interval)
    if gaps == "error" and len(gap_frame):
        raise GapError(_gap_message(gap_frame, interval, source))
    if len(gap_frame):
        logger.info("%s: %d gaps, %d missing candles", source, len(gap_frame),
                    int(gap_frame["missing"].sum()))
    df["gap_before"] = index.isin(gap_frame["end"])
    df.attrs = {"interval": interval, "gaps": _gaps_to_attrs(gap_frame)}
    return df


#: Spacings within this fraction of a bar interval are that interval, jittered.
_JITTER = 0.1


def _refuse_jitter(index: pd.DatetimeIndex, source: str) -> None:
    """Raise when the bars look like a known interval whose open times are off its grid.

    Open times a few seconds off (``13:00:07``) defeat interval inference; say so, and
    where, instead of failing later for want of an interval.
    """
    diffs = np.diff(index.as_unit("ns").asi8)
    median = float(np.median(diffs))
    for name in INTERVALS:
        step = interval_to_timedelta(name)
        if step is None or abs(median - step.value) > _JITTER * step.value:
            continue
        off = np.flatnonzero(diffs % step.value != 0) + 1
        if len(off) == 0:
            return
        pos = int(off[0])
        raise DataError(
            f"{source}: the bars look like interval '{name}' but their open times are off "
            f"its grid: {_where(index, pos)} is {index[pos] - index[pos - 1]} after row "
            f"{pos - 1} ({index[pos - 1]}){_more(len(off))}; candle open times must be whole "
            f"bars apart: round them to the bar (e.g. index.floor('{_pandas_freq(step)}')) "
            "or fix the export")


def _pandas_freq(step: pd.Timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    return f"{minutes // 1440}D" if minutes % 1440 == 0 else f"{minutes}min"


def _gaps_to_attrs(gap_frame: pd.DataFrame) -> dict[str, list]:
    return {
        "start": [t.isoformat() for t in gap_frame["start"]],
        "end": [t.isoformat() for t in gap_frame["end"]],
        "missing": [int(m) for m in gap_frame["missing"]],
    }


def gap_table(candles: pd.DataFrame) -> pd.DataFrame:
    """The gaps recorded by :func:`validate_candles`, as :func:`find_gaps` returns them.

    Args:
        candles: validated candles (their ``attrs["gaps"]`` is read).

    Returns:
        Columns ``start``, ``end`` (UTC timestamps) and ``missing`` (int64);
        empty when the candles have no gaps or no gap record.
    """
    record = candles.attrs.get("gaps") or {"start": [], "end": [], "missing": []}
    return pd.DataFrame({
        "start": pd.to_datetime(pd.Series(record["start"], dtype=object), utc=True),
        "end": pd.to_datetime(pd.Series(record["end"], dtype=object), utc=True),
        "missing": np.asarray(record["missing"], dtype=np.int64),
    })


def _gap_message(gap_frame: pd.DataFrame, interval: str | None, source: str) -> str:
    head = gap_frame.head(_MAX_LISTED_GAPS)
    listed = "; ".join(
        f"after {row.start} ({row.missing} missing)" for row in head.itertuples()
    )
    more = f"; and {len(gap_frame) - len(head)} more" if len(gap_frame) > len(head) else ""
    return (
        f"{source}: {len(gap_frame)} gap(s) with {int(gap_frame['missing'].sum())} missing "
        f"'{interval}' candles: {listed}{more}; fetch the missing candles or use "
        "gap policy 'mark' to keep and mark them"
    )

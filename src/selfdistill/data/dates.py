"""Reading text dates: ISO-8601, and numeric dates whose day / month order must be inferred.

``01/02/2024`` is the 1st of February in most of the world and the 2nd of January in
the US; forex and index exports often write ``dd.mm.yyyy``. pandas reads such text
month-first, silently. Here the order is inferred from the *whole column*: a format
that parses every value **and** puts the rows in time order (ascending, or descending
for newest-first exports) wins; when both orders do, the column is ambiguous and the
error asks for ``data.time_format``. Every error names the date format, not only a row.

:func:`parse_text_times` returns the times and the format used, which
:func:`selfdistill.data.columns.normalise_columns` logs and records
(``attrs["time_format"]``), so a model remembers how its training file was read.

Example:
    >>> times, fmt = parse_text_times(pd.Series(["13/01/2024", "14/01/2024"]))
    >>> fmt, str(times.iloc[0].date())
    ('%d/%m/%Y', '2024-01-13')
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd

from selfdistill.errors import DataError

__all__ = ["ISO_FORMAT", "forced_format", "parse_text_times"]

log = logging.getLogger(__name__)

#: What ``attrs["time_format"]`` says for ISO-8601 text.
ISO_FORMAT = "ISO8601"
_NUMERIC_DATE = re.compile(r"^(\d{1,2})([./-])(\d{1,2})\2(\d{4}|\d{2})(.*)$")
_TIME_PARTS = (  # the text after the date -> its strptime part
    (re.compile(r"^([ T])\d{1,2}:\d{2}$"), "{}%H:%M"),
    (re.compile(r"^([ T])\d{1,2}:\d{2}:\d{2}$"), "{}%H:%M:%S"),
    (re.compile(r"^([ T])\d{1,2}:\d{2}:\d{2}\.\d{1,9}$"), "{}%H:%M:%S.%f"),
)
_ORDERS = {"dayfirst": ("%d", "%m"), "monthfirst": ("%m", "%d")}
_PANDAS_RANGE = "1677-09-21 .. 2262-04-11"


def forced_format(time_format: str | None) -> str | None:
    """A strptime format given by the user (``data.time_format``), else None."""
    return time_format if time_format and "%" in time_format else None


def parse_text_times(text: pd.Series, *, name: str = "timestamp", source: str = "candles",
                     time_format: str | None = None, hint: str | None = None
                     ) -> tuple[pd.Series, str]:
    """UTC times from text, and the format they were read with.

    Args:
        text: one date / time string per row.
        name, source: for messages.
        time_format: ``dayfirst`` / ``monthfirst`` (force the order of numeric dates) or a
            strptime format (force it); None infers.
        hint: a format to prefer when the column is ambiguous (the one a model was trained
            on); never overrides a format that alone fits.

    Raises:
        DataError: a value is no date, the day / month order is ambiguous or puts the rows
            out of time order, or a date is outside pandas' range; names the format.
    """
    text = text.astype(str).str.strip()
    fixed = forced_format(time_format)
    if fixed is not None:
        log.info("%s: column '%s' read with the given format %s", source, name, fixed)
        return _strict(text, fixed, name, source, why="data.time_format"), fixed
    if time_format is None:
        try:
            return pd.to_datetime(text, utc=True, format=ISO_FORMAT), ISO_FORMAT
        except (ValueError, TypeError, OverflowError):
            pass  # not all ISO-8601 (or out of range: reported below, by row)
    numeric = _numeric_formats(text, time_format)
    if numeric:
        return _infer_order(text, numeric, name, source, hint)
    return _mixed(text, name, source), "mixed"


def _numeric_formats(text: pd.Series, order: str | None) -> list[str]:
    """Candidate strptime formats when every value is a numeric d/m/y date, else []."""
    parts = text.str.extract(_NUMERIC_DATE)
    if len(text) == 0 or parts.isna().any(axis=None):
        return []
    seps, years = set(parts[1]), {len(y) for y in parts[3]}
    rest = _time_part(parts[4])
    if len(seps) != 1 or len(years) != 1 or rest is None:
        return []
    sep, year = seps.pop(), "%Y" if years.pop() == 4 else "%y"
    orders = [order] if order in _ORDERS else list(_ORDERS)
    return [f"{_ORDERS[o][0]}{sep}{_ORDERS[o][1]}{sep}{year}{rest}" for o in orders]


def _time_part(rest: pd.Series) -> str | None:
    """The strptime part of the text after the date, when all rows share one shape."""
    if bool((rest == "").all()):
        return ""
    for pattern, fmt in _TIME_PARTS:
        found = rest.str.extract(pattern)[0]
        if not found.isna().any() and found.nunique() == 1:
            return fmt.format(found.iloc[0])
    return None


def _infer_order(text: pd.Series, formats: list[str], name: str, source: str,
                 hint: str | None) -> tuple[pd.Series, str]:
    parsed = {f: pd.to_datetime(text, format=f, utc=True, errors="coerce") for f in formats}
    complete = [f for f in formats if not parsed[f].isna().any()]
    ordered = [f for f in complete if _monotonic(parsed[f])]
    if len(ordered) == 2 and parsed[ordered[0]].equals(parsed[ordered[1]]):
        ordered = ordered[:1]  # every day equals its month: both readings agree
    if len(ordered) == 2 and hint in ordered:
        ordered = [hint]
    if len(ordered) == 1:
        fmt = ordered[0]
        log.info("%s: column '%s' read as %s dates (%s)", source, name, _order(fmt), fmt)
        return parsed[fmt], fmt
    if len(ordered) == 2:
        raise DataError(_ambiguous(text, parsed, ordered, name, source))
    if complete:
        raise DataError(_disordered(text, parsed, complete, name, source))
    raise DataError(_unreadable(text, parsed, formats, name, source))


def _order(fmt: str) -> str:
    return "day-first" if fmt.startswith("%d") else "month-first"


def _monotonic(times: pd.Series) -> bool:
    ns = times.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    steps = np.diff(ns)
    return bool(np.all(steps >= 0) or np.all(steps <= 0))


def _ambiguous(text: pd.Series, parsed: dict[str, pd.Series], formats: list[str],
               name: str, source: str) -> str:
    readings = "; ".join(f"{_order(f)} ({f}): {parsed[f].iloc[0]:%Y-%m-%d} .. "
                         f"{parsed[f].iloc[-1]:%Y-%m-%d}" for f in formats)
    return (f"{source}: column '{name}': the dates (like {text.iloc[0]!r}) can be read "
            f"day-first or month-first and both put the rows in time order ({readings}); "
            f"set data.time_format to '{formats[0]}' or '{formats[1]}' (predict: "
            "--time-format) to say which")


def _disordered(text: pd.Series, parsed: dict[str, pd.Series], formats: list[str],
                name: str, source: str) -> str:
    fmt = formats[0]
    ns = parsed[fmt].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    rising = np.count_nonzero(np.diff(ns) > 0) >= np.count_nonzero(np.diff(ns) < 0)
    row = int(np.flatnonzero(np.diff(ns) < 0 if rising else np.diff(ns) > 0)[0]) + 1
    only = ("the only day/month order that reads every value" if len(formats) == 1
            else "and read the other way round they are not in order either")
    return (f"{source}: column '{name}': read as {_order(fmt)} dates ({fmt}, {only}), row "
            f"{row} ({text.iloc[row]!r}) is out of time order after row {row - 1} "
            f"({text.iloc[row - 1]!r}); if the dates mean something else set "
            "data.time_format (e.g. '%d/%m/%Y' or '%m/%d/%Y'), else sort the rows by time")


def _unreadable(text: pd.Series, parsed: dict[str, pd.Series], formats: list[str],
                name: str, source: str) -> str:
    firsts = {f: int(np.flatnonzero(parsed[f].isna().to_numpy())[0]) for f in formats}
    row = max(firsts.values())
    tried = " nor ".join(f"{_order(f)} ({f})" for f in formats)
    return (f"{source}: row {row}, column '{name}': {text.iloc[row]!r} is not a date read "
            f"{tried}; fix the row or set data.time_format to the file's date format")


def _strict(text: pd.Series, fmt: str, name: str, source: str, *, why: str) -> pd.Series:
    parsed = pd.to_datetime(text, format=fmt, utc=True, errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise DataError(f"{source}: row {bad[0]}, column '{name}': {text.iloc[bad[0]]!r} does "
                        f"not match {why} {fmt!r}{_range_note(text.iloc[bad[0]])}; fix the row "
                        "or the format")
    return parsed


def _mixed(text: pd.Series, name: str, source: str) -> pd.Series:
    parsed = pd.to_datetime(text, utc=True, format="mixed", errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        value = text.iloc[bad[0]]
        note = _range_note(value)
        if note:
            raise DataError(f"{source}: row {bad[0]}, column '{name}': {value!r}{note}; fix "
                            "the date (a typo in the year?)")
        raise DataError(
            f"{source}: row {bad[0]}, column '{name}': {value!r} is not a timestamp; use "
            "ISO-8601 (2024-01-31 13:00:00+00:00) or epoch seconds/ms, or set "
            "data.time_format to the file's format (e.g. '%d.%m.%Y %H:%M')")
    return parsed


def _range_note(value: str) -> str:
    """' is a valid date outside ...' when ``value`` parses but pandas cannot hold it."""
    try:
        stamp = pd.Timestamp(value)  # any unit: years up to 9999 parse
    except (ValueError, TypeError, OverflowError):
        return ""
    try:
        if stamp is not pd.NaT:
            stamp.as_unit("ns")
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        return (f" is a valid date but outside the range of times pandas can hold "
                f"({_PANDAS_RANGE})")
    return ""

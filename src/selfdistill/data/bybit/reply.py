"""What a Bybit v5 kline answer means: rows to candles, status and retCode to errors.

=============================================  =====================  =========
exchange says                                  raised                 retried
=============================================  =====================  =========
retCode 10001 (bad parameter, unknown symbol)  BadRequestError        no
HTTP 403 (IP banned, region blocked)           BannedError            no
other HTTP 4xx                                 BadRequestError        no
any other retCode                              ExchangeError          no
retCode 10006 / 10018, HTTP 429                RateLimitError         yes
retCode 10000 / 10016, HTTP 5xx                ServerError            yes
timeout, cut body, non-JSON body               TransportError         yes
row of wrong length, unparseable number        DataError              no
=============================================  =====================  =========

(Transport faults are raised by the client; everything else here.)
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pandas as pd

from selfdistill.errors import (
    BadRequestError,
    BannedError,
    DataError,
    ExchangeError,
    RateLimitError,
    ServerError,
    TransportError,
)

__all__ = [
    "KLINE_PATH",
    "RESET_HEADER",
    "check_envelope",
    "check_status",
    "decode_json",
    "describe_request",
    "parse_kline_rows",
]

KLINE_PATH = "/v5/market/kline"
RESET_HEADER = "X-Bapi-Limit-Reset-Timestamp"
_FIELDS = ("open", "high", "low", "close", "volume", "turnover")
_RATE_LIMIT_CODES = frozenset({10006, 10018})
_SERVER_CODES = frozenset({10000, 10016})
_BANNED_HELP = (
    "HTTP 403 Forbidden: Bybit refuses requests from this IP (a rate-limit ban) or "
    "from this region (blocked). Stopped without retrying: wait at least 10 minutes "
    "before fetching again (repeated bans last longer), or use a network in a "
    "permitted region"
)


def describe_request(params: dict[str, Any]) -> str:
    """``GET /v5/market/kline?category=...``: names a request in messages (curl-able)."""
    return f"GET {KLINE_PATH}?" + "&".join(f"{k}={v}" for k, v in params.items())


def parse_kline_rows(rows: Any, *, request: str) -> pd.DataFrame:
    """Convert Bybit kline rows (newest-first, all strings) into ascending candles.

    Args:
        rows: ``result.list``: ``[[startTime, open, high, low, close, volume, turnover], ...]``.
        request: the request the rows answer, named in error messages.

    Returns:
        DataFrame indexed by UTC ``open_time`` (ascending, unique), float64 columns
        open, high, low, close, volume, turnover; shape (n_unique_rows, 6).

    Raises:
        DataError: a row has the wrong length or a field is not a finite number.
    """
    if not isinstance(rows, list):
        raise DataError(f"{request}: result.list is {type(rows).__name__}, expected a list")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 1 + len(_FIELDS):
            raise DataError(
                f"{request}: row {i} is {row!r}; expected 7 fields "
                "[startTime, open, high, low, close, volume, turnover]")
    table = np.array(rows, dtype=object).reshape(len(rows), 1 + len(_FIELDS))
    try:
        times = table[:, 0].astype(np.int64)
        values = table[:, 1:].astype(np.float64)
        finite = bool(np.isfinite(values).all())
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise DataError(f"{request}: {_first_bad_cell(table)}; expected numbers as strings")
    index = pd.DatetimeIndex(pd.to_datetime(times, unit="ms", utc=True), name="open_time")
    frame = pd.DataFrame(values, index=index, columns=list(_FIELDS)).sort_index()
    return frame[~frame.index.duplicated(keep="first")]


def _first_bad_cell(table: np.ndarray) -> str:
    """Describe the first field of ``table`` that is not a finite number."""
    names = ("startTime", *_FIELDS)
    for i, row in enumerate(table):
        for name, cell in zip(names, row, strict=True):
            try:
                number = int(cell) if name == "startTime" else float(cell)
            except (TypeError, ValueError):
                number = None
            if number is None or not np.isfinite(number):
                return f"row {i} field {name} is {cell!r}, not a finite number"
    return "a field is not a number"  # pragma: no cover - only called after a failure


def decode_json(response: httpx.Response, request: str) -> dict[str, Any]:
    """The JSON object in ``response``.

    Raises:
        TransportError: the body is not JSON (an HTML page from a proxy, garbage).
    """
    try:
        payload = response.json()
    except ValueError as exc:
        kind = response.headers.get("content-type", "no content-type")
        raise TransportError(f"{request}: the body is not JSON ({kind}, starts "
                             f"{response.text[:60]!r})", status_code=200) from exc
    if not isinstance(payload, dict):
        raise TransportError(f"{request}: the body is JSON but not an object")
    return payload


def check_status(response: httpx.Response, request: str, retry_after: float | None) -> None:
    """Raise the error an HTTP status other than 200 means (``retry_after``: reset wait, s)."""
    code = response.status_code
    if code == 200:
        return
    if code == 403:
        raise BannedError(f"{request}: {_BANNED_HELP}", status_code=code)
    if code == 429:
        raise RateLimitError(f"{request}: HTTP 429 Too Many Requests", status_code=code,
                             retry_after=retry_after)
    if code >= 500:
        raise ServerError(f"{request}: HTTP {code} {response.reason_phrase}", status_code=code)
    hint = "; check --base-url" if code == 404 else ""
    raise BadRequestError(f"{request}: HTTP {code} {response.reason_phrase}{hint}",
                          status_code=code)


def check_envelope(payload: dict[str, Any], request: str, retry_after: float | None) -> None:
    """Raise the error a ``retCode`` other than 0 means."""
    code, message = payload.get("retCode"), payload.get("retMsg", "")
    if code == 0:
        return
    text = f"{request}: Bybit answered retCode {code} {message!r}"
    if code in _RATE_LIMIT_CODES:
        raise RateLimitError(text, ret_code=code, retry_after=retry_after)
    if code in _SERVER_CODES:
        raise ServerError(text, ret_code=code)
    if code == 10001:
        raise BadRequestError(f"{text} (a bad parameter, e.g. a symbol this category "
                              "does not list)", ret_code=code)
    raise ExchangeError(text, ret_code=code if isinstance(code, int) else None)

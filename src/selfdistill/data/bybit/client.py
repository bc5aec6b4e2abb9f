"""A Bybit v5 market-data client: ``GET /v5/market/kline`` over httpx.

Long histories are fetched as windows of at most 1000 candles, each asked for
with both ``start`` and ``end``, so nothing depends on which end the exchange
cuts when a range holds more than ``limit`` candles. Rows arrive newest-first
with every field a string; they are converted to float64, sorted ascending,
de-duplicated on open time, and the still-open last candle is dropped.

Every user input (symbol, interval, category, dates) is checked before it
reaches a request or a file path (:class:`~selfdistill.data.bybit.request.MarketKey`).
Faults map onto :mod:`selfdistill.errors` as :mod:`selfdistill.data.bybit.reply`
tabulates: 10001 and HTTP 403 fail at once (403 with the advice to wait at
least 10 minutes); rate limits, server errors and transport faults (timeouts,
cut or non-JSON bodies) are retried by :class:`~selfdistill.data.bybit.ratelimit.RetryPolicy`
(exponential backoff with jitter, or the wait in ``X-Bapi-Limit-Reset-Timestamp``
when present). All requests pass one :class:`~selfdistill.data.bybit.ratelimit.TokenBucket`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd

from selfdistill.data.bybit.ratelimit import (
    BYBIT_LIMIT_PER_5S,
    DEFAULT_RATE,
    Cancelled,
    Clock,
    RetryPolicy,
    Sleep,
    TokenBucket,
)
from selfdistill.data.bybit.reply import (
    KLINE_PATH,
    RESET_HEADER,
    check_envelope,
    check_status,
    decode_json,
    describe_request,
    parse_kline_rows,
)
from selfdistill.data.bybit.request import (
    CATEGORIES,
    MAX_LIMIT,
    MarketKey,
    TimeLike,
    Window,
    floor_open,
    plan_windows,
    resolve_range,
    to_ms,
)
from selfdistill.errors import (
    BannedError,
    ConfigError,
    RateLimitError,
    RetryableError,
    TransportError,
)

__all__ = [
    "CATEGORIES",
    "KLINE_PATH",
    "MAINNET_URL",
    "MAX_LIMIT",
    "TESTNET_URL",
    "BybitClient",
    "KlinePage",
    "MarketKey",
    "WindowResult",
    "parse_kline_rows",
]

logger = logging.getLogger(__name__)

MAINNET_URL = "https://api.bybit.com"
TESTNET_URL = "https://api-testnet.bybit.com"


@dataclass(frozen=True)
class KlinePage:
    """One answered kline request.

    Attributes:
        candles: closed and still-open candles, ascending (see :func:`parse_kline_rows`).
        server_time: the exchange's clock when it answered, tz-aware UTC.
    """

    candles: pd.DataFrame
    server_time: pd.Timestamp


@dataclass(frozen=True)
class WindowResult:
    """The closed candles of one window and how far they are known to be complete.

    Attributes:
        window: the window asked for.
        candles: closed candles with open time in ``[window.first, covered_until)``.
        covered_until: exclusive open-time bound up to which the window is complete
            (``window.end`` unless the window reaches the exchange's still-open candle).
    """

    window: Window
    candles: pd.DataFrame
    covered_until: pd.Timestamp


class BybitClient:
    """Bybit v5 kline client with a rate limiter, retries and bounded concurrency.

    Args:
        base_url: ``https://api.bybit.com`` (mainnet), ``https://api-testnet.bybit.com``
            or a local server such as ``http://127.0.0.1:8123``.
        timeout: seconds to wait for each response.
        rate: requests per second allowed by the client-side token bucket.
        burst: requests allowed back to back (default: ``rate`` capped to [1, 10]).
        concurrency: windows in flight at once in :meth:`fetch_windows` (1-16).
        retry: backoff policy for retryable faults.
        clock: monotonic seconds for the limiter; ``wall_clock``: epoch seconds, used
            to read the reset header; ``sleep``: how to wait (default: an
            interruptible sleep). Tests inject fakes.
        seed: seed of the backoff jitter (None: unpredictable).

    Example:
        >>> with BybitClient("http://127.0.0.1:8123") as client:  # doctest: +SKIP
        ...     frame = client.fetch(MarketKey("linear", "BTCUSDT", "60"),
        ...                          pd.Timestamp("2024-01-01", tz="UTC"),
        ...                          pd.Timestamp("2024-02-01", tz="UTC"))
    """

    def __init__(self, base_url: str = MAINNET_URL, *, timeout: float = 10.0,
                 rate: float = DEFAULT_RATE, burst: float | None = None, concurrency: int = 3,
                 retry: RetryPolicy | None = None, clock: Clock = time.monotonic,
                 wall_clock: Clock = time.time, sleep: Sleep | None = None,
                 seed: int | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base URL {base_url!r} must start with http:// or https://, "
                              f"e.g. {MAINNET_URL} or {TESTNET_URL}")
        if not 1 <= concurrency <= 16:
            raise ConfigError(f"concurrency {concurrency!r} must be between 1 and 16")
        if not rate > 0 or not timeout > 0:
            raise ConfigError(f"rate ({rate!r}) and timeout ({timeout!r}) must be > 0")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.limiter = TokenBucket(rate, burst, clock=clock, sleep=sleep)
        if self.limiter.burst + 5 * self.limiter.rate > BYBIT_LIMIT_PER_5S:
            logger.warning("rate %g/s with bursts of %g can exceed Bybit's %d requests per 5 s "
                           "per IP; expect rate-limit errors or a 403 ban", rate,
                           self.limiter.burst, BYBIT_LIMIT_PER_5S)
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout,
                                  headers={"User-Agent": "selfdistill"},
                                  limits=httpx.Limits(max_connections=concurrency))
        self.requests_made = 0  # HTTP requests sent, retries included
        self._count_lock = threading.Lock()
        self._banned: BannedError | None = None

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> BybitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ one request

    def get_kline(self, key: MarketKey, start: pd.Timestamp, end: pd.Timestamp, *,
                  limit: int = MAX_LIMIT, cancel: threading.Event | None = None) -> KlinePage:
        """One kline request for open times in ``[start, end]``, retried on transient faults.

        Raises:
            BadRequestError, BannedError, ExchangeError: not retried.
            RetryableError: still failing after ``retry.max_retries`` retries.
            DataError: malformed rows.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ConfigError(f"limit {limit!r} must be between 1 and {MAX_LIMIT}")
        params = {"category": key.category, "symbol": key.symbol, "interval": key.interval,
                  "start": to_ms(start), "end": to_ms(end), "limit": limit}
        request = describe_request(params)
        payload = self._get_with_retries(params, request, cancel)
        result = payload.get("result")
        rows = result.get("list") if isinstance(result, dict) else None
        candles = parse_kline_rows(rows, request=request)
        stamp = payload.get("time")
        seconds = stamp / 1000.0 if isinstance(stamp, int | float) else self._wall_clock()
        return KlinePage(candles, pd.Timestamp(seconds, unit="s", tz="UTC"))

    def _get_with_retries(self, params: dict[str, Any], request: str,
                          cancel: threading.Event | None) -> dict[str, Any]:
        attempts = self.retry.max_retries + 1
        for attempt in range(attempts):
            if self._banned is not None:  # never knock again on a door that said 403
                raise BannedError(str(self._banned), status_code=403)
            self.limiter.acquire(cancel)
            try:
                return self._get_once(params, request)
            except BannedError as exc:
                self._banned = exc
                raise
            except RetryableError as exc:
                if attempt + 1 == attempts:
                    raise type(exc)(f"{exc}; gave up after {attempts} attempts",
                                    ret_code=exc.ret_code, status_code=exc.status_code,
                                    retry_after=exc.retry_after) from exc
                delay = self.retry.delay(attempt, exc.retry_after, self._rng)
                if isinstance(exc, RateLimitError):
                    self.limiter.pause(delay)  # every worker backs off, not just this one
                logger.warning("%s; retry %d of %d in %.2f s", exc, attempt + 1,
                               attempts - 1, delay)
                self._wait(delay, cancel)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, seconds: float, cancel: threading.Event | None) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        elif cancel is not None:
            cancel.wait(seconds)
        else:
            time.sleep(seconds)
        if cancel is not None and cancel.is_set():
            raise Cancelled

    def _get_once(self, params: dict[str, Any], request: str) -> dict[str, Any]:
        with self._count_lock:
            self.requests_made += 1
        try:
            response = self._http.get(KLINE_PATH, params=params)
        except httpx.TimeoutException as exc:
            raise TransportError(f"{request}: no response within {self.timeout:g} s "
                                 f"({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:  # connection refused/reset, body cut short
            raise TransportError(f"{request}: {type(exc).__name__}: {exc}") from exc
        retry_after = self._reset_wait(response)
        check_status(response, request, retry_after)
        payload = decode_json(response, request)
        check_envelope(payload, request, retry_after)
        return payload

    def _reset_wait(self, response: httpx.Response) -> float | None:
        """Seconds until ``X-Bapi-Limit-Reset-Timestamp`` (ms), or None without the header."""
        text = response.headers.get(RESET_HEADER)
        try:
            return int(text) / 1000.0 - self._wall_clock() if text else None
        except ValueError:
            return None

    # ------------------------------------------------------------ many windows

    def fetch_window(self, key: MarketKey, window: Window,
                     cancel: threading.Event | None = None) -> WindowResult:
        """Fetch the closed candles of one window (both bounds sent)."""
        end = window.end - pd.Timedelta(milliseconds=1)  # the last open time it may hold
        page = self.get_kline(key, window.first, end, cancel=cancel)
        still_open = floor_open(page.server_time, key.interval)
        until = max(window.first, min(window.end, still_open))
        index = page.candles.index
        inside = (index >= window.first) & (index < until)
        if (~inside).any():
            logger.debug("%s: dropped %d rows outside [%s, %s)", key, int((~inside).sum()),
                         window.first, until)
        return WindowResult(window, page.candles[inside], until)

    def fetch_windows(self, key: MarketKey, windows: Iterable[Window]) -> Iterator[WindowResult]:
        """Fetch windows with up to ``concurrency`` in flight; yield results in input order.

        On the first failure the remaining windows are cancelled and the error
        is raised after every earlier window has been yielded, so a caller that
        stores results as they come never holds a hole.
        """
        cancel = threading.Event()
        failures: list[BaseException] = []

        def work(window: Window) -> WindowResult:
            try:
                return self.fetch_window(key, window, cancel)
            except Cancelled:
                raise
            except BaseException as exc:  # stop the other workers at once
                failures.append(exc)
                cancel.set()
                raise

        todo = iter(windows)
        pending: deque[Future[WindowResult]] = deque()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="bybit") as pool:
            try:
                for _ in range(2 * self.concurrency):  # keep the pool busy between yields
                    _submit(pool, pending, work, todo)
                while pending:
                    try:
                        result = pending.popleft().result()
                    except Cancelled:  # a later window failed first: raise its error,
                        # with its own cause (an httpx error, say), not the cancellation
                        raise failures[0] from failures[0].__cause__
                    _submit(pool, pending, work, todo)
                    yield result
            finally:
                cancel.set()
                for future in pending:
                    future.cancel()

    def fetch(self, key: MarketKey, start: TimeLike, end: TimeLike | None = None) -> pd.DataFrame:
        """All closed candles with open time in ``[start, end)`` (end None: now), no store.

        Returns:
            Ascending candles (not yet validated), shape (n, 6); see :func:`parse_kline_rows`.
        """
        now = pd.Timestamp(self._wall_clock(), unit="s", tz="UTC")
        first, stop = resolve_range(start, end, key.interval, now=now)
        windows = plan_windows(first, stop, key.interval)
        frames = [r.candles for r in self.fetch_windows(key, windows)]
        return pd.concat(frames) if frames else parse_kline_rows([], request=str(key))


def _submit(pool: ThreadPoolExecutor, pending: deque[Future[WindowResult]],
            work: Callable[[Window], WindowResult], todo: Iterator[Window]) -> None:
    window = next(todo, None)
    if window is not None:
        pending.append(pool.submit(work, window))

"""Bybit v5 public WebSocket kline stream: connect, subscribe, heartbeat, parse, notice staleness.

Protocol (Bybit v5 docs, "WebSocket Stream: Connect" and "Public: Kline"):

- URL ``wss://stream.bybit.com/v5/public/{spot|linear|inverse}`` (testnet:
  ``wss://stream-testnet.bybit.com/...``); public topics need no key.
- Subscribe with ``{"op": "subscribe", "args": ["kline.{interval}.{symbol}"]}``; the
  server acknowledges with ``{"op": "subscribe", "success": true|false, "ret_msg": ...}``.
- Heartbeat: the client sends ``{"op": "ping"}`` every 20 s; the answer is
  ``{"op": "pong", ...}`` (linear / inverse) or ``{"op": "ping", "ret_msg": "pong", ...}``
  (spot). Idle connections are closed by the server.
- Pushes (every 1-60 s): ``{"topic": "kline.5.BTCUSDT", "type": "snapshot", "ts": ...,
  "data": [{"start", "end", "interval", "open", "close", "high", "low", "volume",
  "turnover", "confirm", "timestamp"}]}``; prices are strings, ``start`` / ``end`` are
  ms; ``confirm: true`` marks the closed candle, every other push updates the candle
  that is still open.

:class:`KlineStream` is one connection: ``async with`` connects and subscribes; iterating
yields :class:`Kline` updates (confirmed and not: the caller decides what to keep).
A message that does not parse, or a candle that breaks the candle rules (high below
low, a price that is not a positive number, an open time off the interval grid) is
logged, counted in :attr:`KlineStream.malformed` and skipped; a confirmed candle lost
this way leaves a hole that the caller's REST backfill fills. The connection is
declared lost (:class:`StreamLost`) when it closes, when a ping goes unanswered for
``pong_timeout`` seconds, or when no kline push arrives for ``stale_after`` seconds
(a frozen feed whose heartbeat still answers). Reconnecting is the caller's job (with
:class:`~selfdistill.data.bybit.ratelimit.RetryPolicy` backoff and jitter).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from selfdistill.data.bybit.request import MarketKey
from selfdistill.data.intervals import interval_to_timedelta
from selfdistill.errors import BadRequestError, ConfigError, TransportError

__all__ = ["MAINNET_WS_URL", "PING_INTERVAL", "TESTNET_WS_URL", "Kline", "KlineStream",
           "StreamLost", "parse_message", "public_url", "topic_of"]

logger = logging.getLogger(__name__)

MAINNET_WS_URL = "wss://stream.bybit.com/v5/public/{category}"
TESTNET_WS_URL = "wss://stream-testnet.bybit.com/v5/public/{category}"
#: Seconds between heartbeat pings (Bybit: every 20 s).
PING_INTERVAL = 20.0
_EXCERPT = 120  # characters of a bad message shown in the log


class StreamLost(TransportError):
    """The WebSocket connection is gone or useless; ``reason`` says which.

    ``reason`` is ``closed`` (the server or the network ended it), ``stale`` (no
    kline push within ``stale_after`` seconds), ``no-pong`` (the heartbeat went
    unanswered) or ``stopped`` (:meth:`KlineStream.interrupt`). A
    :class:`~selfdistill.errors.TransportError`: worth a reconnect.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Kline:
    """One kline push for one candle.

    Attributes:
        open_ms: the candle's open time, ms since the epoch (UTC).
        open, high, low, close, volume, turnover: its values so far (final when confirmed).
        confirmed: the candle is closed; its values will not change.
        received: ``time.perf_counter()`` when the message was read (for latency).
    """

    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    turnover: float
    confirmed: bool
    received: float


def public_url(category: str, *, testnet: bool = False) -> str:
    """The public stream URL of ``category`` (spot, linear, inverse)."""
    return (TESTNET_WS_URL if testnet else MAINNET_WS_URL).format(category=category)


def _number(entry: dict[str, Any], name: str) -> float:
    value = float(entry[name])  # Bybit sends strings; numbers are accepted too
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} {entry[name]!r} is not a non-negative number")
    return value


def _kline(entry: Any, key: MarketKey, step_ms: int | None, received: float) -> Kline:
    """One ``data`` entry as a Kline; ValueError / KeyError / TypeError when malformed."""
    if not isinstance(entry, dict):
        raise TypeError(f"a data entry is {type(entry).__name__}, not an object")
    start = entry["start"]
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise ValueError(f"start {start!r} is not a time in ms")
    if step_ms is not None and start % step_ms:
        raise ValueError(f"start {start} is not on the {key.interval} interval grid")
    if str(entry.get("interval", key.interval)) != key.interval:
        raise ValueError(f"interval {entry.get('interval')!r} is not {key.interval!r}")
    confirm = entry["confirm"]
    if not isinstance(confirm, bool):
        raise ValueError(f"confirm {confirm!r} is not true or false")
    o, h, lo, c = (_number(entry, k) for k in ("open", "high", "low", "close"))
    if not 0 < lo <= min(o, c) <= max(o, c) <= h:
        raise ValueError(f"prices break low <= open, close <= high (o={o}, h={h}, l={lo}, c={c})")
    return Kline(start, o, h, lo, c, _number(entry, "volume"), _number(entry, "turnover"),
                 confirm, received)


def parse_message(text: str | bytes, key: MarketKey, *,
                  received: float | None = None) -> tuple[str, list[Kline] | dict[str, Any]]:
    """Decode one message of the public stream.

    Returns:
        ``("kline", [Kline, ...])`` for a push of ``key``'s topic, ``("pong", msg)``,
        ``("subscribe", msg)`` for a subscription answer, ``("other", msg)`` for
        anything else that is valid JSON (another topic, an unknown op).

    Raises:
        ValueError: the message is not JSON, or a push of our topic is malformed
            (the message says what is wrong).
    """
    stamp = time.perf_counter() if received is None else received
    try:
        msg = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from exc
    if not isinstance(msg, dict):
        raise ValueError(f"a {type(msg).__name__}, not a JSON object")
    op = msg.get("op")
    if op == "pong" or msg.get("ret_msg") == "pong":
        return "pong", msg
    if op == "subscribe":
        return "subscribe", msg
    if msg.get("topic") != topic_of(key):
        return "other", msg
    data = msg.get("data")
    if not isinstance(data, list) or not data:
        raise ValueError("a push without a 'data' list")
    step = interval_to_timedelta(key.interval)
    step_ms = None if step is None else int(step.total_seconds() * 1000)
    try:
        return "kline", [_kline(entry, key, step_ms, stamp) for entry in data]
    except KeyError as exc:
        raise ValueError(f"a data entry lacks {exc}") from exc
    except TypeError as exc:
        raise ValueError(str(exc)) from exc


def topic_of(key: MarketKey) -> str:
    """``kline.{interval}.{symbol}``."""
    return f"kline.{key.interval}.{key.symbol}"


def _excerpt(text: str | bytes) -> str:
    shown = text if isinstance(text, str) else text.decode("utf-8", "replace")
    return shown if len(shown) <= _EXCERPT else shown[:_EXCERPT] + "..."


class KlineStream:
    """One subscribed connection to the public kline stream of ``key``.

    A reader task reads every message as it arrives (so pongs are seen and the
    heartbeat holds while the caller is busy, say backfilling over REST) and queues
    the klines of our topic; iterating the stream takes them from the queue.

    Args:
        url: the stream URL (see :func:`public_url`), ``ws://`` for a local server.
        key: the candle series.
        stale_after: seconds without a kline push before the feed counts as frozen.
        ping_interval: seconds between heartbeat pings (Bybit: 20).
        pong_timeout: seconds a ping may go unanswered.
        open_timeout: seconds to connect and get the subscription answered.

    Example:
        >>> async with KlineStream(public_url("linear"), key, stale_after=120) as stream:
        ...     async for kline in stream:  # doctest: +SKIP
        ...         if kline.confirmed: ...
    """

    def __init__(self, url: str, key: MarketKey, *, stale_after: float,
                 ping_interval: float = PING_INTERVAL, pong_timeout: float = 10.0,
                 open_timeout: float = 10.0) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"WebSocket URL {url!r} must start with ws:// or wss://, e.g. "
                              f"{public_url(key.category)}")
        if not (stale_after > 0 and ping_interval > 0 and pong_timeout > 0 and open_timeout > 0):
            raise ConfigError("stale_after, ping_interval, pong_timeout and open_timeout must be "
                              "> 0 seconds")
        self.url, self.key, self.topic = url, key, topic_of(key)
        self.stale_after, self.ping_interval = float(stale_after), float(ping_interval)
        self.pong_timeout, self.open_timeout = float(pong_timeout), float(open_timeout)
        self.malformed = 0  # messages or candles skipped as malformed
        self.pongs = 0
        self._ws: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[Kline | None] = asyncio.Queue()
        self._last_push = time.monotonic()
        self._unanswered_since: float | None = None
        self._lost: StreamLost | None = None

    async def __aenter__(self) -> KlineStream:
        from websockets.asyncio.client import connect

        try:
            self._ws = await asyncio.wait_for(
                connect(self.url, ping_interval=None, close_timeout=1.0, max_size=2**20,
                        user_agent_header="selfdistill"), self.open_timeout)
        except (OSError, TimeoutError) as exc:
            raise StreamLost(f"cannot connect to {self.url}: {exc or type(exc).__name__}",
                             reason="closed") from exc
        except Exception as exc:  # websockets' handshake errors (InvalidStatus, InvalidURI, ...)
            raise StreamLost(f"cannot open a WebSocket to {self.url}: {exc}",
                             reason="closed") from exc
        try:
            await asyncio.wait_for(self._subscribe(), self.open_timeout)
        except TimeoutError:
            await self.close()
            raise StreamLost(f"{self.url} did not answer the subscription to {self.topic} "
                             f"within {self.open_timeout:g} s", reason="closed") from None
        except BaseException:
            await self.close()
            raise
        self._last_push = time.monotonic()
        self._tasks = [asyncio.create_task(self._read_forever(), name="bybit-reader"),
                       asyncio.create_task(self._ping_forever(), name="bybit-heartbeat")]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the reader and the heartbeat and close the connection (idempotent)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._ws is not None:
            ws, self._ws = self._ws, None
            with contextlib.suppress(Exception):
                await ws.close()

    async def _subscribe(self) -> None:
        await self._send({"op": "subscribe", "req_id": "selfdistill", "args": [self.topic]})
        while True:
            kind, body = self._parse(await self._recv())
            if kind == "subscribe" and isinstance(body, dict):
                if body.get("success") is False:
                    raise BadRequestError(f"Bybit refused the subscription to {self.topic} at "
                                          f"{self.url}: {body.get('ret_msg') or body}; check the "
                                          "symbol, interval and category")
                logger.info("subscribed to %s at %s", self.topic, self.url)
                return
            if kind == "kline" and isinstance(body, list):
                for kline in body:  # a push that overtook the answer: keep it
                    self._queue.put_nowait(kline)

    async def _send(self, payload: dict[str, Any]) -> None:
        from websockets.exceptions import ConnectionClosed

        if self._ws is None:
            raise StreamLost("the connection is closed", reason="closed")
        try:
            await self._ws.send(json.dumps(payload))
        except ConnectionClosed as exc:
            raise StreamLost(f"the connection to {self.url} closed ({exc})",
                             reason="closed") from exc

    async def _recv(self) -> str | bytes:
        from websockets.exceptions import ConnectionClosed

        if self._ws is None:
            raise StreamLost("the connection is closed", reason="closed")
        try:
            message: str | bytes = await self._ws.recv()
        except ConnectionClosed as exc:
            raise self._lost or StreamLost(f"the connection to {self.url} closed ({exc})",
                                           reason="closed") from exc
        return message

    def _parse(self, text: str | bytes) -> tuple[str, list[Kline] | dict[str, Any]]:
        try:
            kind, body = parse_message(text, self.key)
        except ValueError as exc:
            self.malformed += 1
            logger.warning("skipped a malformed message from %s (%s): %s", self.url, exc,
                           _excerpt(text))
            return "malformed", {}
        if kind == "pong":
            self.pongs += 1
            self._unanswered_since = None
        return kind, body

    async def _read_forever(self) -> None:
        try:
            while True:
                kind, body = self._parse(await self._recv())
                if kind == "kline" and isinstance(body, list):
                    self._last_push = time.monotonic()
                    for kline in body:
                        self._queue.put_nowait(kline)
        except StreamLost as exc:
            self._lost = self._lost or exc
            self._queue.put_nowait(None)  # wakes the consumer, which raises self._lost

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            now = time.monotonic()
            if self._unanswered_since is not None and \
                    now - self._unanswered_since > self.pong_timeout:
                self._lost = StreamLost(f"no pong from {self.url} for "
                                        f"{now - self._unanswered_since:.1f} s", reason="no-pong")
                if self._ws is not None:
                    with contextlib.suppress(Exception):
                        await self._ws.close(code=1011, reason="heartbeat timeout")
                return
            with contextlib.suppress(StreamLost):
                await self._send({"op": "ping", "req_id": "selfdistill"})
            if self._unanswered_since is None:
                self._unanswered_since = now

    def interrupt(self) -> None:
        """Make the next :meth:`next` raise StreamLost (reason ``stopped``) once the klines
        already received are taken; safe to call from a signal handler."""
        self._lost = self._lost or StreamLost("stopped on request", reason="stopped")
        self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Kline]:
        return self._klines()

    async def _klines(self) -> AsyncIterator[Kline]:
        while True:
            yield await self.next()

    async def next(self) -> Kline:
        """The next kline update; StreamLost when the connection or the feed is gone."""
        if self._queue.empty():
            wait = self._last_push + self.stale_after - time.monotonic()
            try:
                item = await asyncio.wait_for(self._queue.get(), max(wait, 1e-3))
            except TimeoutError:
                raise StreamLost(f"no kline push from {self.url} for {self.stale_after:g} s "
                                 "(stale feed)", reason="stale") from None
        else:
            item = self._queue.get_nowait()
        if item is None:
            self._queue.put_nowait(None)  # stays lost for every later call
            raise self._lost or StreamLost("the connection is closed", reason="closed")
        return item

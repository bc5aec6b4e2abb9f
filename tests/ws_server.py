"""A fake Bybit v5 public WebSocket kline stream: real WebSockets on 127.0.0.1, scripted faults.

It speaks the public stream the way Bybit does (see ``selfdistill.data.bybit.stream``):
``{"op": "subscribe", "args": ["kline.1.BTCUSDT"]}`` is answered with
``{"success": true, "op": "subscribe", ...}`` (``false`` with ``ret_msg`` for a symbol it
does not list), ``{"op": "ping"}`` with ``{"op": "pong", ...}``, and candles are pushed
as ``{"topic", "type": "snapshot", "ts", "data": [{start, end, interval, open, close,
high, low, volume, turnover, confirm, timestamp}]}`` with string prices.

The market is a sequence of ``candles`` candles from ``first_open`` on. For each it pushes
``updates`` unconfirmed updates (partial values that differ from the final candle),
moves the shared :class:`VirtualClock` past the candle's close and pushes it confirmed,
then sleeps ``pace`` real seconds. It advances only while a client is subscribed, so a
test is not a race with reconnect timing. Confirmed values come from tests/bybit_klines.py,
the same function the fake REST exchange (tests/bybit_server.py) serves, so stream and REST
agree unless a fault says otherwise; give both servers the same clock.

Faults, per candle index (:class:`Fault`): ``drop`` (the connection is cut before the
candle's confirmation; ``missed`` more candles close while nobody listens), ``duplicate``
(the confirmation twice), ``out_of_order`` (this candle's confirmation after the next
one's), ``malformed`` (broken messages before the candle), ``stale`` (no push for
``seconds`` while the heartbeat still answers and ``missed`` candles close unseen),
``conflict`` (the confirmation carries a close REST does not), ``silent`` (neither pushes
nor pongs for ``seconds``: a half-open connection). ``gaps`` are candles the exchange never
had (maintenance).

The truth: :meth:`FakeBybitStream.closed_times` (every candle the market closed),
:attr:`sent` (what was pushed on which connection), ``connections``, ``pings``.

Run it by hand with the fake REST exchange (Ctrl-C stops both)::

    python -m tests.ws_server --port 8124 --rest-port 8123 --speed 60
    selfdistill live --model MODEL --symbol BTCUSDT --interval 1 \\
        --base-url http://127.0.0.1:8123 --ws-url ws://127.0.0.1:8124/v5/public/linear
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

if __package__:  # python -m tests.ws_server
    from .bybit_klines import INTERVAL_MINUTES, kline_rows, to_ms
else:  # imported with tests/ on sys.path (pytest, benchmarks)
    from bybit_klines import INTERVAL_MINUTES, kline_rows, to_ms


class VirtualClock:
    """Epoch seconds that the fake market moves forward; callable like ``time.time``."""

    def __init__(self, start: str | pd.Timestamp | float) -> None:
        self._now = float(start) if isinstance(start, int | float) else to_ms(start) / 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def set(self, seconds: float) -> None:
        with self._lock:
            self._now = max(self._now, float(seconds))


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour at a candle; build with the class methods."""

    kind: str
    missed: int = 0
    seconds: float = 0.0

    @classmethod
    def drop(cls, missed: int = 0) -> Fault:
        return cls("drop", missed=missed)

    @classmethod
    def duplicate(cls) -> Fault:
        return cls("duplicate")

    @classmethod
    def out_of_order(cls) -> Fault:
        return cls("out_of_order")

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")

    @classmethod
    def stale(cls, seconds: float, missed: int = 0) -> Fault:
        return cls("stale", missed=missed, seconds=seconds)

    @classmethod
    def conflict(cls) -> Fault:
        return cls("conflict")

    @classmethod
    def silent(cls, seconds: float) -> Fault:
        return cls("silent", seconds=seconds)


#: What ``malformed`` sends: not JSON, not an object, a push without data, a candle
#: without a close, a price that is not a number, high below low, an off-grid start.
def _malformed(topic: str, good: dict[str, Any]) -> list[str]:
    def push(entry: dict[str, Any]) -> str:
        return json.dumps({"topic": topic, "type": "snapshot", "ts": 0, "data": [entry]})

    no_close = {k: v for k, v in good.items() if k != "close"}
    return ["{not json", "[1, 2]", json.dumps({"topic": topic, "ts": 0}), push(no_close),
            push({**good, "close": "abc"}), push({**good, "high": "0.5", "low": "9e9"}),
            push({**good, "start": good["start"] + 7})]


@dataclass(frozen=True)
class Sent:
    """One push: on which connection, which candle, confirmed or not, and its close."""

    connection: int
    open_ms: int
    confirmed: bool
    close: float


@dataclass
class FakeBybitStream:
    """The fake public stream. Use as a context manager; :meth:`url` is its WebSocket URL.

    Args:
        clock: the market's clock (share it with the fake REST exchange).
        first_open: open time of the first candle streamed.
        candles: how many candles the market closes, then it goes quiet.
        interval, category, symbols: the series it serves.
        updates: unconfirmed pushes per candle.
        pace: real seconds between candles.
        faults: ``{candle index: Fault}``.
        gaps: ``(start, end)`` open-time ranges with no candles (never pushed).
    """

    clock: VirtualClock
    first_open: str
    candles: int
    interval: str = "1"
    category: str = "linear"
    symbols: tuple[str, ...] = ("BTCUSDT",)
    updates: int = 2
    pace: float = 0.0
    faults: dict[int, Fault] = field(default_factory=dict)
    gaps: list[tuple[str, str]] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        self.step_ms = INTERVAL_MINUTES[self.interval] * 60_000
        self.sent: list[Sent] = []
        self.connections = 0
        self.pings = 0
        self.done = threading.Event()
        self._clients: dict[int, Any] = {}  # connection number -> subscribed connection
        self._muted: set[int] = set()  # connections that get no pushes and no pongs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeBybitStream:
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-bybit-ws")
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the fake WebSocket server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeBybitStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, category: str | None = None) -> str:
        return f"ws://{self.host}:{self.port}/v5/public/{category or self.category}"

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._subscribed = asyncio.Event()
        async with serve(self._handle, self.host, self.port, ping_interval=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._started.set()
            market = asyncio.create_task(self._market())
            await self._stop.wait()
            market.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await market

    # ------------------------------------------------------------------ the truth

    def open_ms(self, index: int) -> int:
        return to_ms(self.first_open) + index * self.step_ms

    def _in_gap(self, open_ms: int) -> bool:
        return any(to_ms(a) <= open_ms < to_ms(b) for a, b in self.gaps)

    def closed_times(self, since: str | pd.Timestamp) -> pd.DatetimeIndex:
        """Open times of every candle closed by now from ``since`` on (gaps left out)."""
        now_ms = int(self.clock() * 1000)
        first = to_ms(since)
        times = [t for t in range(first, now_ms - self.step_ms + 1, self.step_ms)
                 if not self._in_gap(t)]
        return pd.DatetimeIndex(pd.to_datetime(times, unit="ms", utc=True), name="open_time")

    def confirmed_sent(self) -> list[int]:
        return [s.open_ms for s in self.sent if s.confirmed]

    # ------------------------------------------------------------------ connections

    async def _handle(self, ws: Any) -> None:
        self.connections += 1
        number = self.connections
        try:
            async for text in ws:
                await self._answer(ws, number, text)
        except Exception:  # a dropped connection: nothing to answer
            pass
        finally:
            self._clients.pop(number, None)
            if not self._clients:
                self._subscribed.clear()

    async def _answer(self, ws: Any, number: int, text: str | bytes) -> None:
        msg = json.loads(text)
        if msg.get("op") == "ping":
            self.pings += 1
            if number not in self._muted:
                await ws.send(json.dumps({"op": "pong", "args": [str(int(self.clock() * 1000))],
                                          "conn_id": str(number), "req_id": msg.get("req_id")}))
        elif msg.get("op") == "subscribe":
            topic = f"kline.{self.interval}."
            bad = [a for a in msg.get("args", []) if not a.startswith(topic)
                   or a[len(topic):] not in self.symbols]
            await ws.send(json.dumps({"success": not bad, "op": "subscribe", "conn_id": str(number),
                                      "ret_msg": f"error:handler not found,topics:{bad}" if bad
                                      else "", "req_id": msg.get("req_id", "")}))
            if not bad:
                self._clients[number] = ws
                self._subscribed.set()

    async def _push(self, entry: dict[str, Any], *, raw: str | None = None) -> None:
        message = raw if raw is not None else json.dumps(
            {"topic": f"kline.{self.interval}.{self.symbols[0]}", "type": "snapshot",
             "ts": int(self.clock() * 1000), "data": [entry]})
        for number, ws in list(self._clients.items()):
            if number in self._muted:
                continue
            with contextlib.suppress(Exception):
                await ws.send(message)
                if raw is None:
                    self.sent.append(Sent(number, entry["start"], entry["confirm"],
                                          float(entry["close"])))

    # ------------------------------------------------------------------ the market

    def _entry(self, open_ms: int, *, confirmed: bool, part: float = 1.0) -> dict[str, Any]:
        _, o, h, lo, c, v, turnover = kline_rows(self.category, self.symbols[0], self.interval,
                                                 [open_ms])[0]
        if not confirmed:  # the candle so far: a partial move, part of the volume
            close = round(float(o) + (float(c) - float(o)) * part + 0.01, 2)
            h, lo = repr(max(float(o), close)), repr(min(float(o), close))
            c, v = repr(close), repr(round(float(v) * part, 3))
        return {"start": open_ms, "end": open_ms + self.step_ms - 1, "interval": self.interval,
                "open": o, "close": c, "high": h, "low": lo, "volume": v, "turnover": turnover,
                "confirm": confirmed, "timestamp": int(self.clock() * 1000)}

    async def _market(self) -> None:
        held: dict[str, Any] | None = None  # an out-of-order confirmation waiting its turn
        index = 0
        while index < self.candles:
            await self._subscribed.wait()
            open_ms = self.open_ms(index)
            fault = self.faults.get(index)
            if self._in_gap(open_ms):
                self.clock.set((open_ms + self.step_ms) / 1000 + 0.001)
                index += 1
                continue
            if fault is not None and fault.kind == "malformed":
                for raw in _malformed(f"kline.{self.interval}.{self.symbols[0]}",
                                      self._entry(open_ms, confirmed=True)):
                    await self._push({}, raw=raw)
            for j in range(self.updates):
                self.clock.set(open_ms / 1000 + (j + 1) * self.step_ms / 1000 / (self.updates + 2))
                await self._push(self._entry(open_ms, confirmed=False,
                                             part=(j + 1) / (self.updates + 1)))
            self.clock.set((open_ms + self.step_ms) / 1000 + 0.001)
            index += 1 + await self._confirm(open_ms, fault, held)
            held = self._entry(open_ms, confirmed=True) if fault and \
                fault.kind == "out_of_order" else None
            if self.pace:
                await asyncio.sleep(self.pace)
        self.done.set()

    async def _confirm(self, open_ms: int, fault: Fault | None,
                       held: dict[str, Any] | None) -> int:
        """Push the confirmation of candle ``open_ms`` as ``fault`` says; candles skipped."""
        entry = self._entry(open_ms, confirmed=True)
        kind = fault.kind if fault else None
        if kind == "drop":
            for ws in list(self._clients.values()):
                ws.transport.abort()  # no close frame: the network died
            self._clients.clear()
            self._subscribed.clear()
            return self._skip(fault)
        if kind == "conflict":
            entry = {**entry, "close": repr(round(float(entry["close"]) * 1.01, 2)),
                     "high": repr(round(float(entry["high"]) * 1.01, 2))}
        if kind != "out_of_order":
            await self._push(entry)
        if held is not None:
            await self._push(held)
        if kind == "duplicate":
            await self._push(entry)
        if kind in ("stale", "silent"):
            muted = set(self._clients)
            self._muted |= muted if kind == "silent" else set()
            skipped = self._skip(fault)
            await asyncio.sleep(fault.seconds if fault else 0.0)
            self._muted -= muted
            return skipped
        return 0

    def _skip(self, fault: Fault | None) -> int:
        """Let ``fault.missed`` candles close unseen; returns how many."""
        missed = fault.missed if fault else 0
        if missed:
            now_ms = int(self.clock() * 1000)
            self.clock.set((now_ms + missed * self.step_ms) / 1000)
        return missed


def main(argv: list[str] | None = None) -> None:
    """Serve the fake stream and the fake REST exchange on one clock until Ctrl-C.

    The clock starts at the current minute and the market runs ``--speed`` candles a
    minute, so it stays ahead of the real clock (what ``selfdistill live`` reads). The
    line ``READY rest=URL ws=URL`` on standard output says both are listening.
    """
    if __package__:
        from .bybit_server import FakeBybit
    else:
        from bybit_server import FakeBybit

    parser = argparse.ArgumentParser(prog="python -m tests.ws_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8124)
    parser.add_argument("--rest-port", type=int, default=8123)
    parser.add_argument("--interval", default="1")
    parser.add_argument("--days", type=float, default=7.0, help="REST history in days")
    parser.add_argument("--speed", type=float, default=60.0, help="candles per minute of "
                        "real time")
    parser.add_argument("--candles", type=int, default=10**9, help="candles to stream")
    parser.add_argument("--updates", type=int, default=2, help="unconfirmed pushes per candle")
    args = parser.parse_args(argv)
    now = pd.Timestamp.now(tz="UTC").floor("min")
    clock = VirtualClock(now)
    start = (now - pd.Timedelta(days=args.days)).strftime("%Y-%m-%d %H:%M")
    stream = FakeBybitStream(clock, first_open=str(now), candles=args.candles,
                             interval=args.interval, port=args.port, pace=60.0 / args.speed,
                             updates=args.updates)
    with FakeBybit(history_start=start, clock=clock, port=args.rest_port) as rest, stream:
        print(f"READY rest={rest.url} ws={stream.url()} (BTCUSDT, interval {args.interval}, "
              f"{args.speed:g} candles a minute)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()

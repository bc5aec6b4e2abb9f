"""A fake Bybit v5 market-data server: real HTTP on 127.0.0.1, deterministic candles.

It serves ``GET /v5/market/kline`` the way Bybit does: every field a string,
newest first, ``start`` rounded down to its candle boundary, ``limit`` default
200 and capped at 1000, the still-open candle included when ``end`` reaches
now, ``retCode`` / ``retMsg`` envelopes and 10001 "Not supported symbols" for
symbols it does not list. When ``[start, end]`` holds more than ``limit``
candles it returns the newest ones (``truncate="oldest"`` returns the oldest
instead, to prove a client does not depend on the choice).

Prices (tests/bybit_klines.py) are a deterministic function of (category, symbol, interval, open
time), so any window can be served without storing the history, and
:meth:`FakeBybit.candles` gives tests the exact truth to compare against.

Faults are scripted per request number or per path (:class:`FaultScript`):
retCodes 10006 (with or without ``X-Bapi-Limit-Reset-Timestamp``), 10018,
10016, 10000, 10001; HTTP 403 / 429 / 5xx; an HTML body; a body cut short; a
slow answer; malformed rows. ``gaps`` removes candles (exchange maintenance).

Run it by hand for demos (Ctrl-C stops it)::

    python -m tests.bybit_server --port 8123 --days 60
    selfdistill fetch --symbol BTCUSDT --interval 60 --start 2024-01-01 \\
        --base-url http://127.0.0.1:8123 --data-dir /tmp/candles
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

if __package__:  # python -m tests.bybit_server
    from .bybit_klines import INTERVALS, floor_ms, kline_rows, open_times_ms, to_ms
else:  # imported with tests/ on sys.path (pytest, benchmarks)
    from bybit_klines import INTERVALS, floor_ms, kline_rows, open_times_ms, to_ms

KLINE_PATH = "/v5/market/kline"
CATEGORIES = ("spot", "linear", "inverse")


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour. Build with the class methods."""

    kind: str  # "retcode" | "status" | "html" | "truncated" | "slow" | "bad_rows"
    ret_code: int = 0
    message: str = ""
    status: int = 200
    reset_in: float | None = None  # seconds from now for X-Bapi-Limit-Reset-Timestamp
    delay: float = 0.0
    row: tuple[str, ...] = ()

    @classmethod
    def retcode(cls, code: int, message: str = "", *, reset_in: float | None = None) -> Fault:
        default = {10006: "Too many visits!", 10018: "Exceeded the IP Rate Limit.",
                   10016: "Internal server error.", 10000: "Server Timeout",
                   10001: "params error"}
        return cls("retcode", ret_code=code, message=message or default.get(code, "error"),
                   reset_in=reset_in)

    @classmethod
    def http(cls, status: int, *, reset_in: float | None = None) -> Fault:
        return cls("status", status=status, reset_in=reset_in)

    @classmethod
    def html(cls) -> Fault:
        return cls("html")

    @classmethod
    def truncated(cls) -> Fault:
        return cls("truncated")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", delay=seconds)

    @classmethod
    def bad_rows(cls, row: Iterable[str]) -> Fault:
        """Answer with ``row`` (e.g. too short, or a non-number) appended to the real rows."""
        return cls("bad_rows", row=tuple(row))


class FaultScript:
    """Which fault answers which request: by request number, queued, or from some request on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: dict[int, Fault] = {}
        self._queue: deque[tuple[str | None, Fault]] = deque()
        self._always: list[tuple[str | None, int, Fault]] = []

    def at(self, number: int, fault: Fault) -> None:
        """Answer request ``number`` (1-based, counting every request) with ``fault``."""
        with self._lock:
            self._at[number] = fault

    def push(self, fault: Fault, *, times: int = 1, path: str | None = None) -> None:
        """Answer the next ``times`` requests (to ``path``, when given) with ``fault``."""
        with self._lock:
            self._queue.extend([(path, fault)] * times)

    def always(self, fault: Fault, *, after: int = 0, path: str | None = None) -> None:
        """Answer every request numbered above ``after`` (to ``path``) with ``fault``."""
        with self._lock:
            self._always.append((path, after, fault))

    def clear(self) -> None:
        with self._lock:
            self._at.clear()
            self._queue.clear()
            self._always.clear()

    def take(self, number: int, path: str) -> Fault | None:
        with self._lock:
            if number in self._at:
                return self._at.pop(number)
            for i, (where, fault) in enumerate(self._queue):
                if where in (None, path):
                    del self._queue[i]
                    return fault
            for where, after, fault in self._always:
                if where in (None, path) and number > after:
                    return fault
        return None


@dataclass(frozen=True)
class Request:
    """A request the server saw."""

    number: int
    path: str
    params: dict[str, str]
    time: float  # time.monotonic() on arrival


# ------------------------------------------------------------------ server


@dataclass
class FakeBybit:
    """The fake exchange. Use as a context manager; ``url`` is its base URL.

    Args:
        history_start: first candle the exchange holds (earlier ranges are empty).
        symbols: symbols it lists (others answer 10001 "Not supported symbols").
        truncate: "newest" or "oldest": which candles a range over ``limit`` keeps.
        gaps: ``(start, end)`` ranges of open times with no candles (maintenance).
        delay: seconds to wait before every answer.
        clock: epoch seconds of "now" (default: the system clock).
        port: 0 picks a free port.
    """

    history_start: str = "2023-01-01"
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    truncate: str = "newest"
    gaps: list[tuple[str, str]] = field(default_factory=list)
    delay: float = 0.0
    clock: Callable[[], float] = time.time
    host: str = "127.0.0.1"
    port: int = 0
    faults: FaultScript = field(default_factory=FaultScript)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.in_flight = 0
        self.peak_in_flight = 0  # most requests being answered at once
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> FakeBybit:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeBybit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _record(self, path: str, params: dict[str, str]) -> int:
        with self._lock:
            number = len(self.requests) + 1
            self.requests.append(Request(number, path, params, time.monotonic()))
            return number

    def _busy(self, change: int) -> None:
        with self._lock:
            self.in_flight += change
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    # data
    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _available(self, interval: str, first_ms: int, last_ms: int) -> np.ndarray:
        lo = max(first_ms, to_ms(self.history_start))
        times = open_times_ms(interval, lo, min(last_ms, self.now_ms()))
        for a, b in self.gaps:
            a_ms, b_ms = to_ms(a), to_ms(b)
            times = times[(times < a_ms) | (times >= b_ms)]
        return times

    def candles(self, category: str, symbol: str, interval: str, start: str | pd.Timestamp,
                end: str | pd.Timestamp, *, closed_only: bool = True) -> pd.DataFrame:
        """The truth: candles with open time in ``[start, end)``, ascending, as floats."""
        first, stop = to_ms(start), to_ms(end)
        times = self._available(interval, first, stop - 1)
        if closed_only:
            times = times[times < floor_ms(interval, self.now_ms())]
        rows = kline_rows(category, symbol, interval, times)
        frame = pd.DataFrame([[float(v) for v in r[1:]] for r in rows],
                             columns=["open", "high", "low", "close", "volume", "turnover"],
                             dtype=np.float64)
        frame.index = pd.DatetimeIndex(pd.to_datetime(times, unit="ms", utc=True),
                                       name="open_time")
        return frame

    def kline(self, params: dict[str, str]) -> dict[str, Any]:
        """The JSON answer to a kline query (no faults)."""
        category = params.get("category", "linear")
        symbol, interval = params.get("symbol", ""), params.get("interval", "")
        if category not in CATEGORIES:
            return _envelope(10001, "params error: Category is invalid", self.now_ms())
        if interval not in INTERVALS:
            return _envelope(10001, "params error: intervalTime is invalid", self.now_ms())
        if symbol not in self.symbols:
            return _envelope(10001, "Not supported symbols", self.now_ms())
        try:
            limit = min(1000, max(1, int(params.get("limit", 200))))
            end = int(params["end"]) if "end" in params else self.now_ms()
            start = floor_ms(interval, int(params["start"])) if "start" in params else 0
        except ValueError:
            return _envelope(10001, "params error: start/end/limit must be integers", self.now_ms())
        times = self._available(interval, start, end)
        times = times[-limit:] if self.truncate == "newest" else times[:limit]
        rows = kline_rows(category, symbol, interval, times[::-1])
        return _envelope(0, "OK", self.now_ms(),
                         {"symbol": symbol, "category": category, "list": rows})


def _envelope(code: int, message: str, now_ms: int,
              result: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"retCode": code, "retMsg": message, "result": result or {}, "retExtInfo": {},
            "time": now_ms}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    fake: FakeBybit

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read the request log instead

    def handle(self) -> None:
        # a client that was killed or timed out: nothing left to answer
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        number = self.fake._record(url.path, params)
        fault = self.fake.faults.take(number, url.path)
        self.fake._busy(+1)
        try:
            time.sleep(self.fake.delay + (fault.delay if fault else 0.0))
            self._answer(url.path, params, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout): nothing to do
        finally:
            self.fake._busy(-1)

    def _answer(self, path: str, params: dict[str, str], fault: Fault | None) -> None:
        if path != KLINE_PATH:
            return self._send(404, b"<html>404 Not Found</html>", "text/html")
        if fault is None or fault.kind == "slow":
            return self._send_json(self.fake.kline(params))
        headers = self._reset_header(fault)
        if fault.kind == "retcode":
            body = _envelope(fault.ret_code, fault.message, self.fake.now_ms())
            return self._send_json(body, headers)
        if fault.kind == "status":
            page = f"<html><body>{fault.status} error</body></html>".encode()
            return self._send(fault.status, page, "text/html", headers)
        if fault.kind == "html":
            return self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if fault.kind == "bad_rows":
            body = self.fake.kline(params)
            body["result"]["list"].insert(0, list(fault.row))
            return self._send_json(body)
        if fault.kind == "truncated":
            data = json.dumps(self.fake.kline(params)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data) + 100))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return None
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _reset_header(self, fault: Fault) -> dict[str, str]:
        if fault.reset_in is None:
            return {}
        reset_ms = self.fake.now_ms() + int(fault.reset_in * 1000)
        return {"X-Bapi-Limit-Reset-Timestamp": str(reset_ms)}

    def _send_json(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(200, json.dumps(body).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, kind: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str] | None = None) -> None:
    """Serve the fake exchange until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m tests.bybit_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--days", type=float, default=365.0, help="history length in days")
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT,SOLUSDT")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=args.days)
    fake = FakeBybit(history_start=start.strftime("%Y-%m-%d %H:%M"), port=args.port,
                     symbols=tuple(args.symbols.split(",")), delay=args.delay)
    with fake:
        print(f"fake Bybit v5 on {fake.url} (symbols {args.symbols}; "
              f"history from {start:%Y-%m-%d})", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

"""A small HTTP/1.1 endpoint on asyncio streams, for ``selfdistill live --serve HOST:PORT``.

It runs in the live loop's event loop (no thread, no dependency), so a handler reads the
loop's state between two candles, never half-way through one. It answers ``GET`` and
``HEAD`` of the registered paths, one request per connection (``Connection: close``),
with ``404`` for other paths, ``405`` for other methods and ``400`` for a request it
cannot read within 5 s or 8 KiB. Meant for a local scraper or load balancer probe, not
for the open internet: bind it to 127.0.0.1 unless a proxy is in front.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from selfdistill.errors import ConfigError

__all__ = ["Response", "parse_address", "start_http"]

log = logging.getLogger(__name__)

#: (status, content type, body)
Response = tuple[int, str, bytes]
Route = Callable[[], Response]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}
_READ_TIMEOUT = 5.0
_MAX_REQUEST = 8192


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9000`` for IPv6) -> (host, port), or ConfigError."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--serve {text!r} is not HOST:PORT, e.g. 127.0.0.1:9108")
    return host, int(port)


async def start_http(host: str, port: int, routes: Mapping[str, Route]) -> asyncio.Server:
    """Listen on ``host:port`` and answer ``routes`` (path -> handler).

    Raises:
        ConfigError: the address cannot be bound (in use, not local, no permission).
    """
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, kind, body, head = await _respond(reader, routes)
            reply = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                     f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode()
            writer.write(reply if head else reply + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    try:
        server = await asyncio.start_server(handle, host, port, limit=_MAX_REQUEST)
    except OSError as exc:
        raise ConfigError(f"--serve {host}:{port}: cannot listen there ({exc.strerror or exc}); "
                          "choose a free local port") from exc
    log.info("serving /signal, /health and /metrics on http://%s:%d", host, port)
    return server


async def _respond(reader: asyncio.StreamReader,
                   routes: Mapping[str, Route]) -> tuple[int, str, bytes, bool]:
    """(status, content type, body, head only) for the request on ``reader``."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
    except (TimeoutError, asyncio.LimitOverrunError, asyncio.IncompleteReadError, ValueError):
        return 400, "text/plain", b"bad request\n", False
    method, _, rest = head.decode("latin-1").partition(" ")
    path = rest.partition(" ")[0].partition("?")[0]
    if method not in ("GET", "HEAD"):
        return 405, "text/plain", b"only GET and HEAD\n", False
    route = routes.get(path)
    if route is None:
        known = ", ".join(sorted(routes))
        return 404, "text/plain", f"not found; try {known}\n".encode(), method == "HEAD"
    status, kind, body = route()
    return status, kind, body, method == "HEAD"

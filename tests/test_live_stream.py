"""The WebSocket kline stream: message parsing, and a real connection to tests/ws_server.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from selfdistill.data.bybit.request import MarketKey
from selfdistill.data.bybit.stream import KlineStream, StreamLost, parse_message, public_url
from selfdistill.errors import BadRequestError, ConfigError
from ws_server import FakeBybitStream, Fault, VirtualClock

KEY = MarketKey("linear", "BTCUSDT", "1")
START = "2024-03-01 00:00"
T0 = 1_709_251_200_000  # START in ms


def _push(**changes: object) -> str:
    entry = {"start": T0, "end": T0 + 59_999, "interval": "1", "open": "100.5",
             "close": "101", "high": "102", "low": "100", "volume": "3.5",
             "turnover": "350.1", "confirm": True, "timestamp": T0 + 59_000}
    entry.update(changes)
    return json.dumps({"topic": "kline.1.BTCUSDT", "type": "snapshot", "ts": T0, "data": [entry]})


def test_a_push_parses_into_a_kline() -> None:
    kind, body = parse_message(_push(), KEY, received=1.5)
    assert kind == "kline"
    assert isinstance(body, list)
    (k,) = body
    assert (k.open_ms, k.open, k.high, k.low, k.close, k.volume, k.turnover) == \
        (T0, 100.5, 102.0, 100.0, 101.0, 3.5, 350.1)
    assert k.confirmed
    assert k.received == 1.5
    assert not parse_message(_push(confirm=False), KEY)[1][0].confirmed  # type: ignore[index]


@pytest.mark.parametrize("message", [
    '{"op": "pong", "args": ["1"], "conn_id": "a"}',  # linear / inverse
    '{"success": true, "ret_msg": "pong", "conn_id": "a", "op": "ping"}',  # spot
])
def test_both_pong_spellings_are_pongs(message: str) -> None:
    assert parse_message(message, KEY)[0] == "pong"


def test_other_messages_are_told_apart() -> None:
    assert parse_message('{"success": true, "op": "subscribe"}', KEY)[0] == "subscribe"
    assert parse_message(_push().replace("kline.1.BTCUSDT", "kline.1.ETHUSDT"), KEY)[0] == "other"


@pytest.mark.parametrize(("message", "problem"), [
    ("{not json", "not JSON"),
    ("[1]", "not a JSON object"),
    ('{"topic": "kline.1.BTCUSDT", "data": []}', "without a 'data' list"),
    (_push(close="abc"), "could not convert"),
    (_push(close="-1"), "not a non-negative number"),
    (_push(high="99"), "low <= open, close <= high"),
    (_push(start=T0 + 7), "not on the 1 interval grid"),
    (_push(interval="5"), "is not '1'"),
    (_push(confirm="yes"), "confirm 'yes'"),
    (json.dumps({"topic": "kline.1.BTCUSDT", "data": [{"start": T0}]}), "lacks"),
])
def test_malformed_pushes_are_refused_by_name(message: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_message(message, KEY)


def test_urls_are_checked() -> None:
    assert public_url("spot") == "wss://stream.bybit.com/v5/public/spot"
    assert "stream-testnet" in public_url("linear", testnet=True)
    with pytest.raises(ConfigError, match="ws:// or wss://"):
        KlineStream("https://stream.bybit.com", KEY, stale_after=1)


async def _collect(stream: KlineStream, n: int) -> list:
    return [await asyncio.wait_for(stream.next(), 5) for _ in range(n)]


async def _until_lost(stream: KlineStream, got: list) -> StreamLost:
    """Take klines into ``got`` until the stream is lost (at most 10 s)."""
    for _ in range(100):
        try:
            got.append(await asyncio.wait_for(stream.next(), 5))
        except StreamLost as exc:
            return exc
    raise AssertionError("the stream was never lost")


def test_subscribe_ping_and_klines_against_the_fake() -> None:
    clock = VirtualClock(START)
    with FakeBybitStream(clock, first_open=START, candles=3, updates=2) as fake:
        async def main() -> tuple[list, int]:
            async with KlineStream(fake.url(), KEY, stale_after=2, ping_interval=0.05) as stream:
                got = await _collect(stream, 9)
                await asyncio.sleep(0.2)  # a few heartbeats
                return got, stream.pongs
        got, pongs = asyncio.run(main())
    assert [k.confirmed for k in got] == [False, False, True] * 3
    assert [k.open_ms for k in got if k.confirmed] == [T0, T0 + 60_000, T0 + 120_000]
    assert pongs >= 2
    assert fake.pings >= 2


@pytest.mark.parametrize(("fault", "stale_after", "pong_timeout", "reason"), [
    (Fault.stale(seconds=1.0), 0.3, 5.0, "stale"),  # pushes stop, the heartbeat answers
    (Fault.silent(seconds=1.0), 5.0, 0.1, "no-pong"),  # nothing answers: half-open
])
def test_a_stale_feed_and_a_silent_connection_are_lost(fault: Fault, stale_after: float,
                                                      pong_timeout: float, reason: str) -> None:
    clock = VirtualClock(START)
    with FakeBybitStream(clock, first_open=START, candles=3, updates=0,
                         faults={1: fault}) as fake:
        async def main() -> tuple[str, int]:
            async with KlineStream(fake.url(), KEY, stale_after=stale_after, ping_interval=0.05,
                                   pong_timeout=pong_timeout) as stream:
                got: list = []
                lost = await _until_lost(stream, got)
                return lost.reason, len(got)
        assert asyncio.run(main()) == (reason, 2)


def test_a_drop_and_malformed_messages() -> None:
    clock = VirtualClock(START)
    faults = {1: Fault.malformed(), 2: Fault.drop()}
    with FakeBybitStream(clock, first_open=START, candles=4, updates=0, faults=faults) as fake:
        async def main() -> tuple[list, int, str]:
            async with KlineStream(fake.url(), KEY, stale_after=5) as stream:
                got: list = []
                lost = await _until_lost(stream, got)
                return got, stream.malformed, lost.reason
        got, malformed, reason = asyncio.run(main())
    assert [k.open_ms for k in got] == [T0, T0 + 60_000]  # candle 2 was never confirmed
    assert malformed == 7  # every broken message skipped, none raised
    assert reason == "closed"


def test_an_unknown_symbol_is_refused_not_retried() -> None:
    clock = VirtualClock(START)
    with FakeBybitStream(clock, first_open=START, candles=1) as fake:
        async def main() -> None:
            async with KlineStream(fake.url(), MarketKey("linear", "NOPEUSDT", "1"),
                                   stale_after=1):
                pass
        with pytest.raises(BadRequestError, match=r"refused the subscription to kline\.1\.NOPE"):
            asyncio.run(main())


def test_nobody_listening_is_a_lost_stream() -> None:
    async def main() -> None:
        async with KlineStream("ws://127.0.0.1:9/v5/public/linear", KEY, stale_after=1,
                               open_timeout=2):
            pass
    with pytest.raises(StreamLost, match="cannot connect"):
        asyncio.run(main())

"""The Bybit v5 kline client against a real local HTTP server (tests/bybit_server.py).

Also covers what the client is built from: input validation and windows
(``data.bybit.request``), answer decoding (``data.bybit.reply``), the limiter and retry policy
(``ratelimit``).
"""

from __future__ import annotations

import itertools
import random
import threading

import httpx
import numpy as np
import pandas as pd
import pytest

from bybit_server import FakeBybit, Fault
from selfdistill.data.bybit import BybitClient
from selfdistill.data.bybit.ratelimit import Cancelled, RetryPolicy, TokenBucket, max_in_window
from selfdistill.data.bybit.reply import parse_kline_rows
from selfdistill.data.bybit.request import (
    MarketKey,
    floor_open,
    parse_time,
    plan_windows,
    resolve_range,
    validate_symbol,
)
from selfdistill.errors import (
    BadRequestError,
    BannedError,
    ConfigError,
    DataError,
    ServerError,
    TransportError,
)

KEY = MarketKey("linear", "BTCUSDT", "1")
START, END = "2024-01-01", "2024-01-04"  # 4320 one-minute candles: 5 windows


def T(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


class FakeSleep:
    """Records waits instead of sleeping (advances a fake monotonic clock)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def fake():
    with FakeBybit(history_start="2023-12-01") as server:
        yield server


def make_client(url: str, sleep: FakeSleep | None = None, **kwargs) -> BybitClient:
    kwargs.setdefault("rate", 1000.0)
    kwargs.setdefault("retry", RetryPolicy(max_retries=3, base_delay=0.01))
    if sleep is not None:
        kwargs.update(sleep=sleep, clock=sleep.clock)
    return BybitClient(url, seed=0, **kwargs)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("symbol", ["../x", "btc/usdt", "BTC/USDT", "B", "X" * 33, "",
                                    "BTC USDT", "BTCUSDT\n", "..", "btcusdt"])
def test_bad_symbols_are_rejected_with_the_rule(symbol: str) -> None:
    with pytest.raises(ConfigError, match="upper-case letters and digits"):
        MarketKey("linear", symbol, "60")


def test_lower_case_symbol_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'BTCUSDT'"):
        validate_symbol("btcusdt")


def test_bad_interval_and_category_list_the_valid_values() -> None:
    with pytest.raises(ConfigError, match="1, 3, 5, 15, 30, 60, 120, 240, 360, 720, D, W, M"):
        MarketKey("linear", "BTCUSDT", "7")
    with pytest.raises(ConfigError, match="spot, linear, inverse"):
        MarketKey("futures", "BTCUSDT", "60")


def test_invalid_symbol_never_reaches_the_network(fake: FakeBybit) -> None:
    with make_client(fake.url) as client, pytest.raises(ConfigError):
        client.fetch(MarketKey("linear", "../../etc", "1"), START, END)
    assert fake.request_count == 0


def test_dates_are_parsed_as_utc_and_bad_ones_named() -> None:
    assert parse_time("2024-01-01") == T("2024-01-01")
    assert parse_time("2024-01-01T02:00+02:00") == T("2024-01-01")
    with pytest.raises(ConfigError, match="start '2024-13-45' is not a date"):
        parse_time("2024-13-45", name="start")


def test_range_checks_order_future_and_clamps_to_the_open_candle() -> None:
    now = T("2024-01-03 12:34:56")
    with pytest.raises(ConfigError, match="must be before end"):
        resolve_range("2024-01-02", "2024-01-01", "60", now=now)
    with pytest.raises(ConfigError, match="in the future"):
        resolve_range("2025-01-01", "2025-02-01", "60", now=now)
    assert resolve_range("2024-01-01 00:30", None, "60", now=now) == (
        T("2024-01-01 01:00"), T("2024-01-03 12:00"))


@pytest.mark.parametrize(("interval", "first", "stop"), [
    ("1", "2024-01-01", "2024-01-04 00:07"),
    ("60", "2023-01-01", "2024-06-01"),
    ("D", "2019-01-01", "2024-01-01"),
    ("W", "2001-01-01", "2024-01-01"),
    ("M", "1950-01-01", "2040-01-01"),
])
def test_windows_cover_the_range_exactly_in_at_most_1000_candles(interval: str, first: str,
                                                                  stop: str) -> None:
    a, b = floor_open(T(first), interval), floor_open(T(stop), interval)
    windows = plan_windows(a, b, interval)
    assert windows[0].first == a
    assert windows[-1].end == b
    assert all(w.end == n.first for w, n in itertools.pairwise(windows))
    assert all(1 <= w.count <= 1000 for w in windows)
    assert plan_windows(a, b, interval, newest_first=True) == windows[::-1]


def test_weekly_candles_open_on_mondays() -> None:
    assert floor_open(T("2024-01-03 15:00"), "W") == T("2024-01-01")  # a Monday
    assert floor_open(T("2024-01-03 15:00"), "M") == T("2024-01-01")


# ------------------------------------------------------------------ decoding


def test_rows_are_converted_sorted_and_deduplicated() -> None:
    rows = [["1704067260000", "2", "3", "1", "2.5", "10", "25"],
            ["1704067200000", "1", "2", "0.5", "2", "5", "8"],
            ["1704067200000", "1", "2", "0.5", "2", "5", "8"]]
    frame = parse_kline_rows(rows, request="r")
    assert list(frame.index) == [T("2024-01-01 00:00"), T("2024-01-01 00:01")]
    assert frame.dtypes.eq(np.float64).all()
    assert frame.loc[T("2024-01-01 00:01"), "close"] == 2.5


@pytest.mark.parametrize(("row", "match"), [
    (["1704067200000", "1", "2"], "row 0 is .* expected 7 fields"),
    (["1704067200000", "1", "2", "x", "2", "5", "8"], "row 0 field low is 'x'"),
    (["1704067200000", "1", "2", "0.5", "nan", "5", "8"], "row 0 field close is 'nan'"),
    (["soon", "1", "2", "0.5", "2", "5", "8"], "row 0 field startTime is 'soon'"),
])
def test_malformed_rows_are_data_errors_naming_the_request(row: list[str], match: str) -> None:
    with pytest.raises(DataError, match=f"GET /v5/market/kline\\?symbol=X: {match}"):
        parse_kline_rows([row], request="GET /v5/market/kline?symbol=X")


# ------------------------------------------------------------------ fetching


@pytest.mark.parametrize("truncate", ["newest", "oldest"])
def test_multi_window_fetch_equals_the_server_data(truncate: str) -> None:
    with FakeBybit(history_start="2023-12-01", truncate=truncate) as fake, \
            make_client(fake.url, concurrency=3) as client:
        got = client.fetch(KEY, START, END)
    truth = fake.candles("linear", "BTCUSDT", "1", START, END)
    pd.testing.assert_frame_equal(got, truth, check_freq=False)
    assert len(got) == 3 * 1440
    assert got.index.is_monotonic_increasing
    assert got.index.is_unique
    assert fake.request_count == 5
    for request in fake.requests:  # every window names both bounds and fits in one answer
        span = int(request.params["end"]) - int(request.params["start"])
        assert span < 1000 * 60_000
        assert int(request.params["limit"]) <= 1000


def test_still_open_candle_is_never_returned() -> None:
    now = T("2024-01-03 12:34:56").timestamp()
    with FakeBybit(history_start="2024-01-01", clock=lambda: now) as fake, \
            make_client(fake.url, wall_clock=lambda: now) as client:
        got = client.fetch(KEY, "2024-01-03 10:00")
        raw = fake.kline({"symbol": "BTCUSDT", "interval": "1", "start": "1704276000000",
                          "limit": "1000"})["result"]["list"]
    assert raw[0][0] == str(int(T("2024-01-03 12:34").timestamp() * 1000))  # server sends it
    assert got.index[-1] == T("2024-01-03 12:33")
    assert len(got) == 154


def test_client_drops_an_open_candle_even_when_asked_past_the_server_clock() -> None:
    server_now = T("2024-01-03 12:34:56").timestamp()  # the client's clock runs 10 min ahead
    with FakeBybit(history_start="2024-01-01", clock=lambda: server_now) as fake, \
            make_client(fake.url, wall_clock=lambda: server_now + 600) as client:
        got = client.fetch(KEY, "2024-01-03 12:00")
    assert got.index[-1] == T("2024-01-03 12:33")


def test_exchange_gaps_stay_gaps() -> None:
    gap = ("2024-01-02 10:00", "2024-01-02 10:30")
    with FakeBybit(history_start="2023-12-01", gaps=[gap]) as fake, \
            make_client(fake.url) as client:
        got = client.fetch(KEY, START, END)
    assert len(got) == 3 * 1440 - 30
    assert not got.index.isin(pd.date_range(gap[0], gap[1], freq="1min", inclusive="left",
                                             tz="UTC")).any()


@pytest.mark.parametrize("fault", [
    Fault.retcode(10006), Fault.retcode(10018), Fault.retcode(10016), Fault.retcode(10000),
    Fault.http(429), Fault.http(500), Fault.http(502), Fault.http(503), Fault.html(),
    Fault.truncated(),
], ids=lambda f: f"{f.kind}-{f.ret_code or f.status}")
def test_transient_faults_are_retried_and_the_data_is_complete(fake: FakeBybit,
                                                               fault: Fault) -> None:
    fake.faults.at(2, fault)
    sleep = FakeSleep()
    with make_client(fake.url, sleep, concurrency=1) as client:
        got = client.fetch(KEY, START, "2024-01-02")  # two windows, the second fails once
    truth = fake.candles("linear", "BTCUSDT", "1", START, "2024-01-02")
    pd.testing.assert_frame_equal(got, truth, check_freq=False)
    assert fake.request_count == 3
    assert len(sleep.waits) >= 1


def test_a_slow_answer_times_out_and_is_retried(fake: FakeBybit) -> None:
    fake.faults.at(1, Fault.slow(1.5))
    with make_client(fake.url, timeout=0.3, concurrency=1) as client:
        got = client.fetch(KEY, "2024-01-01", "2024-01-01 01:00")
    assert len(got) == 60
    assert fake.request_count == 2


def test_backoff_grows_exponentially_with_jitter_without_a_reset_header(fake: FakeBybit) -> None:
    fake.faults.push(Fault.retcode(10006), times=3)
    sleep = FakeSleep()
    policy = RetryPolicy(max_retries=5, base_delay=1.0, max_delay=30.0)
    with make_client(fake.url, sleep, retry=policy, concurrency=1) as client:
        client.fetch(KEY, "2024-01-01", "2024-01-01 01:00")
    backoffs = [w for w in sleep.waits if w >= 0.4]
    assert len(backoffs) == 3
    for k, wait in enumerate(backoffs):
        assert 0.5 * 2**k <= wait <= 2**k


def test_reset_header_sets_the_wait(fake: FakeBybit) -> None:
    fake.faults.push(Fault.retcode(10006, reset_in=5.0))
    sleep = FakeSleep()
    policy = RetryPolicy(max_retries=3, base_delay=0.01)
    with make_client(fake.url, sleep, retry=policy, concurrency=1) as client:
        client.fetch(KEY, "2024-01-01", "2024-01-01 01:00")
    assert 4.0 < max(sleep.waits) < 5.1  # ~5 s from the header, not the 0.01 s backoff


def test_retries_run_out_with_a_clear_error(fake: FakeBybit) -> None:
    fake.faults.always(Fault.http(503))
    with make_client(fake.url, FakeSleep(), concurrency=1) as client, \
            pytest.raises(ServerError, match=r"HTTP 503.*gave up after 4 attempts"):
        client.fetch(KEY, START, END)
    assert fake.request_count == 4


def test_unknown_symbol_fails_at_once_with_the_exchange_message(fake: FakeBybit) -> None:
    with make_client(fake.url, concurrency=1) as client, \
            pytest.raises(BadRequestError, match="retCode 10001 'Not supported symbols'"):
        client.fetch(MarketKey("linear", "NOPEUSDT", "1"), START, END)
    assert fake.request_count == 1


def test_403_stops_at_once_without_retries(fake: FakeBybit) -> None:
    fake.faults.always(Fault.http(403))
    with make_client(fake.url, FakeSleep(), concurrency=1) as client:
        with pytest.raises(BannedError, match="wait at least 10 minutes"):
            client.fetch(KEY, START, END)
        with pytest.raises(BannedError):  # the client remembers: no second knock
            client.fetch(KEY, START, END)
    assert fake.request_count == 1


def test_403_with_concurrency_makes_no_retry_storm(fake: FakeBybit) -> None:
    fake.faults.always(Fault.http(403))
    with make_client(fake.url, concurrency=3) as client, pytest.raises(BannedError):
        client.fetch(KEY, "2023-12-01", END)  # 49 windows
    assert fake.request_count <= 3


def test_bad_rows_are_a_data_error_naming_the_request(fake: FakeBybit) -> None:
    fake.faults.at(1, Fault.bad_rows(["1704067200000", "1.0"]))
    with make_client(fake.url, concurrency=1) as client, \
            pytest.raises(DataError, match=r"GET /v5/market/kline\?category=linear&symbol="
                          r"BTCUSDT&interval=1&start=1704067200000.*expected 7 fields"):
        client.fetch(KEY, START, END)
    assert fake.request_count == 1


def test_an_error_in_a_later_window_is_raised_not_a_cancellation(fake: FakeBybit) -> None:
    fake.faults.always(Fault.retcode(10001, "params error"), after=3)
    with make_client(fake.url, concurrency=3) as client, \
            pytest.raises(BadRequestError, match="params error"):
        client.fetch(KEY, "2023-12-01", END)


def test_a_later_windows_error_keeps_its_own_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    # regression: raised in place of the earlier window's cancellation, the error lost its
    # cause (the httpx / socket error that says what went wrong)
    client = make_client("http://127.0.0.1:9", concurrency=2)  # never contacted
    first, second = object(), object()

    def fetch_window(key: MarketKey, window: object, cancel: threading.Event) -> object:
        if window is first:  # still working when the later window fails
            cancel.wait(5.0)
            raise Cancelled
        try:
            raise ConnectionResetError("connection reset by peer")
        except ConnectionResetError as exc:
            raise TransportError("GET /v5/market/kline: connection reset") from exc

    monkeypatch.setattr(client, "fetch_window", fetch_window)
    with client, pytest.raises(TransportError, match="connection reset") as info:
        list(client.fetch_windows(KEY, [first, second]))  # type: ignore[list-item]
    assert isinstance(info.value.__cause__, ConnectionResetError)


def test_concurrency_is_bounded(fake: FakeBybit) -> None:
    fake.delay = 0.05
    with make_client(fake.url, concurrency=2) as client:
        client.fetch(KEY, "2023-12-29", END)  # 9 windows
    assert fake.peak_in_flight == 2


# ------------------------------------------------------------------ limiter / policy


def test_token_bucket_holds_its_rate_under_threads() -> None:
    sleep, lock = FakeSleep(), threading.Lock()

    def fake_sleep(seconds: float) -> None:
        with lock:
            sleep(seconds)

    bucket = TokenBucket(rate=20.0, burst=5, clock=sleep.clock, sleep=fake_sleep)
    stamps: list[float] = []

    def worker() -> None:
        for _ in range(25):
            bucket.acquire()
            with lock:
                stamps.append(sleep.now)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stamps) == 100
    assert max_in_window(stamps, 1.0) <= 5 + 20
    assert sleep.now >= (100 - 5) / 20 - 1e-9


def test_client_rate_limit_holds_on_the_wire(fake: FakeBybit) -> None:
    with make_client(fake.url, rate=40.0, burst=4, concurrency=4) as client:
        client.fetch(KEY, "2023-12-25", END)  # 13 windows
    stamps = [r.time for r in fake.requests]
    assert max_in_window(stamps, 0.25) <= 4 + 10 + 1  # burst + rate * 0.25 s (+1: timing)
    assert stamps[-1] - stamps[0] >= (13 - 4) / 40 * 0.9


def test_a_pause_holds_the_bucket_until_it_ends() -> None:
    sleep = FakeSleep()
    paused = TokenBucket(rate=1000.0, burst=10, clock=sleep.clock, sleep=sleep)
    paused.pause(3.0)
    paused.acquire()
    assert sleep.now == pytest.approx(3.0)


def test_retry_policy_delays() -> None:
    rng = random.Random(1)
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, max_wait=10.0)
    assert [policy.delay(k, None, rng) <= min(4.0, 0.5 * 2**k) for k in range(8)] == [True] * 8
    assert policy.delay(6, None, rng) >= 2.0  # capped at max_delay, jitter keeps >= half
    assert policy.delay(0, 30.0, rng) == 10.0  # header waits are capped by max_wait
    assert policy.delay(0, -5.0, rng) <= 0.5  # a reset time already past: retry soon
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)



def test_the_fake_server_answers_like_bybit(fake: FakeBybit) -> None:
    """The oracle itself: string fields, newest first, start rounded down, limit 200 / 1000."""
    start = int(T("2024-01-01 10:00:30").timestamp() * 1000)  # inside the 10:00 candle
    body = httpx.get(f"{fake.url}/v5/market/kline",
                     params={"symbol": "BTCUSDT", "interval": "1", "start": start}).json()
    assert (body["retCode"], body["retMsg"]) == (0, "OK")
    rows = body["result"]["list"]
    assert len(rows) == 200  # default limit; the newest 200 of the range
    assert all(isinstance(v, str) for row in rows for v in row)
    assert int(rows[0][0]) > int(rows[-1][0])  # newest first
    capped = httpx.get(f"{fake.url}/v5/market/kline", params={
        "symbol": "BTCUSDT", "interval": "1", "start": start, "limit": 5000,
        "end": start + 2000 * 60_000}).json()["result"]["list"]
    assert len(capped) == 1000
    exact = httpx.get(f"{fake.url}/v5/market/kline", params={
        "symbol": "BTCUSDT", "interval": "1", "start": start, "end": start + 60_000}).json()
    assert [r[0] for r in exact["result"]["list"]] == [
        str(start - 30_000 + 60_000), str(start - 30_000)]  # 10:01 and the rounded-down 10:00
    unknown = httpx.get(f"{fake.url}/v5/market/kline",
                        params={"symbol": "NOPE", "interval": "1"}).json()
    assert (unknown["retCode"], unknown["retMsg"]) == (10001, "Not supported symbols")

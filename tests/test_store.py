"""The local candle store: exact, contiguous, idempotent, atomic, resumable."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from bybit_server import FakeBybit, Fault
from selfdistill.config import BybitSourceConfig
from selfdistill.data.bybit import BybitClient
from selfdistill.data.bybit.ratelimit import RetryPolicy
from selfdistill.data.bybit.request import MarketKey
from selfdistill.data.store import CandleStore, default_data_dir, load_or_fetch
from selfdistill.data.storefile import atomic_write
from selfdistill.errors import ConfigError, DataError, GapError, ServerError

KEY = MarketKey("linear", "BTCUSDT", "1")
COLUMNS = ["open", "high", "low", "close", "volume", "turnover"]


def T(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture
def fake():
    with FakeBybit(history_start="2023-12-01") as server:
        yield server


@pytest.fixture
def client(fake: FakeBybit):
    with BybitClient(fake.url, rate=1000.0, concurrency=2, seed=0,
                     retry=RetryPolicy(max_retries=2, base_delay=0.0)) as c:
        yield c


def truth(fake: FakeBybit, start: str, end: str, key: MarketKey = KEY) -> pd.DataFrame:
    return fake.candles(key.category, key.symbol, key.interval, start, end)


def stored(store: CandleStore, key: MarketKey = KEY) -> pd.DataFrame:
    return store.read(key)[COLUMNS]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_first_fetch_stores_exactly_the_server_data(tmp_path: Path, fake: FakeBybit,
                                                    client: BybitClient) -> None:
    store = CandleStore(tmp_path)
    calls: list[tuple[int, int, int]] = []
    manifest = store.update(KEY, client, T("2024-01-01"), T("2024-01-03"),
                            progress=lambda got, done, total: calls.append((got, done, total)))
    pd.testing.assert_frame_equal(stored(store), truth(fake, "2024-01-01", "2024-01-03"),
                                  check_freq=False)
    assert manifest is not None
    assert (manifest.start, manifest.end, manifest.rows) == (T("2024-01-01"), T("2024-01-03"), 2880)
    assert calls[0] == (0, 0, 2880)
    assert calls[-1] == (2880, 2880, 2880)
    files = sorted(p.name for p in store.path(KEY).parent.iterdir())
    assert files == ["1.lock", "1.manifest.json", "1.parquet"]  # no temporary left over
    assert store.path(KEY) == tmp_path / "linear" / "BTCUSDT" / "1.parquet"


def test_json_manifest_matches_the_footer(tmp_path: Path, client: BybitClient) -> None:
    store = CandleStore(tmp_path)
    manifest = store.update(KEY, client, T("2024-01-01"), T("2024-01-02"))
    assert manifest is not None
    side = json.loads(store.path(KEY).with_suffix(".manifest.json").read_text())
    assert side == manifest.to_dict()
    assert side["rows"] == 1440
    assert side["end"] == "2024-01-02T00:00:00+00:00"


def test_fetching_a_covered_range_again_changes_nothing(tmp_path: Path, fake: FakeBybit,
                                                        client: BybitClient) -> None:
    store = CandleStore(tmp_path)
    store.update(KEY, client, T("2024-01-01"), T("2024-01-03"))
    before, requests = digest(store.path(KEY)), fake.request_count
    store.update(KEY, client, T("2024-01-01"), T("2024-01-03"))
    store.update(KEY, client, T("2024-01-01 12:00"), T("2024-01-02"))
    assert fake.request_count == requests
    assert digest(store.path(KEY)) == before


def test_updates_extend_both_ways_and_stay_contiguous(tmp_path: Path, fake: FakeBybit) -> None:
    store = CandleStore(tmp_path)
    with BybitClient(fake.url, rate=1000.0, concurrency=1) as client:  # arrivals in order
        store.update(KEY, client, T("2024-01-05"), T("2024-01-06"))
        store.update(KEY, client, T("2024-01-08"), T("2024-01-09"))  # after a hole: fills it
        n = fake.request_count
        manifest = store.update(KEY, client, T("2024-01-03"), T("2024-01-10"))
    assert manifest is not None
    assert (manifest.start, manifest.end) == (T("2024-01-03"), T("2024-01-10"))
    assert fake.request_count - n == 3 + 2  # 2880 candles before (3 windows), 1440 after (2)
    pd.testing.assert_frame_equal(stored(store), truth(fake, "2024-01-03", "2024-01-10"),
                                  check_freq=False)
    older = [int(r.params["start"]) for r in fake.requests[n:n + 3]]
    assert older == sorted(older, reverse=True)  # prepended newest first


def test_exchange_gaps_are_reported_not_filled(tmp_path: Path) -> None:
    gap = ("2024-01-01 06:00", "2024-01-01 07:00")
    calls: list[tuple[int, int, int]] = []
    with FakeBybit(history_start="2023-12-01", gaps=[gap]) as fake, \
            BybitClient(fake.url, rate=1000.0) as client:
        store = CandleStore(tmp_path)
        manifest = store.update(KEY, client, T("2024-01-01"), T("2024-01-02"),
                                progress=lambda got, done, total: calls.append((got, done, total)))
    assert manifest is not None
    assert (manifest.rows, manifest.gaps, manifest.missing) == (1380, 1, 60)
    # progress counts the candles received, not the slots asked for (was 1440 of 1440)
    assert calls[-1] == (1380, 1440, 1440)
    assert "1,380 candles, 1 gaps (60 missing), last candle 2024-01-01 23:59 UTC" \
        in manifest.describe()
    candles = store.read(KEY)
    assert len(candles) == 1380
    assert candles.loc[T("2024-01-01 07:00"), "gap_before"]
    report = store.gap_report(KEY)
    assert report.to_dict("records") == [
        {"start": T("2024-01-01 05:59"), "end": T("2024-01-01 07:00"), "missing": 60}]
    with pytest.raises(GapError, match="60 missing"):
        store.read(KEY, gaps="error")


def test_a_failed_fetch_keeps_everything_before_it_and_resumes(tmp_path: Path, fake: FakeBybit,
                                                               client: BybitClient) -> None:
    store = CandleStore(tmp_path, commit_every=2)
    fake.faults.always(Fault.http(500), after=7)
    with pytest.raises(ServerError, match="gave up"):
        store.update(KEY, client, T("2024-01-01"), T("2024-01-11"))  # 15 windows
    kept = store.manifest(KEY)
    assert kept is not None
    assert kept.start == T("2024-01-01")
    assert kept.end >= T("2024-01-01") + pd.Timedelta(minutes=4000)
    pd.testing.assert_frame_equal(stored(store), truth(fake, "2024-01-01", str(kept.end)),
                                  check_freq=False)
    fake.faults.clear()
    n = fake.request_count
    store.update(KEY, client, T("2024-01-01"), T("2024-01-11"))
    resumed = [int(r.params["start"]) for r in fake.requests[n:]]
    assert min(resumed) == kept.end.value // 1_000_000  # resumes where it stopped
    pd.testing.assert_frame_equal(stored(store), truth(fake, "2024-01-01", "2024-01-11"),
                                  check_freq=False)


def test_a_failed_prepend_keeps_a_contiguous_range(tmp_path: Path, fake: FakeBybit,
                                                   client: BybitClient) -> None:
    store = CandleStore(tmp_path, commit_every=1)
    store.update(KEY, client, T("2024-01-10"), T("2024-01-11"))
    fake.faults.always(Fault.retcode(10016), after=fake.request_count + 3)
    with pytest.raises(ServerError):
        store.update(KEY, client, T("2024-01-01"), T("2024-01-11"))
    kept = store.manifest(KEY)
    assert kept is not None
    assert T("2024-01-01") < kept.start < T("2024-01-10")
    assert kept.end == T("2024-01-11")
    pd.testing.assert_frame_equal(stored(store), truth(fake, str(kept.start), "2024-01-11"),
                                  check_freq=False)


def test_a_crash_while_writing_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"old complete data")

    def half_then_crash(tmp: Path) -> None:
        tmp.write_bytes(b"new but cut sh")
        raise KeyboardInterrupt  # stands in for a kill between write and rename

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_crash)
    assert target.read_bytes() == b"old complete data"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path: Path,
                                                          client: BybitClient) -> None:
    store = CandleStore(tmp_path)
    store.update(KEY, client, T("2024-01-01"), T("2024-01-02"))
    stale = store.path(KEY).parent / ".1.deadbeef0000.tmp"
    stale.write_bytes(b"half a parquet file")
    store.update(KEY, client, T("2024-01-01"), T("2024-01-03"))
    assert not stale.exists()


def test_reads_slice_and_validate(tmp_path: Path, client: BybitClient) -> None:
    store = CandleStore(tmp_path)
    store.update(KEY, client, T("2024-01-01"), T("2024-01-02"))
    part = store.read(KEY, T("2024-01-01 10:00"), T("2024-01-01 11:00"))
    assert len(part) == 60
    assert part.index[0] == T("2024-01-01 10:00")
    assert str(part.index.tz) == "UTC"
    assert part.attrs["interval"] == "1"
    with pytest.raises(DataError, match="holds no linear BTCUSDT 1 candles"):
        store.read(KEY, T("2025-01-01"), T("2025-01-02"))
    with pytest.raises(DataError, match=r"nothing stored for linear ETHUSDT 1.*selfdistill fetch"):
        store.read(MarketKey("linear", "ETHUSDT", "1"))


def test_a_second_writer_is_refused(tmp_path: Path, client: BybitClient) -> None:
    store = CandleStore(tmp_path)
    with store._locked(KEY), pytest.raises(DataError, match="another fetch is updating"):
        store.update(KEY, client, T("2024-01-01"), T("2024-01-02"))


def test_corrupt_files_are_named_and_skipped_by_listing(tmp_path: Path, client: BybitClient,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    store = CandleStore(tmp_path)
    store.update(KEY, client, T("2024-01-01"), T("2024-01-02"))
    bad = tmp_path / "linear" / "ETHUSDT" / "60.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet")
    (tmp_path / "linear" / "bad..name").mkdir()
    with pytest.raises(DataError, match=r"60\.parquet: not a readable candle-store file"):
        store.manifest(MarketKey("linear", "ETHUSDT", "60"))
    with caplog.at_level(logging.WARNING):
        listed = store.datasets()
    assert [str(m.key) for m in listed] == ["linear BTCUSDT 1"]
    assert "skipping" in caplog.text


def test_default_data_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("SELFDISTILL_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("SELFDISTILL_DATA_DIR")
    assert default_data_dir().parts[-2:] == ("selfdistill", "candles")


# ------------------------------------------------------------------ load_or_fetch


def config(fake: FakeBybit, tmp_path: Path, **kw: object) -> BybitSourceConfig:
    base = {"symbol": "BTCUSDT", "interval": "60", "start": "2024-01-01", "end": "2024-02-01",
            "data_dir": str(tmp_path), "base_url": fake.url}
    return BybitSourceConfig(**{**base, **kw})


def test_load_or_fetch_fetches_then_reads_offline(tmp_path: Path, fake: FakeBybit) -> None:
    got = load_or_fetch(config(fake, tmp_path))
    assert len(got) == 31 * 24
    assert "gap_before" in got.columns
    n = fake.request_count
    again = load_or_fetch(config(fake, tmp_path, offline=True))
    pd.testing.assert_frame_equal(again, got)
    part = load_or_fetch(config(fake, tmp_path, offline=True, end=None, start="2024-01-15"))
    assert part.index[-1] == T("2024-01-31 23:00")
    assert fake.request_count == n
    key = MarketKey("linear", "BTCUSDT", "60")
    pd.testing.assert_frame_equal(got[COLUMNS], truth(fake, "2024-01-01", "2024-02-01", key),
                                  check_freq=False)


def test_offline_without_the_range_names_the_fetch_command(tmp_path: Path,
                                                           fake: FakeBybit) -> None:
    load_or_fetch(config(fake, tmp_path))
    cfg = config(fake, tmp_path, offline=True, start="2023-12-20")
    with pytest.raises(DataError, match=r"lacks linear BTCUSDT 60 candles in \[2023-12-20 00:00,"
                       r" 2024-01-01 00:00\).*selfdistill fetch --symbol BTCUSDT --interval 60"):
        load_or_fetch(cfg)


def test_load_or_fetch_rejects_bad_input_before_any_path(tmp_path: Path, fake: FakeBybit) -> None:
    with pytest.raises(ConfigError, match=r"symbol '\.\./\.\./x'"):
        load_or_fetch(config(fake, tmp_path, symbol="../../x"))
    with pytest.raises(ValidationError, match="must be one of 1, 3, 5"):  # the config says so
        config(fake, tmp_path, interval="7")
    # and the store checks again for configs built without validation
    unchecked = config(fake, tmp_path).model_copy(update={"interval": "7"})
    with pytest.raises(ConfigError, match="interval '7'"):
        load_or_fetch(unchecked)
    with pytest.raises(ConfigError, match="start 'yesterday-ish'"):
        load_or_fetch(config(fake, tmp_path, start="yesterday-ish"))
    assert list(tmp_path.iterdir()) == []
    assert fake.request_count == 0


def test_an_unwritable_data_dir_is_a_clear_error(tmp_path: Path, client: BybitClient) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write the candle store"):
        CandleStore(blocker).update(KEY, client, T("2024-01-01"), T("2024-01-02"))

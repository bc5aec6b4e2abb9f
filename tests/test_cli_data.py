"""``selfdistill fetch`` / ``data list`` / ``data export`` through ``cli.main`` and a subprocess."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bybit_server import FakeBybit, Fault
from selfdistill.cli import main
from selfdistill.data.bybit.request import MarketKey
from selfdistill.data.files import load_candles_file
from selfdistill.data.store import CandleStore

KEY = MarketKey("linear", "BTCUSDT", "60")
COLUMNS = ["open", "high", "low", "close", "volume", "turnover"]


def T(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture
def fake():
    with FakeBybit(history_start="2023-12-01") as server:
        yield server


def fetch_args(fake: FakeBybit, data_dir: Path, *extra: str, interval: str = "60",
               start: str = "2024-01-01", end: str = "2024-01-08") -> list[str]:
    return ["fetch", "--symbol", "BTCUSDT", "--interval", interval, "--start", start,
            "--end", end, "--base-url", fake.url, "--data-dir", str(data_dir), "--rate", "500",
            *extra]


def with_option(args: list[str], name: str, value: str) -> list[str]:
    """``args`` with option ``name`` set to ``value`` (replaced or appended)."""
    if name not in args:
        return [*args, name, value]
    at = args.index(name)
    return [*args[:at + 1], value, *args[at + 2:]]


def test_fetch_shows_progress_and_what_the_store_holds(tmp_path: Path, fake: FakeBybit,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(fetch_args(fake, tmp_path)) == 0
    out, err = capsys.readouterr()
    assert "received 168 candles; store holds linear BTCUSDT 60: 2024-01-01 00:00 .. " \
           "2024-01-08 00:00 UTC, 168 candles, 0 gaps (0 missing), last candle 2024-01-07 " \
           "23:00 UTC" in out
    # stderr is no terminal here: plain progress lines instead of a bar
    assert "fetch linear BTCUSDT 60: 168 candles received, 100% of the range" in err
    stored = CandleStore(tmp_path).read(KEY)[COLUMNS]
    truth = fake.candles("linear", "BTCUSDT", "60", "2024-01-01", "2024-01-08")
    pd.testing.assert_frame_equal(stored, truth, check_freq=False)


@pytest.mark.parametrize(("change", "message"), [
    (("--symbol", "../../etc"), "symbol '../../etc' is not valid"),
    (("--symbol", "btc/usdt"), "upper-case letters and digits"),
    (("--interval", "7"), "interval '7' is not one of 1, 3, 5"),
    (("--category", "futures"), "category 'futures' is not one of spot, linear, inverse"),
    (("--start", "2024-02-30"), "start '2024-02-30' is not a date"),
    (("--end", "2023-06-01"), "must be before end"),
    (("--base-url", "api.bybit.com"), "must start with http:// or https://"),
    (("--concurrency", "99"), "concurrency 99 must be between 1 and 16"),
])
def test_bad_options_exit_2_before_any_request_or_file(tmp_path: Path, fake: FakeBybit,
                                                       capsys: pytest.CaptureFixture[str],
                                                       change: tuple[str, str],
                                                       message: str) -> None:
    assert main(with_option(fetch_args(fake, tmp_path), *change)) == 2
    assert message in capsys.readouterr().err
    assert fake.request_count == 0
    assert list(tmp_path.iterdir()) == []


def test_unknown_symbol_exits_1_with_the_exchange_message(tmp_path: Path, fake: FakeBybit,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    assert main(with_option(fetch_args(fake, tmp_path), "--symbol", "NOPEUSDT")) == 1
    assert "Not supported symbols" in capsys.readouterr().err
    assert fake.request_count == 1


def test_a_ban_mid_fetch_stops_and_says_what_is_kept(tmp_path: Path, fake: FakeBybit,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    fake.faults.always(Fault.http(403), after=3)
    args = fetch_args(fake, tmp_path, "--concurrency", "1", interval="1", end="2024-01-10")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "wait at least 10 minutes" in err
    assert "kept: linear BTCUSDT 1: 2024-01-01 00:00 .. 2024-01-03 02:00 UTC, 3,000 candles" in err
    assert fake.request_count == 4  # three answered windows and the one refused: no retries


def test_data_list_shows_what_is_stored(tmp_path: Path, fake: FakeBybit,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    assert "no datasets under" in capsys.readouterr().out
    assert main(fetch_args(fake, tmp_path)) == 0
    assert main(fetch_args(fake, tmp_path, interval="D", start="2023-12-01")) == 0
    capsys.readouterr()
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "BTCUSDT" in line]
    assert len(rows) == 2
    assert "60" in rows[0]
    assert "168" in rows[0]
    assert "2024-01-01 00:00" in rows[0]
    assert "2024-01-07 23:00" in rows[0]  # the last stored candle
    assert "38" in rows[1]  # 2023-12-01 .. 2024-01-08: 38 daily candles
    assert "2024-01-07 00:00" in rows[1]


@pytest.mark.parametrize("name", ["out.csv", "out.parquet", "out.csv.gz"])
def test_data_export_round_trips(tmp_path: Path, fake: FakeBybit, name: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(fetch_args(fake, tmp_path / "store")) == 0
    out = tmp_path / name
    assert main(["data", "export", "--symbol", "BTCUSDT", "--interval", "60", "--out", str(out),
                 "--start", "2024-01-02", "--data-dir", str(tmp_path / "store")]) == 0
    assert "wrote 144 linear BTCUSDT 60 candles" in capsys.readouterr().out
    back = load_candles_file(out, interval="60")
    expected = CandleStore(tmp_path / "store").read(KEY, T("2024-01-02"))
    pd.testing.assert_frame_equal(back[COLUMNS], expected[COLUMNS], check_freq=False)


def test_data_export_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["data", "export", "--symbol", "BTCUSDT", "--interval", "60", "--data-dir",
            str(tmp_path)]
    assert main([*base, "--out", str(tmp_path / "x.txt"), "--format", "csv"]) == 2
    assert "must end in .csv or .csv.gz" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "x.csv"), "--format", "xlsx"]) == 2
    assert "--format 'xlsx' is not one of csv, parquet" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "x.csv")]) == 1
    assert "nothing stored for linear BTCUSDT 60" in capsys.readouterr().err


def _cli_in_child(argv: list[str]) -> None:
    os._exit(main(argv))  # a forked child: exit without running the parent's teardown


def _fork_cli(argv: list[str], log: Path) -> Callable[[], tuple[int | None, Callable[[], int]]]:
    """Start ``main(argv)`` in a forked process (it inherits the imports: starts at once)."""
    child = multiprocessing.get_context("fork").Process(target=_cli_in_child, args=(argv,))
    child.start()

    def kill() -> int:
        child.kill()
        child.join()
        return int(child.exitcode or 0)

    return lambda: (child.exitcode, kill)


def _spawn_cli(argv: list[str], log: Path) -> Callable[[], tuple[int | None, Callable[[], int]]]:
    """Start ``python -m selfdistill ...`` as a fresh program."""
    with open(log, "wb") as sink:
        child = subprocess.Popen([sys.executable, "-m", "selfdistill", *argv],
                                 stdout=subprocess.DEVNULL, stderr=sink)

    def kill() -> int:
        child.send_signal(signal.SIGKILL)
        return child.wait()

    return lambda: (child.poll(), kill)


def _kill_mid_fetch_then_resume(tmp_path: Path, start: Callable[..., Any]) -> None:
    """SIGKILL a fetch after it committed at least once; the store must stay whole."""
    key, store = MarketKey("linear", "BTCUSDT", "1"), CandleStore(tmp_path)
    with FakeBybit(history_start="2023-12-01", delay=0.06) as fake:
        assert main(fetch_args(fake, tmp_path, interval="1", end="2024-01-03")) == 0
        complete = store.manifest(key)
        assert complete is not None
        argv = fetch_args(fake, tmp_path, "--concurrency", "2", interval="1", end="2024-02-01")
        status = start(argv, tmp_path / "child.log")  # 42 more windows
        deadline = time.monotonic() + 120
        while status()[0] is None and time.monotonic() < deadline:
            held = store.manifest(key)  # readable at every moment
            if held is not None and held.end > complete.end:  # it has committed once
                break
            time.sleep(0.01)
        time.sleep(0.15)  # then kill it wherever it is: fetching, merging or writing
        exit_code, kill = status()
        assert exit_code is None, "the fetch finished before it could be killed"
        assert kill() == -signal.SIGKILL

        kept = store.manifest(key)
        assert kept is not None
        assert kept.start == T("2024-01-01")
        assert complete.end < kept.end < T("2024-02-01")
        truth = fake.candles("linear", "BTCUSDT", "1", "2024-01-01", "2024-02-01")
        pd.testing.assert_frame_equal(store.read(key)[COLUMNS], truth[truth.index < kept.end],
                                      check_freq=False)

        n = fake.request_count
        assert main(fetch_args(fake, tmp_path, interval="1", end="2024-02-01")) == 0
        resumed = [int(r.params["start"]) for r in fake.requests[n:]]
        assert min(resumed) == kept.end.value // 1_000_000  # it resumed where the kill left off
    pd.testing.assert_frame_equal(store.read(key)[COLUMNS], truth, check_freq=False)
    assert not list(store.path(key).parent.glob(".*.tmp"))


def test_sigkill_mid_fetch_keeps_the_store_readable_and_a_rerun_completes_it(
        tmp_path: Path) -> None:
    _kill_mid_fetch_then_resume(tmp_path, _fork_cli)


@pytest.mark.slow  # a fresh interpreter imports torch and sklearn: 5-20 s before the first request
def test_sigkill_of_the_real_program_mid_fetch(tmp_path: Path) -> None:
    _kill_mid_fetch_then_resume(tmp_path, _spawn_cli)


def test_fetch_counts_the_candles_it_received(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # issue 13: progress showed 1440/1440 when 745 candles arrived (a listing mid-range)
    with FakeBybit(history_start="2024-01-01 11:35") as late:
        assert main(fetch_args(late, tmp_path, interval="1", start="2024-01-01",
                               end="2024-01-02")) == 0
    out, err = capsys.readouterr()
    assert "received 745 candles" in out
    assert "last candle 2024-01-01 23:59 UTC" in out
    assert "745 candles received, 100% of the range" in err
    assert "1440/1440" not in err

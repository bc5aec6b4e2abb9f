"""The live loop end to end against the fake exchange (REST + WebSocket on one virtual clock).

The fake stream (tests/ws_server.py) sends unconfirmed updates, drops the connection,
duplicates, reorders, garbles and freezes; the fake REST exchange (tests/bybit_server.py)
serves the same candles. Every test checks the loop against the exchange's truth: one
signal line per closed candle, in order, none missed, none twice, none from an
unconfirmed update, the store equal to REST, and the numbers equal to the batch
prediction on the stored candles.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from live_support import (
    CLASSES,
    KEY,
    MINUTE,
    START,
    exchange,
    finished,
    loop_for,
    make_model,
    read_lines,
    run_live,
    settings,
    truth,
)
from selfdistill.data.store import CandleStore
from selfdistill.errors import GapError
from selfdistill.serving.signals import predict_candles_numpy
from ws_server import Fault


def assert_every_candle_once(lines: list[dict], last: pd.Timestamp,
                             gaps: tuple[tuple[str, str], ...] = (),
                             streamed_wrong: pd.Timestamp | None = None,
                             started_by: pd.Timestamp = START + 3 * MINUTE) -> None:
    """From the first line (the newest candle closed at start) to ``last``: each candle once,
    with the exchange's values (``streamed_wrong``: a candle the stream garbled)."""
    times = [pd.Timestamp(r["open_time"]) for r in lines]
    assert START - MINUTE <= times[0] <= started_by  # the market runs as we start
    expected = truth(times[0], last + MINUTE, gaps=gaps)
    assert times == list(expected.index)
    closes = pd.Series([r["close"] for r in lines], index=expected.index)
    right = closes.index != streamed_wrong
    assert closes[right].tolist() == expected["close"][right].tolist()  # never unconfirmed


def assert_matches_batch(lines: list[dict], model: Path, store: Path) -> None:
    """Every line equals predict_candles_numpy on the stored candles, to 1e-9."""
    stored = CandleStore(store).read(KEY)
    ref = predict_candles_numpy(model, stored).set_index("open_time")
    got = pd.DataFrame([{"open_time": pd.Timestamp(r["open_time"]), "regime": r["regime"],
                         "uncertainty": r["uncertainty"],
                         **{f"p_{c}": (r["probabilities"] or {}).get(c, np.nan)
                            for c in CLASSES}} for r in lines]).set_index("open_time")
    want = ref.loc[got.index]
    cols = [f"p_{c}" for c in CLASSES] + ["uncertainty"]
    np.testing.assert_allclose(got[cols].astype(float).to_numpy(),
                               want[cols].astype(float).to_numpy(), rtol=1e-9, atol=1e-12)
    assert got["regime"].tolist() == [None if pd.isna(x) else x for x in want["regime"]]


def test_no_missed_or_duplicated_candle_through_every_fault(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    faults = {3: Fault.duplicate(), 6: Fault.malformed(), 9: Fault.out_of_order(),
              14: Fault.drop(missed=3), 24: Fault.stale(seconds=0.8, missed=2)}
    with exchange(40, faults) as (clock, rest, ws):
        cfg = settings(model, rest, ws, clock, tmp_path)
        live = loop_for(cfg, tmp_path / "signals.jsonl", rest)
        last = START + 39 * MINUTE
        run_live(live, finished(live, ws, last))
        partial = {(s.open_ms, s.close) for s in ws.sent if not s.confirmed}
    lines = read_lines(tmp_path / "signals.jsonl")
    assert_every_candle_once(lines, last)
    emitted = {(pd.Timestamp(r["open_time"]).value // 1_000_000, r["close"]) for r in lines}
    assert len(partial) > 60
    assert not partial & emitted  # no candle's signal carries its unconfirmed values
    sources = {pd.Timestamp(r["open_time"]): r["source"] for r in lines}
    assert sources[START + 14 * MINUTE] == "rest"  # dropped before its confirmation
    assert sources[START + 25 * MINUTE] == "rest"  # closed while the feed was frozen
    assert all(r["latency_ms"] >= 0 for r in lines if r["source"] == "stream")
    stored = CandleStore(tmp_path / "store").read(KEY)
    truth_all = truth(stored.index[0], last + MINUTE)
    pd.testing.assert_frame_equal(stored.drop(columns="gap_before"),
                                  truth_all.drop(columns="gap_before"), check_freq=False)
    counts = live.metrics.counts
    assert counts["reconnects"] >= 2
    assert counts["stale"] >= 1
    assert counts["duplicates"] >= 2  # the duplicate, and the late out-of-order candle
    assert counts["malformed"] == 7
    assert counts["unconfirmed"] >= 2 * 30
    assert counts["conflicts"] == 0
    assert_matches_batch(lines, model, tmp_path / "store")


def test_rest_wins_a_conflict_and_says_so(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    model = make_model(tmp_path / "model")
    with exchange(12, {4: Fault.conflict(), 6: Fault.drop()}) as (clock, rest, ws):
        live = loop_for(settings(model, rest, ws, clock, tmp_path), tmp_path / "s.jsonl", rest)
        with caplog.at_level(logging.WARNING, logger="selfdistill.serving"):
            run_live(live, finished(live, ws, START + 11 * MINUTE))
    wrong = START + 4 * MINUTE
    stored = CandleStore(tmp_path / "store").read(KEY)
    assert stored.loc[wrong, "close"] == truth(wrong, wrong + MINUTE)["close"].iloc[0]
    assert live.metrics.counts["conflicts"] == 1
    assert any("REST corrects the streamed candle" in r.message and "REST wins" in r.message
               for r in caplog.records)
    lines = read_lines(tmp_path / "s.jsonl")
    assert_every_candle_once(lines, START + 11 * MINUTE, streamed_wrong=wrong)
    line = next(r for r in lines if pd.Timestamp(r["open_time"]) == wrong)
    assert line["close"] != stored.loc[wrong, "close"]  # signalled before REST could know


def test_hot_reload_switches_between_candles_and_refuses_a_broken_model(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = make_model(tmp_path / "a", seed=1)
    second = make_model(tmp_path / "b", seed=2)
    broken = make_model(tmp_path / "c", seed=3)
    (broken / "member_2.safetensors").write_bytes(b"not weights")  # sha256 no longer matches
    other = make_model(tmp_path / "d", seed=4, features={"return_windows": [1, 2]})
    current = tmp_path / "current"
    current.symlink_to(first)
    plan = iter([(15, broken), (25, other), (35, second)])  # after N lines, point at a model
    step = next(plan)

    def repoint() -> None:
        nonlocal step
        if step is not None and live.sink.lines >= step[0]:
            tmp = tmp_path / "next"
            tmp.symlink_to(step[1])
            tmp.replace(current)  # atomic, like ln -sfn
            step = next(plan, None)

    with exchange(60, pace=0.02) as (clock, rest, ws):
        cfg = settings(lambda: current, rest, ws, clock, tmp_path, reload_every=0.02)
        live = loop_for(cfg, tmp_path / "s.jsonl", rest)
        with caplog.at_level(logging.INFO, logger="selfdistill.serving"):
            run_live(live, finished(live, ws, START + 59 * MINUTE), during=repoint)
    lines = read_lines(tmp_path / "s.jsonl")
    ids = [r["model_id"] for r in lines]
    a, b = ids[0], ids[-1]
    assert a != b
    switch = ids.index(b)
    assert set(ids[:switch]) == {a}  # one switch, between two candles, nothing in between
    assert set(ids[switch:]) == {b}
    assert_every_candle_once(lines, START + 59 * MINUTE)  # none missed across the switch
    assert live.metrics.counts["model_refused"] == 2
    refusals = [r.message for r in caplog.records if "refused the new model" in r.message]
    assert any("sha256" in m for m in refusals)
    assert any("other feature names" in m for m in refusals)
    assert_matches_batch(lines[:switch], first, tmp_path / "store")
    assert_matches_batch(lines[switch:], second, tmp_path / "store")


def test_a_restart_resumes_after_the_last_line(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    out = tmp_path / "s.jsonl"
    with exchange(30, pace=0.01) as (clock, rest, ws):
        cfg = settings(model, rest, ws, clock, tmp_path)
        live = loop_for(cfg, out, rest)
        run_live(live, lambda: live.sink.lines >= 10)
        with out.open("a") as handle:
            handle.write('{"open_time": "2099-01-01T00:00:00+00:00", "clo')  # killed mid-line
        from selfdistill.serving.sinks import last_open_time

        resume = last_open_time(out)
        assert resume is not None
        live = loop_for(settings(model, rest, ws, clock, tmp_path, resume_after=resume), out,
                        rest)
        run_live(live, finished(live, ws, START + 29 * MINUTE))
    text = out.read_text()
    whole = [json.loads(line) for line in text.splitlines() if line.endswith("}")]
    assert len(text.splitlines()) == len(whole) + 1  # the torn line stays, alone on its line
    assert_every_candle_once(whole, START + 29 * MINUTE)
    assert_matches_batch(whole, model, tmp_path / "store")


def test_the_gap_policy_of_the_model_is_honoured(tmp_path: Path) -> None:
    outage = (str(START + 5 * MINUTE), str(START + 8 * MINUTE))  # 3 candles never existed
    marked = make_model(tmp_path / "mark", gaps="mark")
    with exchange(15, gaps=(outage,)) as (clock, rest, ws):
        live = loop_for(settings(marked, rest, ws, clock, tmp_path), tmp_path / "m.jsonl", rest)
        run_live(live, finished(live, ws, START + 14 * MINUTE))
    lines = read_lines(tmp_path / "m.jsonl")
    assert_every_candle_once(lines, START + 14 * MINUTE, gaps=(outage,))
    after = next(r for r in lines if pd.Timestamp(r["open_time"]) == START + 8 * MINUTE)
    assert after["regime"] is None  # a return window across the missing candles
    assert_matches_batch(lines, marked, tmp_path / "store")

    strict = make_model(tmp_path / "error", gaps="error")
    with exchange(15, gaps=(outage,)) as (clock, rest, ws):
        live = loop_for(settings(strict, rest, ws, clock, tmp_path / "x"), tmp_path / "e.jsonl",
                        rest)
        with pytest.raises(GapError, match="gap policy is 'error'; pass --gaps mark"):
            run_live(live, lambda: False)


def test_http_signal_health_and_metrics(tmp_path: Path) -> None:
    import socket
    import threading

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = make_model(tmp_path / "model")
    answers: dict[str, httpx.Response] = {}

    def ask() -> None:  # a scraper in another thread while the loop runs
        deadline = time.monotonic() + 15
        while live.sink.lines < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for path in ("/signal", "/health", "/metrics", "/nope"):
                answers[path] = client.get(path)

    with exchange(30, pace=0.02) as (clock, rest, ws):
        cfg = settings(model, rest, ws, clock, tmp_path, serve=("127.0.0.1", port))
        live = loop_for(cfg, tmp_path / "s.jsonl", rest)
        threading.Thread(target=ask, daemon=True).start()
        run_live(live, lambda: len(answers) == 4)
    assert answers["/signal"].status_code == 200
    latest = answers["/signal"].json()
    assert set(latest) >= {"open_time", "close", "regime", "probabilities", "uncertainty",
                           "disagreement", "model_id", "latency_ms", "source"}
    health = answers["/health"]
    assert health.status_code == 200
    assert health.json()["connected"] is True
    assert health.json()["model_id"] == latest["model_id"]
    metrics = answers["/metrics"].text
    assert "# TYPE selfdistill_live_latency_seconds histogram" in metrics
    assert 'selfdistill_live_latency_seconds_bucket{le="+Inf"}' in metrics
    candles = next(line for line in metrics.splitlines()
                   if line.startswith("selfdistill_live_candles_total "))
    assert int(candles.split()[1]) >= 5
    assert answers["/nope"].status_code == 404


def test_sigint_finishes_the_current_candle_and_flushes_the_store(tmp_path: Path) -> None:
    import os
    import signal

    model = make_model(tmp_path / "model")
    out = tmp_path / "s.jsonl"
    with exchange(500, pace=0.01) as (clock, rest, ws):
        live = loop_for(settings(model, rest, ws, clock, tmp_path, commit_every=60.0), out, rest)

        async def main() -> None:
            task = asyncio.create_task(live.run())  # with its SIGINT / SIGTERM handlers
            while live.sink.lines < 8 and not task.done():
                await asyncio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.wait_for(task, 10)

        asyncio.run(main())
        stopped_early = not ws.done.is_set()
    lines = read_lines(out)  # every line whole
    last = pd.Timestamp(lines[-1]["open_time"])
    assert stopped_early
    assert_every_candle_once(lines, last)
    stored = CandleStore(tmp_path / "store").read(KEY)
    assert stored.index[-1] == last  # streamed candles committed on the way out


def test_the_command_runs_end_to_end_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from bybit_server import FakeBybit
    from ws_server import FakeBybitStream, VirtualClock

    model = make_model(tmp_path / "model")
    now = pd.Timestamp.now(tz="UTC").floor("min")  # the command reads the real clock
    clock = VirtualClock(now)
    out = tmp_path / "signals.jsonl"
    with FakeBybit(history_start=str(now - 300 * MINUTE), clock=clock) as rest, \
            FakeBybitStream(clock, first_open=str(now), candles=10_000, pace=0.02) as ws:
        proc = subprocess.Popen(
            [sys.executable, "-m", "selfdistill", "live", "--model", str(model), "--symbol",
             "BTCUSDT", "--interval", "1m", "--base-url", rest.url, "--ws-url", ws.url(),
             "--data-dir", str(tmp_path / "store"), "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while (not out.exists() or len(out.read_text().splitlines()) < 5) \
                and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert stdout == ""  # the lines went to --out
    assert "stopped: " in stderr
    assert "subscribed to kline.1.BTCUSDT" in stderr
    lines = read_lines(out)
    times = [pd.Timestamp(r["open_time"]) for r in lines]
    assert len(times) >= 5
    assert times == list(truth(times[0], times[-1] + MINUTE).index)


@pytest.mark.parametrize(("args", "message"), [
    (["--serve", "localhost"], "--serve 'localhost' is not HOST:PORT"),
    (["--gaps", "fill"], "--gaps 'fill' is not one of"),
    (["--history", "0"], "--history must be >= 1"),
    (["--interval", "60"], "was trained on interval 1 candles; --interval 60"),
    (["--symbol", "btc/usdt"], "symbol 'btc/usdt' is not valid"),
    (["--ws-url", "https://stream.bybit.com"], "must start with ws:// or wss://"),
])
def test_bad_options_are_usage_errors_before_any_connection(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    from selfdistill.cli import main

    model = make_model(tmp_path / "model")
    base = {"--model": str(model), "--symbol": "BTCUSDT", "--interval": "1",
            "--data-dir": str(tmp_path / "store"), "--base-url": "http://127.0.0.1:9",
            "--ws-url": "ws://127.0.0.1:9/v5/public/linear"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    code = main(["live", *[part for pair in base.items() for part in pair]])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "store").exists()  # nothing touched


def test_a_model_without_a_numpy_forward_is_refused_at_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from selfdistill.cli import main
    from selfdistill.modelio.bundle import read_bundle, save_bundle
    from selfdistill.nn.multi_exit import MultiExitMLP

    bundle = read_bundle(make_model(tmp_path / "mlp"))
    save_bundle(tmp_path / "byot", [MultiExitMLP(len(bundle.feature_names), 3)],
                member_keys=[{"exit": 0}], classes=bundle.classes,
                feature_names=bundle.feature_names, selected=0, scaler=bundle.scaler,
                feature_config=bundle.feature_config, extra=bundle.extra)  # no exit chosen
    code = main(["live", "--model", str(tmp_path / "byot"), "--symbol", "BTCUSDT",
                 "--interval", "1", "--ws-url", "ws://127.0.0.1:9/v5/public/linear",
                 "--data-dir", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert code == 1
    assert "has no NumPy forward" in err
    assert "Traceback" not in err


def test_a_fetch_holding_the_store_delays_the_backfill_without_losing_a_candle(
        tmp_path: Path) -> None:
    import fcntl

    model = make_model(tmp_path / "model")
    lock_path = CandleStore(tmp_path / "store").path(KEY).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True)
    holder = lock_path.open("a+b")
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a running `selfdistill fetch` does
    began = time.monotonic()

    def release_later() -> None:
        if not holder.closed and time.monotonic() - began > 0.5:
            holder.close()

    with exchange(15, pace=0.01) as (clock, rest, ws):
        live = loop_for(settings(model, rest, ws, clock, tmp_path), tmp_path / "s.jsonl", rest)
        run_live(live, finished(live, ws, START + 14 * MINUTE), during=release_later)
    assert live.metrics.counts["reconnects"] >= 1  # the busy store was waited out
    assert_every_candle_once(read_lines(tmp_path / "s.jsonl"), START + 14 * MINUTE,
                             started_by=START + 14 * MINUTE)  # the market ran meanwhile

"""What the live-loop tests and the benchmark share: small servable models, the fake
exchange (REST + stream on one virtual clock) and a harness that runs the loop against it.

Models are MLPs with random weights (no training: the tests are about the plumbing, and
random weights give varied probabilities), a scaler fitted on features of the fake
exchange's candles, the feature settings below, and the gap policy in ``extra``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from bybit_klines import kline_rows, open_times_ms, to_ms
from bybit_server import FakeBybit
from selfdistill.config import FeaturesConfig
from selfdistill.data.bybit import BybitClient
from selfdistill.data.bybit.ratelimit import RetryPolicy
from selfdistill.data.bybit.request import MarketKey
from selfdistill.data.candles import validate_candles
from selfdistill.features import Scaler, compute_features, feature_names
from selfdistill.modelio.bundle import save_bundle
from selfdistill.serving.live import LiveLoop, LiveSettings
from selfdistill.serving.sinks import SignalSink
from ws_server import FakeBybitStream, Fault, VirtualClock

FEATURES = {"return_windows": [1, 4, 12], "volatility_windows": [6, 24], "ma_windows": [12, 24],
            "volume_window": 24, "range_window": 12, "skew_window": 24, "volume": "on"}
CLASSES = ["bull", "bear", "sideways"]
SYMBOL = "BTCUSDT"


def truth(start: str | pd.Timestamp, stop: str | pd.Timestamp, interval: str = "1",
          gaps: tuple[tuple[str, str], ...] = ()) -> pd.DataFrame:
    """The fake exchange's closed candles with open time in ``[start, stop)``, validated."""
    times = open_times_ms(interval, to_ms(start), to_ms(stop) - 1)
    for a, b in gaps:
        times = times[(times < to_ms(a)) | (times >= to_ms(b))]
    rows = kline_rows("linear", SYMBOL, interval, times)
    frame = pd.DataFrame([[float(v) for v in r[1:]] for r in rows],
                         columns=["open", "high", "low", "close", "volume", "turnover"])
    frame.index = pd.DatetimeIndex(pd.to_datetime(times, unit="ms", utc=True), name="open_time")
    return validate_candles(frame, interval=interval)


def make_model(path: Path, *, seed: int = 0, members: int = 3, interval: str = "1",
               gaps: str = "mark", features: dict | None = None,
               temperature: float = 1.3) -> Path:
    """A servable model directory (``members`` generations, the last selected)."""
    import torch

    from selfdistill.nn.mlp import MLP

    cfg = FeaturesConfig(**(features or FEATURES))
    names = feature_names(cfg)
    feats = compute_features(truth("2024-01-01", "2024-01-02", interval), cfg).dropna()
    scaler = Scaler("standard", clip=5.0).fit(feats[names].to_numpy())
    torch.manual_seed(seed)
    models = [MLP(len(names), len(CLASSES), hidden=(16, 8)) for _ in range(members)]
    return save_bundle(path, models, member_keys=[{"generation": i} for i in range(members)],
                       classes=np.array(CLASSES), feature_names=names, selected=members - 1,
                       method="born_again", temperature=temperature, scaler=scaler.to_dict(),
                       feature_config=cfg.model_dump(mode="json"),
                       extra={"interval": interval, "gaps": gaps})


KEY = MarketKey("linear", "BTCUSDT", "1")
START = pd.Timestamp("2024-03-01 00:00", tz="UTC")  # the stream's first candle
MINUTE = pd.Timedelta(minutes=1)


@contextlib.contextmanager
def exchange(candles: int, faults: dict[int, Fault] | None = None, *,
             gaps: tuple[tuple[str, str], ...] = (), pace: float = 0.002
             ) -> Iterator[tuple[VirtualClock, FakeBybit, FakeBybitStream]]:
    clock = VirtualClock(START)
    rest = FakeBybit(history_start=str(START - 400 * MINUTE), clock=clock, gaps=list(gaps))
    ws = FakeBybitStream(clock, first_open=str(START), candles=candles, faults=faults or {},
                         gaps=list(gaps), pace=pace)
    with rest, ws:
        yield clock, rest, ws


def settings(model: Path | Callable[[], Path], rest: FakeBybit, ws: FakeBybitStream,
             clock: VirtualClock, tmp: Path, **changes: object) -> LiveSettings:
    values: dict = {
        "locate": model if callable(model) else (lambda: model), "key": KEY,
        "ws_url": ws.url(), "base_url": rest.url, "data_dir": tmp / "store", "history": 200,
        "stale_after": 0.3, "ping_interval": 0.1, "pong_timeout": 0.5, "reload_every": 0.05,
        "commit_every": 0.05, "backoff": RetryPolicy(base_delay=0.01, max_delay=0.05),
        "clock": clock, "seed": 0}
    return LiveSettings(**(values | changes))


def run_live(live: LiveLoop, done: Callable[[], bool], *, during: Callable[[], None] = lambda: None,
             timeout: float = 20.0) -> None:
    """Run the loop until ``done()``, calling ``during()`` every 10 ms, then stop it."""
    async def main() -> None:
        task = asyncio.create_task(live.run(handle_signals=False))
        deadline = time.monotonic() + timeout
        while not done():
            if task.done():
                await task  # raises what stopped it
                raise AssertionError("the loop stopped by itself")
            if time.monotonic() > deadline:
                live.stop()
                await asyncio.wait_for(task, 10)
                raise AssertionError("timed out waiting for the loop")
            during()
            await asyncio.sleep(0.01)
        live.stop()
        await asyncio.wait_for(task, 10)
    asyncio.run(main())


def loop_for(cfg: LiveSettings, out: Path, rest: FakeBybit) -> LiveLoop:
    client = BybitClient(rest.url, rate=100.0, concurrency=1, seed=0,
                         retry=RetryPolicy(max_retries=2, base_delay=0.01))
    return LiveLoop(cfg, SignalSink(out, stdout=False), client=client)


def read_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def finished(live: LiveLoop, ws: FakeBybitStream, last: pd.Timestamp) -> Callable[[], bool]:
    return lambda: ws.done.is_set() and live.metrics.last_open == last

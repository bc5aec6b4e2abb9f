"""The live loop: confirmed Bybit candles in, one signal line per closed candle out.

::

    WebSocket kline stream ──confirmed──► sequencer ──► incremental features ──► NumPy model
          ▲   (unconfirmed: counted, dropped)  │  ▲                                   │
          │                                    │  └── REST backfill + store (start,   ▼
    reconnect, backoff + jitter      hole / duplicate    reconnect, hole)       signal line
                                                                       (stdout / file / HTTP)

The sequencer holds ``next_open``, the open time of the next candle owed a signal.
A confirmed candle at ``next_open`` is processed; an earlier one is a duplicate (compared
with what was processed: a difference is a logged conflict, and the processed candle
stays); a later one means the stream skipped candles, which are fetched over REST first.
Every (re)connection subscribes first and then backfills, so no candle closes unseen in
between. Candles are processed strictly in open-time order, each exactly once.

Streamed candles are appended to the store (atomically, as ``fetch`` does) in the
background, at most once per ``commit_every`` seconds; every backfill first commits them,
then asks REST for what the store lacks, then asks REST again for the streamed candles
since the last backfill and stores REST's values where they differ (REST wins, logged),
then rebuilds the feature window from the store.

A model directory that changes (and settles) is loaded, checked against the serving
model (same features, classes, gap policy), self-checked, and switched in between two
candles; a model that fails is refused and logged, and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from selfdistill.data.bybit.client import BybitClient
from selfdistill.data.bybit.ratelimit import RetryPolicy
from selfdistill.data.bybit.request import MarketKey, floor_open, next_open
from selfdistill.data.bybit.stream import PING_INTERVAL, Kline, KlineStream, StreamLost
from selfdistill.data.intervals import interval_to_timedelta
from selfdistill.data.sessions import apply_gap_policy, resolve_gap_policy
from selfdistill.data.store import CandleStore
from selfdistill.errors import GapError, RetryableError, SelfDistillError
from selfdistill.features.incremental import IncrementalFeatures
from selfdistill.serving.http import start_http
from selfdistill.serving.livemetrics import LiveMetrics, live_routes
from selfdistill.serving.livestore import LiveStore, Row, StoreBusy, StoreWriter
from selfdistill.serving.reload import ModelWatcher
from selfdistill.serving.signals import SignalModel, signal_record
from selfdistill.serving.sinks import SignalSink

__all__ = ["LiveLoop", "LiveSettings"]

log = logging.getLogger(__name__)

_RECENT = 1024  # processed candles remembered for duplicate checks


@dataclass(frozen=True)
class LiveSettings:
    """Everything one live process needs (the CLI builds it from its options).

    ``locate`` returns the model directory to serve (polled for hot reload); ``gaps``
    overrides the model's gap policy; ``resume_after`` is the open time of the last
    candle already signalled (from ``--out``), so the loop continues after it.
    ``stale_after`` defaults to two intervals, at most 300 s.
    """

    locate: Callable[[], Path]
    key: MarketKey
    ws_url: str
    base_url: str
    data_dir: Path | None = None
    gaps: str | None = None
    history: int = 1000
    resume_after: pd.Timestamp | None = None
    stale_after: float | None = None
    ping_interval: float = PING_INTERVAL
    pong_timeout: float = 10.0
    reload_every: float = 5.0
    commit_every: float = 1.0
    backoff: RetryPolicy = field(default_factory=lambda: RetryPolicy(base_delay=0.5,
                                                                     max_delay=30.0))
    serve: tuple[str, int] | None = None
    clock: Callable[[], float] = time.time
    seed: int | None = None


class LiveLoop:
    """One live process: build it, then ``await loop.run()`` until :meth:`stop`.

    Args:
        settings: the process's settings.
        sink: where signal lines go.
        client: the REST client (default: one on ``settings.base_url``).
    """

    def __init__(self, settings: LiveSettings, sink: SignalSink, *,
                 client: BybitClient | None = None) -> None:
        self.settings, self.sink, self.key = settings, sink, settings.key
        self.model = SignalModel.load(settings.locate())
        self.features = IncrementalFeatures(self.model.features)
        step = interval_to_timedelta(self.key.interval)
        self._step_ms = None if step is None else int(step.total_seconds() * 1000)
        seconds = 31 * 86_400.0 if step is None else step.total_seconds()
        self.stale_after = settings.stale_after or min(2 * seconds, 300.0)
        self.metrics = LiveMetrics(seconds, model_id=self.model.model_id)
        self._client = client or BybitClient(settings.base_url, concurrency=1)
        db = LiveStore(CandleStore(settings.data_dir), self._client, self.key)
        self.writer = StoreWriter(db, self.metrics, commit_every=settings.commit_every)
        self.policy: str | None = None  # resolved from the model (or --gaps) on the first read
        self.next_ms: int | None = None
        self._prev_ms: int | None = None
        self._recent: OrderedDict[int, tuple[tuple[float, ...], str]] = OrderedDict()
        self._last_x: np.ndarray | None = None
        self._stopping = asyncio.Event()
        self._stream: KlineStream | None = None
        self._malformed_before = 0
        self._rng = random.Random(settings.seed)

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Finish the current candle, then stop (safe from a signal handler)."""
        if not self._stopping.is_set():
            log.warning("stopping after the current candle (again to quit at once)")
        self._stopping.set()
        if self._stream is not None:
            self._stream.interrupt()
        with contextlib.suppress(Exception):  # a second Ctrl-C quits at once
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    async def run(self, *, handle_signals: bool = True) -> None:
        """Stream, backfill, predict and emit until :meth:`stop` (or a fatal error)."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.stop)
        server = None
        if self.settings.serve is not None:
            routes = live_routes(self.metrics, lambda: self.sink.latest, self.settings.clock)
            server = await start_http(*self.settings.serve, routes)
        watcher = asyncio.create_task(self._watch_model(), name="model-watcher")
        try:
            await self._connect_forever()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if server is not None:
                server.close()
            await self.writer.close()
            self.sink.close()
            self._client.close()

    async def _connect_forever(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            stream = KlineStream(self.settings.ws_url, self.key, stale_after=self.stale_after,
                                 ping_interval=self.settings.ping_interval,
                                 pong_timeout=self.settings.pong_timeout)
            try:
                async with stream:
                    self._stream, self.metrics.connected = stream, True
                    await self._sync(self._stop_now())
                    failures = 0
                    await self._consume(stream)
            except (StreamLost, RetryableError, StoreBusy) as exc:
                if self._stopping.is_set():
                    break
                self._lost(exc)
            finally:
                self._stream, self.metrics.connected = None, False
                self._malformed_before += stream.malformed
            delay = self.settings.backoff.delay(failures, None, self._rng)
            failures += 1
            log.info("reconnecting in %.2f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _lost(self, exc: Exception) -> None:
        self.metrics.add("reconnects")
        if isinstance(exc, StreamLost) and exc.reason == "stale":
            self.metrics.add("stale")
        log.warning("%s; reconnecting and backfilling over REST", exc)

    async def _consume(self, stream: KlineStream) -> None:
        while True:
            kline = await stream.next()
            if not kline.confirmed:
                self.metrics.add("unconfirmed")
                continue
            await self._on_confirmed(kline)
            self.metrics.counts["malformed"] = self._malformed_before + stream.malformed
            if self._stopping.is_set():
                return

    # ------------------------------------------------------------------ the sequencer

    def _next(self, ms: int) -> int:
        if self._step_ms is not None:
            return ms + self._step_ms
        stamp = next_open(pd.Timestamp(ms, unit="ms", tz="UTC"), self.key.interval)
        return int(stamp.value // 1_000_000)

    def _stop_now(self) -> int:
        """Exclusive bound of a backfill now: the open time of the candle after the open one."""
        now = pd.Timestamp(self.settings.clock(), unit="s", tz="UTC")
        return self._next(int(floor_open(now, self.key.interval).value // 1_000_000))

    async def _on_confirmed(self, k: Kline) -> None:
        if self.next_ms is None:  # nothing stored yet (a new listing): start here
            self.next_ms = k.open_ms
        if k.open_ms > self.next_ms:
            log.info("the stream skipped from %s to %s; fetching the hole over REST",
                     _iso(self.next_ms), _iso(k.open_ms))
            await self._sync(k.open_ms)
        if k.open_ms < self.next_ms:
            self._duplicate(k)
            return
        row: Row = (k.open_ms, k.open, k.high, k.low, k.close, k.volume, k.turnover)
        self._process(row, "stream", k.received)
        self.writer.add(row)

    def _duplicate(self, k: Kline) -> None:
        seen = self._recent.get(k.open_ms)
        values = (k.open, k.high, k.low, k.close, k.volume)
        if seen is None or seen[0] == values:
            self.metrics.add("duplicates")
            return
        self.metrics.add("conflicts")
        first, source = seen
        if source == "rest":
            log.warning("conflict at %s: the stream says close %g, REST said %g; REST wins",
                        _iso(k.open_ms), k.close, first[3])
        else:
            log.warning("conflict at %s: the stream confirmed close %g, then %g; the first is "
                        "kept until REST verifies it", _iso(k.open_ms), first[3], k.close)

    def _process(self, row: Row, source: str, received: float | None) -> None:
        """Features, prediction and the signal line of the candle ``next_ms``."""
        ms, o, h, lo, c, v, _ = row
        x = self.features.update(o, h, lo, c, v, gap_before=self._gap_before(ms))
        self._prev_ms, self.next_ms = ms, self._next(ms)
        record = self._record(ms, c, x[self.model.order], source, received)
        self.sink.write(record)
        self._remember(ms, (o, h, lo, c, v), source)
        if received is not None:
            self.metrics.observe_latency(time.perf_counter() - received)

    def _gap_before(self, ms: int) -> bool:
        """Candles are missing before ``ms`` and the gap policy marks them."""
        if self._prev_ms is None or ms == self._next(self._prev_ms):
            return False
        if self.policy == "error":
            raise GapError(f"candles are missing between {_iso(self._next(self._prev_ms))} and "
                           f"{_iso(ms)} and the model's gap policy is 'error'; pass --gaps mark "
                           "to keep running through exchange outages")
        return self.policy == "mark"

    def _record(self, ms: int, close: float, x: np.ndarray, source: str,
                received: float | None) -> dict[str, Any]:
        chosen = probs = None
        if np.isfinite(x).all():
            self._last_x = x
            members, calibrated = self.model.predict(x[None, :])
            if np.isfinite(calibrated).all():
                chosen, probs = calibrated[0], members[:, 0, :]
            else:
                log.error("the model gives non-finite probabilities at %s", _iso(ms))
        stamp = pd.Timestamp(ms, unit="ms", tz="UTC")
        record = signal_record(stamp, close, self.model.classes, chosen, probs,
                               model_id=self.model.model_id, method=self.model.bundle.method)
        latency = None if received is None else (time.perf_counter() - received) * 1000
        self.metrics.add("candles")
        self.metrics.add("stream_candles" if source == "stream" else "rest_candles")
        self.metrics.last_open = stamp
        return record | {"symbol": self.key.symbol, "interval": self.key.interval,
                         "source": source, "latency_ms": latency}

    def _remember(self, ms: int, values: tuple[float, ...], source: str) -> None:
        self._recent[ms] = (values, source)
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    # ------------------------------------------------------------------ REST and the store

    async def _sync(self, stop_ms: int) -> None:
        """Commit, backfill to ``stop_ms``, verify streamed candles, then catch up."""
        self.metrics.add("backfills")
        stop = pd.Timestamp(stop_ms, unit="ms", tz="UTC")
        frame = await self.writer.sync(self._history_first(stop), stop, self._read_from(stop))
        self._catch_up(frame[frame.index < stop])

    def _history_first(self, stop: pd.Timestamp) -> pd.Timestamp:
        bars = max(self.settings.history, self.features.warmup + 2)
        first = _back(stop, bars, self.key.interval)
        if self.next_ms is not None:
            seed = _back(pd.Timestamp(self.next_ms, unit="ms", tz="UTC"),
                         self.features.warmup + 2, self.key.interval)
            first = min(first, seed)
        return first

    def _read_from(self, stop: pd.Timestamp) -> pd.Timestamp:
        """Where the read for the feature window starts (enough rows despite gaps)."""
        anchor = stop if self.next_ms is None else pd.Timestamp(self.next_ms, unit="ms", tz="UTC")
        return _back(min(anchor, stop), max(self.settings.history, 4 * self.features.warmup),
                     self.key.interval)

    def _catch_up(self, frame: pd.DataFrame) -> None:
        """Rebuild the feature window from stored candles, then process those owed a signal."""
        if not len(frame):
            return
        if self.policy is None:
            self.policy = resolve_gap_policy(frame, self.settings.gaps or
                                             self.model.gap_policy or "auto")
            log.info("gap policy: %s", self.policy)
        apply_gap_policy(frame, self.policy, source=f"stored {self.key} candles")  # 'error'
        rows = _rows(frame)
        if self.next_ms is None:
            resume = self.settings.resume_after
            self.next_ms = rows[-1][0] if resume is None else self._next(_ms(resume))
        owed = self.next_ms
        self.features.reset()
        self._prev_ms = None
        for ms, o, h, lo, c, v, _ in [r for r in rows if r[0] < owed][-(self.features.warmup + 2):]:
            self.features.update(o, h, lo, c, v, gap_before=self._gap_before(ms))
            self._prev_ms = ms
        caught_up = [row for row in rows if row[0] >= owed]
        for row in caught_up:
            self._process(row, "rest", None)
        if caught_up:
            log.info("signalled %d candle(s) from REST: %s .. %s", len(caught_up),
                     _iso(caught_up[0][0]), _iso(caught_up[-1][0]))

    # ------------------------------------------------------------------ hot reload

    async def _watch_model(self) -> None:
        watcher = ModelWatcher(self.settings.locate)
        while True:
            await asyncio.sleep(self.settings.reload_every)
            path = watcher.poll()
            if path is not None:
                await self._try_reload(path, watcher)

    async def _try_reload(self, path: Path, watcher: ModelWatcher) -> None:
        try:
            new = await asyncio.to_thread(SignalModel.load, path)
            new.check_replaces(self.model)
            new.self_check(self._last_x)
        except SelfDistillError as exc:
            watcher.refused()
            self.metrics.add("model_refused")
            log.error("refused the new model in %s: %s; model %s keeps serving", path, exc,
                      self.model.model_id)
            return
        old, self.model = self.model, new  # between two candles: the loop runs one at a time
        watcher.accepted()
        self.metrics.add("model_reloads")
        self.metrics.model_id = new.model_id
        log.warning("model switched from %s to %s (%s); the next candle uses it",
                    old.model_id, new.model_id, path)


def _back(stamp: pd.Timestamp, bars: int, interval: str) -> pd.Timestamp:
    """The open time ``bars`` candles before ``stamp``."""
    step = interval_to_timedelta(interval)
    return stamp - (pd.DateOffset(months=bars) if step is None else bars * step)


def _ms(stamp: pd.Timestamp) -> int:
    return int(stamp.value // 1_000_000)


def _rows(frame: pd.DataFrame) -> list[Row]:
    """``(open_ms, open, high, low, close, volume, turnover)`` of every candle."""
    opens = (pd.DatetimeIndex(frame.index).asi8 // 1_000_000).tolist()
    cols = [frame[c].to_numpy(dtype=np.float64).tolist() for c in
            ("open", "high", "low", "close", "volume", "turnover")]
    return list(zip(opens, *cols, strict=True))


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()

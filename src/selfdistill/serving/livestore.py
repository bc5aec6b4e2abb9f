"""The live loop's candle store: REST backfill, streamed candles appended, REST verification.

Every method here blocks (HTTP, Parquet); the live loop runs them in a worker thread,
one at a time. What lands in the store:

- :meth:`LiveStore.backfill` fetches what the store lacks of ``[first, stop)`` through
  :meth:`CandleStore.update <selfdistill.data.store.CandleStore.update>`, exactly as
  ``selfdistill fetch`` does (windows of 1000, retries, atomic commits);
- :meth:`LiveStore.append` adds candles confirmed on the stream (stored rows win: they
  came from REST);
- :meth:`LiveStore.verify` asks REST for candles that came from the stream and, where
  the exchange's answer differs, stores REST's values (REST wins) and reports each
  difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd

from selfdistill.data.bybit.client import BybitClient
from selfdistill.data.bybit.request import MAX_LIMIT, MarketKey, Window, next_open
from selfdistill.data.store import CandleStore
from selfdistill.data.storefile import COLUMNS, empty_candles
from selfdistill.errors import DataError, SelfDistillError
from selfdistill.serving.livemetrics import LiveMetrics

__all__ = ["Conflict", "LiveStore", "Row", "StoreBusy", "StoreWriter", "candle_frame"]

log = logging.getLogger(__name__)

_VALUES = ("open", "high", "low", "close", "volume")

Row = tuple[int, float, float, float, float, float, float]  # open_ms, o, h, l, c, v, turnover


class StoreBusy(DataError):
    """The candle store's series is locked by another process; try again later."""


@dataclass(frozen=True)
class Conflict:
    """A candle whose stream values differ from REST's."""

    open_time: pd.Timestamp
    stream: tuple[float, ...]
    rest: tuple[float, ...]

    def describe(self) -> str:
        changed = [f"{n} {a:g} -> {b:g}" for n, a, b in zip(_VALUES, self.stream, self.rest,
                                                             strict=True) if a != b]
        return f"{self.open_time.isoformat()}: {', '.join(changed)}"


def candle_frame(rows: list[Row]) -> pd.DataFrame:
    """Candles from ``(open_ms, open, high, low, close, volume, turnover)`` tuples."""
    arr = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), len(COLUMNS))
    index = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows], unit="ms", utc=True),
                             name="open_time")
    return pd.DataFrame(arr, index=index, columns=list(COLUMNS))


class LiveStore:
    """One series of the candle store, kept complete for the live loop."""

    def __init__(self, store: CandleStore, client: BybitClient, key: MarketKey) -> None:
        self.store, self.client, self.key = store, client, key

    def backfill(self, first: pd.Timestamp, stop: pd.Timestamp) -> None:
        """Fetch what the store lacks of ``[first, stop)`` (the open candle is never stored).

        Raises:
            StoreBusy: another process (a ``selfdistill fetch``) holds the series' lock.
        """
        try:
            self.store.update(self.key, self.client, first, stop)
        except DataError as exc:
            if self.busy():
                raise StoreBusy(f"{exc}; the backfill will be tried again") from exc
            raise

    def busy(self) -> bool:
        """Another process holds the series' lock now (a fetch writing it)."""
        lock = self.store.path(self.key).with_suffix(".lock")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            return False
        try:
            with open(lock, "a+b") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False

    def append(self, candles: pd.DataFrame) -> None:
        """Add streamed closed candles (ascending, contiguous with the stored range)."""
        until = next_open(candles.index[-1], self.key.interval)
        self.store.merge(self.key, candles, until, replace=False)

    def read(self, start: pd.Timestamp) -> pd.DataFrame:
        """Stored candles from ``start`` on, validated and gap-marked (empty if none)."""
        held = self.store.manifest(self.key)
        if held is None or held.last is None or held.last < start:
            return empty_candles()
        return self.store.read(self.key, start)

    def verify(self, opens: list[pd.Timestamp]) -> list[Conflict]:
        """REST's values for the streamed candles ``opens`` (ascending); store where they differ.

        At most the newest :data:`MAX_LIMIT` candles are checked (one request).
        """
        if not opens:
            return []
        opens = opens[-MAX_LIMIT:]
        end = next_open(opens[-1], self.key.interval)
        slots = len(pd.date_range(opens[0], end, freq=self._freq(), inclusive="left"))
        window = Window(opens[0], end, min(MAX_LIMIT, max(1, slots)))
        rest = self.client.fetch_window(self.key, window).candles
        stored = self.read(opens[0])
        both = rest.index.intersection(stored.index).intersection(pd.DatetimeIndex(opens))
        a = stored.loc[both, list(_VALUES)].to_numpy()
        b = rest.loc[both, list(_VALUES)].to_numpy()
        differ = (a != b).any(axis=1)
        conflicts = [Conflict(t, tuple(x), tuple(y))
                     for t, x, y in zip(both[differ], a[differ], b[differ], strict=True)]
        if conflicts:
            fixed = rest.loc[both[differ], list(COLUMNS)]
            self.store.merge(self.key, fixed, end, replace=True)
        return conflicts

    def _freq(self) -> pd.Timedelta | pd.DateOffset:
        from selfdistill.data.intervals import interval_to_timedelta

        step = interval_to_timedelta(self.key.interval)
        return pd.DateOffset(months=1) if step is None else step


class StoreWriter:
    """The live loop's side of the store: one operation at a time, in a worker thread.

    Streamed candles wait in memory and are appended in the background at most once per
    ``commit_every`` seconds (or twice the last commit's duration, if longer); a failed
    append keeps them for the next try. :meth:`sync` commits them, backfills, verifies
    the streamed candles since the last sync over REST and reads the feature window.
    """

    def __init__(self, db: LiveStore, metrics: LiveMetrics, *, commit_every: float) -> None:
        self.db, self.metrics, self.commit_every = db, metrics, commit_every
        self.pending: list[Row] = []
        self.unverified: deque[int] = deque(maxlen=MAX_LIMIT)  # REST checks one window
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._next_commit = 0.0

    def add(self, row: Row) -> None:
        """A candle confirmed on the stream and signalled: store it soon."""
        self.pending.append(row)
        self.unverified.append(row[0])
        if (self._task is None or self._task.done()) and time.monotonic() >= self._next_commit:
            self._task = asyncio.create_task(self._commit_in_background())

    async def sync(self, first: pd.Timestamp, stop: pd.Timestamp,
                   read_from: pd.Timestamp) -> pd.DataFrame:
        """Commit, backfill ``[first, stop)``, verify, and read the stored candles from
        ``read_from`` on."""
        async with self._lock:
            await self._commit()
            await asyncio.to_thread(self.db.backfill, first, stop)
            await self._verify()
            return await asyncio.to_thread(self.db.read, read_from)

    async def close(self) -> None:
        """Commit what is pending (on shutdown)."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        async with self._lock:
            await self._commit()

    async def _commit_in_background(self) -> None:
        async with self._lock:
            await self._commit()

    async def _commit(self) -> None:
        """Append the streamed candles not yet stored (the caller holds the lock)."""
        batch, self.pending = self.pending, []
        if not batch:
            return
        began = time.monotonic()
        try:
            await asyncio.to_thread(self.db.append, candle_frame(batch))
        except SelfDistillError as exc:  # kept in memory; REST fills the store otherwise
            self.pending = batch + self.pending
            self.metrics.add("store_errors")
            log.warning("could not store %d streamed candles (%s); will retry", len(batch), exc)
        else:
            self.metrics.add("store_commits")
        spent = time.monotonic() - began
        self._next_commit = time.monotonic() + max(self.commit_every, 2 * spent)

    async def _verify(self) -> None:
        opens = [pd.Timestamp(ms, unit="ms", tz="UTC") for ms in self.unverified]
        self.unverified.clear()
        try:
            conflicts = await asyncio.to_thread(self.db.verify, opens)
        except BaseException:
            self.unverified.extendleft(int(t.value // 1_000_000) for t in reversed(opens))
            raise
        for conflict in conflicts:
            log.warning("conflict: REST corrects the streamed candle %s; REST wins (stored)",
                        conflict.describe())
        self.metrics.add("conflicts", len(conflicts))

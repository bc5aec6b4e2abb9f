"""The local candle store: one Parquet file per (category, symbol, interval).

Layout under the data directory (default: the per-user cache directory,
``$SELFDISTILL_DATA_DIR`` or ``--data-dir`` to change)::

    <data_dir>/<category>/<SYMBOL>/<interval>.parquet        candles + manifest (footer)
    <data_dir>/<category>/<SYMBOL>/<interval>.manifest.json  copy of the manifest, for people
    <data_dir>/<category>/<SYMBOL>/<interval>.lock           held while a fetch updates it

The manifest records the *covered* range ``[start, end)`` of candle open times
that were asked for and answered (the exchange may hold no candles in parts of
it: before a listing, during maintenance), the row count, gaps and the time of
the last update. It lives in the Parquet footer, so candles and manifest change
together in one atomic rename: a write goes to a temporary file in the same
folder, is fsynced, replaces the old file with ``os.replace`` and the folder is
fsynced. Killing a fetch at any moment leaves the previous complete dataset.

Updates extend the covered range in both directions and stay contiguous:
newer windows are appended oldest first, older windows are prepended newest
first, and results are committed in that order every few windows. Asking for a
covered range again sends no request and leaves the file untouched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import pandas as pd

from selfdistill.data.bybit.client import BybitClient, WindowResult
from selfdistill.data.bybit.request import (
    CATEGORIES,
    MarketKey,
    ceil_open,
    plan_windows,
    resolve_range,
)
from selfdistill.data.candles import gap_table, validate_candles
from selfdistill.data.files import save_candles
from selfdistill.data.intervals import INTERVALS
from selfdistill.data.storefile import (
    COLUMNS,
    Manifest,
    empty_candles,
    read_frame,
    read_manifest,
    write_dataset,
)
from selfdistill.errors import ConfigError, DataError, SelfDistillError

if TYPE_CHECKING:
    from selfdistill.config import BybitSourceConfig

__all__ = ["CandleStore", "Manifest", "default_data_dir", "fetch_command", "load_or_fetch"]

logger = logging.getLogger(__name__)

#: ``progress(received, done, total)``: candles received so far, and candle slots of the
#: range answered so far out of all to fetch (the exchange may hold fewer candles than
#: slots: before a listing, during maintenance).
Progress = Callable[[int, int, int], None]


def default_data_dir() -> Path:
    """``$SELFDISTILL_DATA_DIR``, else ``<user cache dir>/selfdistill/candles``."""
    env = os.environ.get("SELFDISTILL_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("selfdistill")) / "candles"


class CandleStore:
    """Candles on disk, read and extended safely.

    Args:
        data_dir: root folder (default :func:`default_data_dir`).
        commit_every: windows fetched between commits (a commit rewrites the file,
            so big datasets commit less often: never more than one commit per
            twice the duration of the last).
    """

    def __init__(self, data_dir: str | Path | None = None, *, commit_every: int = 10) -> None:
        self.root = Path(data_dir).expanduser() if data_dir else default_data_dir()
        self.commit_every = max(1, int(commit_every))

    def path(self, key: MarketKey) -> Path:
        """The dataset file of ``key`` (its parts were validated by MarketKey)."""
        return self.root / key.category / key.symbol / f"{key.interval}.parquet"

    # ------------------------------------------------------------------ reading

    def manifest(self, key: MarketKey) -> Manifest | None:
        """The manifest of ``key``, or None when nothing is stored."""
        return read_manifest(self.path(key))

    def datasets(self) -> list[Manifest]:
        """Every dataset under the data directory, sorted by category, symbol, interval."""
        found = []
        for category in CATEGORIES:
            for file in sorted((self.root / category).glob("*/*.parquet")):
                if file.stem not in INTERVALS:
                    continue
                try:
                    manifest = self.manifest(MarketKey(category, file.parent.name, file.stem))
                except (ConfigError, DataError) as exc:
                    logger.warning("skipping %s: %s", file, exc)
                    continue
                if manifest is not None:
                    found.append(manifest)
        order = {name: i for i, name in enumerate(INTERVALS)}
        return sorted(found, key=lambda m: (m.key.category, m.key.symbol, order[m.key.interval]))

    def read(self, key: MarketKey, start: pd.Timestamp | None = None,
             end: pd.Timestamp | None = None, *, gaps: str = "mark") -> pd.DataFrame:
        """Validated candles with open time in ``[start, end)`` (None: unbounded).

        Gaps are marked (``gap_before``, ``attrs["gaps"]``) or raise under
        ``gaps="error"``; they are never filled.

        Raises:
            DataError: nothing stored, or no candle in the range.
            GapError: candles are missing and ``gaps="error"``.
        """
        frame = self._load(key)
        lo = frame.index[0] if start is None or frame.empty else start
        hi = frame.index[-1] + pd.Timedelta(1) if end is None or frame.empty else end
        frame = frame[(frame.index >= lo) & (frame.index < hi)]
        if frame.empty:
            raise DataError(f"the store holds no {key} candles in [{start}, {end}) "
                            f"({self.path(key)}); the exchange may list none there")
        policy = cast(Literal["error", "mark"], gaps)  # validate_candles checks the value
        return validate_candles(frame, interval=key.interval, gaps=policy,
                                source=f"{key} ({self.path(key)})")

    def gap_report(self, key: MarketKey) -> pd.DataFrame:
        """Gaps in the stored candles: columns start, end, missing (see ``find_gaps``)."""
        return gap_table(self.read(key))

    def _load(self, key: MarketKey) -> pd.DataFrame:
        if self.manifest(key) is None:
            raise DataError(f"nothing stored for {key} under {self.root}; fetch it first with "
                            f"`selfdistill fetch --symbol {key.symbol} --interval {key.interval}"
                            f" --category {key.category} --start ...`")
        return read_frame(self.path(key))

    # ------------------------------------------------------------------ updating

    def missing(self, key: MarketKey, first: pd.Timestamp,
                stop: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp, bool]]:
        """Ranges to fetch so the covered range includes ``[first, stop)`` contiguously.

        Returns:
            ``(range_first, range_stop, newest_first)`` tuples: older candles are
            fetched newest first (prepended), newer ones oldest first (appended).
        """
        if first >= stop:
            return []
        held = self.manifest(key)
        if held is None:
            return [(first, stop, False)]
        todo = []
        if first < held.start:
            todo.append((first, held.start, True))
        if stop > held.end:
            todo.append((held.end, stop, False))
        return todo

    def update(self, key: MarketKey, client: BybitClient, first: pd.Timestamp,
               stop: pd.Timestamp, *, progress: Progress | None = None) -> Manifest | None:
        """Fetch what the store lacks of ``[first, stop)`` and commit it as it arrives.

        Args:
            key: the series.
            client: the exchange client.
            first, stop: aligned open-time bounds
                (see :func:`~selfdistill.data.bybit.request.resolve_range`).
            progress: called with (candles received, candle slots done, candle slots
                to fetch); see :data:`Progress`.

        Returns:
            The manifest afterwards (None if nothing is stored and nothing was fetched).

        Raises:
            ExchangeError, DataError: the fetch failed; every window before the failed
                one is committed first.
        """
        first, stop = ceil_open(first, key.interval), ceil_open(stop, key.interval)
        with self._locked(key):
            todo = self.missing(key, first, stop)
            plans = [plan_windows(a, b, key.interval, newest_first=back) for a, b, back in todo]
            total = sum(w.count for plan in plans for w in plan)
            session = _Session(self, key, total, progress)
            for (a, _, back), windows in zip(todo, plans, strict=True):
                session.run(client.fetch_windows(key, windows), start=a, backwards=back)
            return self.manifest(key)

    def write(self, key: MarketKey, candles: pd.DataFrame, start: pd.Timestamp,
              end: pd.Timestamp) -> Manifest:
        """Atomically replace the dataset with ``candles`` covering ``[start, end)``.

        Args:
            candles: ascending, unique candles (validated here); may be empty.
        """
        data = candles.loc[:, [c for c in COLUMNS if c in candles.columns]]
        gaps = pd.DataFrame({"missing": []})
        if len(data):
            checked = validate_candles(data, interval=key.interval, source=str(key))
            gaps = gap_table(checked)
            data = checked.drop(columns=["gap_before"])
        manifest = Manifest(key, start, end, len(data),
                            data.index[0] if len(data) else None,
                            data.index[-1] if len(data) else None,
                            len(gaps), int(gaps["missing"].sum()), pd.Timestamp.now(tz="UTC"))
        write_dataset(self.path(key), data, manifest)
        return manifest

    def merge(self, key: MarketKey, candles: pd.DataFrame, covered_until: pd.Timestamp, *,
              replace: bool) -> Manifest:
        """Add closed ``candles`` and extend the covered range to ``covered_until``, atomically.

        For candles that arrive one by one (``selfdistill live``). With ``replace`` they
        win over stored candles of the same open time (REST correcting the stream), else
        the stored ones win. The covered range must stay contiguous.

        Raises:
            DataError: ``candles`` start after the covered end (a hole), or another
                process holds the dataset's lock.
        """
        with self._locked(key):
            held = self.manifest(key)
            if held is not None and len(candles) and candles.index[0] > held.end:
                raise DataError(f"{key}: candles from {candles.index[0]} would leave a hole "
                                f"after the stored range, which ends at {held.end}")
            stored = self._load(key) if held is not None else empty_candles()
            parts = [f for f in ((candles, stored) if replace else (stored, candles)) if len(f)]
            merged = pd.concat(parts).sort_index(kind="stable") if parts else empty_candles()
            merged = merged[~merged.index.duplicated(keep="first")]
            start = candles.index[0] if len(candles) else covered_until
            if held is not None:
                start, covered_until = min(held.start, start), max(held.end, covered_until)
            return self.write(key, merged, start, covered_until)

    def export(self, key: MarketKey, out: str | Path, start: pd.Timestamp | None = None,
               end: pd.Timestamp | None = None) -> int:
        """Write stored candles to CSV or Parquet (chosen by ``out``'s extension); rows written."""
        frame = self.read(key, start, end)
        save_candles(frame, out)
        return len(frame)

    @contextlib.contextmanager
    def _locked(self, key: MarketKey) -> Iterator[None]:
        """Hold ``<interval>.lock`` so two fetches never write one dataset at once."""
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path.with_suffix(".lock"), "a+b")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise DataError(f"cannot write the candle store at {path.parent} ({exc}); "
                            "choose another --data-dir / data.bybit.data_dir") from exc
        with handle:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows: no advisory lock
                fcntl = None  # type: ignore[assignment]
            if fcntl is not None:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise DataError(f"another fetch is updating {key} in {path.parent}; "
                                    "wait for it to finish") from None
            for stale in path.parent.glob(f".{key.interval}.*.tmp"):
                stale.unlink(missing_ok=True)  # left by a killed writer
            yield


class _Session:
    """One update: accumulates windows in order and commits them in small batches."""

    def __init__(self, store: CandleStore, key: MarketKey, total: int,
                 progress: Progress | None) -> None:
        self.store, self.key, self.total, self.progress = store, key, total, progress
        self.done = self.received = 0
        if progress is not None:
            progress(0, 0, total)
        self.pending: list[pd.DataFrame] = []
        self.since_commit = 0
        self.next_commit_at = 0.0

    def run(self, results: Iterator[WindowResult], *, start: pd.Timestamp,
            backwards: bool) -> None:
        held = self.store.manifest(self.key)
        self.frame = self.store._load(self.key) if held else None
        self.lo, self.hi = (held.start, held.end) if held else (start, start)
        try:
            for result in results:
                self.pending.append(result.candles)
                if backwards:
                    self.lo = result.window.first
                else:
                    self.hi = result.covered_until
                self._advance(result.window.count, len(result.candles))
                if not backwards and result.covered_until < result.window.end:
                    break  # reached the exchange's still-open candle
        finally:
            if self.pending:
                self._commit()

    def _advance(self, count: int, received: int) -> None:
        self.done += count
        self.received += received
        self.since_commit += 1
        if self.progress is not None:
            self.progress(self.received, self.done, self.total)
        if self.since_commit >= self.store.commit_every and time.monotonic() >= self.next_commit_at:
            self._commit()

    def _commit(self) -> None:
        began = time.monotonic()
        parts = [f for f in (self.frame, *self.pending) if f is not None and len(f)]
        merged = pd.concat(parts).sort_index() if parts else empty_candles()
        merged = merged[~merged.index.duplicated(keep="first")]
        manifest = self.store.write(self.key, merged, self.lo, self.hi)
        self.frame, self.pending, self.since_commit = merged, [], 0
        spent = time.monotonic() - began
        self.next_commit_at = time.monotonic() + 2.0 * spent  # commits cost <= 1/3 of the time
        logger.info("committed %s (%.2f s)", manifest.describe(), spent)


def fetch_command(key: MarketKey, start: pd.Timestamp, end: pd.Timestamp | None,
                  data_dir: str | Path | None = None, base_url: str | None = None) -> str:
    """The ``selfdistill fetch`` command line that would fetch ``[start, end)``."""
    parts = ["selfdistill fetch", f"--symbol {key.symbol}", f"--interval {key.interval}",
             f"--category {key.category}", f"--start {start:%Y-%m-%dT%H:%M}"]
    parts += [f"--end {end:%Y-%m-%dT%H:%M}"] if end is not None else []
    parts += [f"--data-dir {data_dir}"] if data_dir else []
    parts += [f"--base-url {base_url}"] if base_url else []
    return " ".join(parts)


def load_or_fetch(cfg: BybitSourceConfig, *, gaps: str = "mark",
                  progress: Progress | None = None) -> pd.DataFrame:
    """Validated candles for ``[cfg.start, cfg.end or now)``, fetching what the store lacks.

    With ``cfg.offline`` nothing is fetched: the store must cover the range
    (with ``cfg.end`` unset, from ``cfg.start`` to the end of what is stored).

    Raises:
        ConfigError: a bad symbol, interval, category or date.
        DataError: offline and the store lacks part of the range (the message
            gives the ``selfdistill fetch`` command that gets it), or no candles.
        ExchangeError: the fetch failed (what was fetched before is kept).
    """
    key = MarketKey(cfg.category, cfg.symbol, cfg.interval)
    first, stop = resolve_range(cfg.start, cfg.end, key.interval)
    store = CandleStore(cfg.data_dir)
    if cfg.offline:
        held = store.manifest(key)
        if cfg.end is None and held is not None and held.start <= first < held.end:
            stop = held.end
        lacking = store.missing(key, first, stop)
        if lacking:
            ranges = ", ".join(f"[{a:%Y-%m-%d %H:%M}, {b:%Y-%m-%d %H:%M})" for a, b, _ in lacking)
            raise DataError(
                f"data.bybit.offline is true and the store {store.root} lacks {key} candles "
                f"in {ranges} UTC; fetch them with: "
                f"{fetch_command(key, first, stop, cfg.data_dir, cfg.base_url)}")
    else:
        with BybitClient(cfg.base_url) as client:
            try:
                store.update(key, client, first, stop, progress=progress)
            except SelfDistillError:
                logger.error("fetching %s failed; what was fetched before is kept in %s",
                             key, store.path(key))
                raise
    return store.read(key, first, stop, gaps=gaps)

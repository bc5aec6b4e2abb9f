"""The file behind one stored dataset: Parquet candles with their manifest in the footer.

Candles and manifest change together in one atomic rename: a write goes to a
temporary file in the same folder (``.<interval>.<random>.tmp``), is fsynced,
replaces the old file, and the folder is fsynced (:func:`selfdistill.atomic.atomic_write`,
the helper every writer uses). A reader
therefore sees the old file or the new one, never half of either, whatever
moment the writer is killed at. A JSON copy of the manifest sits next to the
Parquet file for people and other tools; the footer is authoritative.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from selfdistill.atomic import atomic_write
from selfdistill.data.bybit.request import MarketKey
from selfdistill.errors import ConfigError, DataError

__all__ = ["COLUMNS", "Manifest", "atomic_write", "empty_candles", "read_frame",
           "read_manifest", "write_dataset"]

#: Columns stored, all float64, indexed by UTC ``open_time``.
COLUMNS = ("open", "high", "low", "close", "volume", "turnover")
_META_KEY = b"selfdistill.store"
_FORMAT = 1


@dataclass(frozen=True)
class Manifest:
    """What a dataset holds.

    Attributes:
        key: the series.
        start, end: covered open-time range ``[start, end)`` (UTC).
        rows: candles stored.
        first, last: open times of the first and last stored candle (None if no rows).
        gaps, missing: gaps inside the stored candles and the candles they lack.
        updated: when the dataset was last written (UTC).
    """

    key: MarketKey
    start: pd.Timestamp
    end: pd.Timestamp
    rows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    gaps: int
    missing: int
    updated: pd.Timestamp

    def to_dict(self) -> dict[str, Any]:
        def iso(t: pd.Timestamp | None) -> str | None:
            return None if t is None else t.isoformat()

        return {"format": _FORMAT, "category": self.key.category, "symbol": self.key.symbol,
                "interval": self.key.interval, "start": iso(self.start), "end": iso(self.end),
                "rows": self.rows, "first": iso(self.first), "last": iso(self.last),
                "gaps": self.gaps, "missing": self.missing, "updated": iso(self.updated)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        """Inverse of :meth:`to_dict` (raises KeyError / ValueError when malformed)."""

        def ts(text: str) -> pd.Timestamp:
            return pd.Timestamp(text).tz_convert("UTC")

        def maybe(text: str | None) -> pd.Timestamp | None:
            return None if text is None else ts(text)

        key = MarketKey(raw["category"], raw["symbol"], raw["interval"])
        return cls(key, ts(raw["start"]), ts(raw["end"]), int(raw["rows"]),
                   maybe(raw["first"]), maybe(raw["last"]), int(raw["gaps"]),
                   int(raw["missing"]), ts(raw["updated"]))

    def describe(self) -> str:
        """One line: '<key>: <start> .. <end> UTC, <rows> candles, <gaps> gaps (<missing>
        missing), last candle <time> UTC'."""
        span = f"{self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M} UTC"
        last = f", last candle {self.last:%Y-%m-%d %H:%M} UTC" if self.last is not None else ""
        return (f"{self.key}: {span}, {self.rows:,} candles, {self.gaps} gaps"
                f" ({self.missing:,} missing){last}")


def read_manifest(path: Path) -> Manifest | None:
    """The manifest in the footer of ``path``, or None when the file does not exist.

    Raises:
        DataError: the file is not a dataset written by the store.
    """
    if not path.is_file():
        return None
    try:
        meta = pq.read_schema(path).metadata or {}
        return Manifest.from_dict(json.loads(meta[_META_KEY]))
    except (OSError, pa.ArrowException, KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise DataError(f"{path}: its manifest names an invalid series ({exc})") from exc
        raise DataError(f"{path}: not a readable candle-store file ({type(exc).__name__}: "
                        f"{exc}); delete it and fetch again") from exc


def read_frame(path: Path) -> pd.DataFrame:
    """The candles in ``path`` (as written; not validated again)."""
    frame = pq.read_table(path).to_pandas()
    frame.attrs = {}
    return frame


def write_dataset(path: Path, data: pd.DataFrame, manifest: Manifest) -> None:
    """Atomically replace ``path`` with ``data`` and ``manifest``, then refresh the JSON copy."""
    data = data.copy(deep=False)
    data.attrs = {}
    table = pa.Table.from_pandas(data, preserve_index=True)
    text = json.dumps(manifest.to_dict())
    meta = {**(table.schema.metadata or {}), _META_KEY: text.encode()}
    atomic_write(path, lambda tmp: pq.write_table(table.replace_schema_metadata(meta), tmp))
    atomic_write(path.with_suffix(".manifest.json"), lambda tmp: tmp.write_text(
        json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8"))


def empty_candles() -> pd.DataFrame:
    index = pd.DatetimeIndex([], tz="UTC", name="open_time")
    return pd.DataFrame({c: pd.Series([], dtype="float64") for c in COLUMNS}, index=index)

"""Finished cells of an unfinished run, kept so that a killed run resumes where it stopped.

While a run is marked ``INCOMPLETE``, every finished fold x seed cell is written to
``RUN_DIR/cells/fold-<k>-seed-<s>/``: ``records.json``, ``uncertainty.json``,
``timings.json`` (with the cell's seconds), ``predictions.parquet``, ``curves.parquet``
(absent without a backtest), and last a ``DONE`` marker, so a cell cut off mid-write
counts as not finished. A cell running on this machine writes its two Parquet files
itself, piece by piece, while it scores (:func:`cell_folder`,
:class:`~selfdistill.rundir.frames.FrameWriter`); a cell computed elsewhere brings its
rows along and :func:`save_cell` writes them. The run's predictions.parquet and
backtest.parquet are the cells' files concatenated (:func:`cell_files`).

``cells/config.json`` holds the config the cells were computed with; :func:`load_cells`
refuses cells of another config. Once the run directory is complete the cells are
removed (:func:`clear_cells`): predictions.parquet and the other files hold the same rows.

JSON keeps every value exactly (floats round-trip, NaN written as ``NaN``), and Parquet
keeps the column types, so a resumed run writes the same metrics.json, byte for byte, as
one that was never stopped. Nothing here is pickled: reading the cache runs no code.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from selfdistill.atomic import atomic_write, atomic_write_bytes
from selfdistill.errors import ConfigError
from selfdistill.rundir.layout import CELLS_DIR, damaged

__all__ = ["CURVES_PART", "PREDICTIONS_PART", "CellParts", "cached_cells", "cell_files",
           "cell_folder", "clear_cells", "load_cells", "read_cell_frame", "save_cell",
           "start_cache"]

log = logging.getLogger(__name__)

_CONFIG = "config.json"
_DONE = "DONE"


#: A cell's prediction rows and backtest rows, in its folder.
PREDICTIONS_PART, CURVES_PART = "predictions.parquet", "curves.parquet"


@dataclass
class CellParts:
    """One finished cell: its records, and its rows in memory or (None) in its folder."""

    fold: int
    seed: int
    records: list[dict[str, Any]]
    uncertainty: list[dict[str, Any]]
    timings: dict[str, Any]
    seconds: float
    predictions: pd.DataFrame | None = None
    curves: pd.DataFrame | None = None


def cell_folder(run_dir: Path, fold: int, seed: int) -> Path:
    """Where cell (fold, seed) of ``run_dir`` keeps its files."""
    return run_dir / CELLS_DIR / f"fold-{fold}-seed-{seed}"


def cell_files(run_dir: Path, cells: Sequence[tuple[int, int]], part: str) -> list[Path]:
    """The ``part`` file (``PREDICTIONS_PART`` / ``CURVES_PART``) of each cell that has one."""
    paths = [cell_folder(run_dir, fold, seed) / part for fold, seed in cells]
    return [p for p in paths if p.is_file()]


def read_cell_frame(run_dir: Path, fold: int, seed: int, part: str,
                    filters: list[tuple[str, str, Any]] | None = None) -> pd.DataFrame | None:
    """One cell's ``part`` rows (only those matching ``filters``); None if it has none."""
    path = cell_folder(run_dir, fold, seed) / part
    return _read_frame(path, filters) if path.is_file() else None


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, allow_nan=True).encode()


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config mappings."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out


def start_cache(run_dir: Path, config: dict[str, Any]) -> None:
    """Record the config the cells are computed with; refuse a cache of another config."""
    folder = run_dir / CELLS_DIR
    path = folder / _CONFIG
    if path.is_file():
        kept = _read_json(path)
        differ = _differences(kept, json.loads(_json_bytes(config)))
        if differ:
            raise ConfigError(
                f"'{run_dir}' holds cells of another config (differs in {', '.join(differ[:5])}"
                f"); resume with the config it was started with, or choose another --out")
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, _json_bytes(config))


def save_cell(run_dir: Path, parts: CellParts) -> None:
    """Write one finished cell (its ``DONE`` marker last)."""
    folder = cell_folder(run_dir, parts.fold, parts.seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _DONE).unlink(missing_ok=True)
    atomic_write_bytes(folder / "records.json", _json_bytes(parts.records))
    atomic_write_bytes(folder / "uncertainty.json", _json_bytes(parts.uncertainty))
    atomic_write_bytes(folder / "timings.json",
                       _json_bytes({"timings": parts.timings, "seconds": parts.seconds}))
    _write_frame(folder / PREDICTIONS_PART, parts.predictions)
    _write_frame(folder / CURVES_PART, parts.curves)
    atomic_write_bytes(folder / _DONE, b"")


def _write_frame(path: Path, frame: pd.DataFrame | None) -> None:
    if frame is not None and len(frame.columns):  # None: the cell wrote it itself
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(path, exc) from exc


def _read_frame(path: Path, filters: list[tuple[str, str, Any]] | None = None
                ) -> pd.DataFrame:
    try:
        return pd.read_parquet(path, filters=filters)
    except (OSError, ValueError) as exc:
        raise damaged(path, exc) from exc


def _load_one(folder: Path) -> CellParts:
    """A finished cell's records; its rows stay in its folder."""
    _, fold, _, seed = folder.name.split("-")
    times = _read_json(folder / "timings.json")
    return CellParts(int(fold), int(seed), _read_json(folder / "records.json"),
                     _read_json(folder / "uncertainty.json"), times["timings"],
                     float(times["seconds"]))


def load_cells(run_dir: Path) -> dict[tuple[int, int], CellParts]:
    """(fold, seed) -> every finished cell kept in ``run_dir`` (cells without DONE skipped)."""
    folder = run_dir / CELLS_DIR
    if not folder.is_dir():
        return {}
    out = {}
    for cell in sorted(folder.glob("fold-*-seed-*")):
        if (cell / _DONE).is_file():
            parts = _load_one(cell)
            out[(parts.fold, parts.seed)] = parts
    return out


def cached_cells(run_dir: Path) -> int:
    """How many finished cells ``run_dir`` keeps."""
    folder = run_dir / CELLS_DIR
    return len(list(folder.glob(f"fold-*-seed-*/{_DONE}"))) if folder.is_dir() else 0


def clear_cells(run_dir: Path) -> None:
    """Remove the cell cache of a complete run (its files hold the same rows)."""
    shutil.rmtree(run_dir / CELLS_DIR, ignore_errors=True)

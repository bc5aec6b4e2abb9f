"""Resuming a killed run: which cells are finished, and keeping each new one.

Every finished cell is kept in the run directory while it is ``INCOMPLETE``
(:mod:`selfdistill.rundir.cellcache`). ``selfdistill run ... --out DIR --resume`` (or
``run_experiment(..., resume=True)``) reads them back and runs only the others; the
results are the same as an uninterrupted run's, since a cell depends only on the
dataset, the config and its seed. The cells are tied to the config they were computed
with, less the keys that cannot change a cell (where and how widely it runs, tracking,
the report, the run's name); another config is refused by name.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfdistill.config import RunConfig
from selfdistill.errors import ConfigError
from selfdistill.evaluation.cell import Cell, CellResult
from selfdistill.evaluation.evidence import CellEvidence
from selfdistill.rundir.cellcache import (
    CURVES_PART,
    PREDICTIONS_PART,
    CellParts,
    clear_cells,
    load_cells,
    read_cell_frame,
    save_cell,
    start_cache,
)
from selfdistill.rundir.layout import INCOMPLETE_FILE, METRICS_FILE

__all__ = ["cell_config", "keep_cell", "resume_overwrite", "resumed_cells"]

log = logging.getLogger(__name__)

#: Config keys that never change what a cell computes.
_NOT_IN_CELLS = {"name": None, "report": None, "tracking": None, "tune": None,
                 "evaluation": ("workers", "backend", "ray_address", "adjust",
                                "primary_metric")}


def cell_config(cfg: RunConfig) -> dict[str, Any]:
    """The part of the config a cell's results depend on, as JSON-ready data."""
    raw = cfg.model_dump(mode="json")
    for key, fields in _NOT_IN_CELLS.items():
        if fields is None:
            raw.pop(key, None)
        else:
            for name in fields:
                raw[key].pop(name, None)
    return raw


def resume_overwrite(out_dir: str | Path | None, resume: bool) -> bool:
    """Whether ``out_dir`` is an unfinished run to continue in (checked; False: start anew)."""
    if not resume:
        return False
    if out_dir is None:
        raise ConfigError("--resume needs --out DIR: the run directory of the run to resume")
    path = Path(out_dir)
    if not path.exists():
        return False
    if (path / INCOMPLETE_FILE).is_file():
        return True
    if (path / METRICS_FILE).is_file():
        raise ConfigError(f"'{path}' is a finished run: nothing to resume (choose another "
                          "--out to run again)")
    return False  # not a run directory: the usual checks on --out apply


def resumed_cells(run_dir: Path, cfg: RunConfig, cells: Sequence[Cell], *, resume: bool,
                  class_names: Sequence[str]) -> tuple[list[CellResult], list[Cell]]:
    """(finished results kept in ``run_dir``, cells still to run); starts the cell cache.

    A kept cell's evidence is read back from its prediction and backtest rows by the
    same functions that collected it while it ran, so the verdicts are the same.
    """
    if not resume:
        clear_cells(run_dir)  # cells of an earlier run in an --overwrite directory
    start_cache(run_dir, cell_config(cfg))  # refuses cells of another config
    kept = load_cells(run_dir) if resume else {}
    done = [_result(run_dir, kept[(c.fold, c.seed)], class_names) for c in cells
            if (c.fold, c.seed) in kept]
    todo = [c for c in cells if (c.fold, c.seed) not in kept]
    if done:
        log.info("resuming %s: %d of %d cells already finished", run_dir, len(done),
                 len(cells))
    return done, todo


def _result(run_dir: Path, parts: CellParts, class_names: Sequence[str]) -> CellResult:
    test = read_cell_frame(run_dir, parts.fold, parts.seed, PREDICTIONS_PART,
                           filters=[("split", "==", "test")])
    curves = read_cell_frame(run_dir, parts.fold, parts.seed, CURVES_PART)
    evidence = CellEvidence(parts.fold, parts.seed).add_frames(test, curves, class_names)
    return CellResult(**{f.name: getattr(parts, f.name) for f in dataclasses.fields(parts)},
                      evidence=evidence)


def keep_cell(run_dir: Path, result: CellResult) -> None:
    """Write a finished cell into the cache, so a killed run does not redo it."""
    save_cell(run_dir, result)

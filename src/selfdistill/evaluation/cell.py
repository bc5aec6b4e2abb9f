"""One fold x seed cell: fit every method, then score it (temperature, backtest).

:func:`run_cell` builds the cell's scaled inputs (scaler fitted on its training rows
only, :func:`selfdistill.evaluation.fold.make_train_data`), fits every configured method
(:func:`fit_methods`), then scores them (:func:`selfdistill.evaluation.scoring.score_lineages`:
records per split, a temperature fitted on validation, a backtest of the test rows, the
per-bar evidence of the verdicts). Test rows are read only by the scoring, after every
method has finished fitting. In the cell that keeps its models it saves them into the
run directory (:func:`selfdistill.rundir.write.save_lineage_models`).

The cell's prediction and backtest rows are written piece by piece into ``parts`` (its
folder of the cell cache) when given, or kept in the result (a Ray worker's cell,
which travels back to the driver).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from selfdistill.config import RunConfig
from selfdistill.evaluation.backtest import annualisation
from selfdistill.evaluation.evidence import CellEvidence
from selfdistill.evaluation.fold import Dataset, make_train_data, member_name
from selfdistill.evaluation.scoring import (
    GATE_MEASURE,
    GATED,
    BacktestSettings,
    CellScores,
    score_lineages,
)
from selfdistill.features import Scaler
from selfdistill.methods import Lineage, TrainData, get_method
from selfdistill.rundir.cellcache import CURVES_PART, PREDICTIONS_PART, CellParts
from selfdistill.rundir.frames import FrameWriter
from selfdistill.rundir.write import model_metadata, save_lineage_models
from selfdistill.splits import Split
from selfdistill.training.callbacks import Callback
from selfdistill.training.device import resolve_device

__all__ = ["GATED", "GATE_MEASURE", "BacktestSettings", "Cell", "CellResult", "CellScores",
           "FoldResult", "backtest_settings", "fit_methods", "run_cell", "run_fold"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One unit of work: every method on one split with one seed."""

    fold: int
    seed: int
    split: Split
    save_models: bool = False


@dataclass
class CellResult(CellParts):
    """One finished cell: what the cell cache keeps, and its per-bar evidence."""

    evidence: CellEvidence | None = None


def fit_methods(data: TrainData, cfg: RunConfig, *, seed: int,
                callbacks: Sequence[Callback] = ()) -> tuple[list[Lineage], dict[str, Any]]:
    """Every configured method fitted on ``data`` (train / val rows), with its timings."""
    lineages, timings = [], {}
    for name in cfg.methods:
        t0 = time.perf_counter()
        lineage = get_method(name)(data, cfg, seed=seed, callbacks=callbacks)
        timings[name] = {"seconds": time.perf_counter() - t0,
                         "epochs": sum(m.info.get("epochs", 0) for m in lineage.members),
                         **{k: v for k, v in lineage.info.items()
                            if isinstance(v, int | float | str)}}
        lineages.append(lineage)
    return lineages, timings


@dataclass
class FoldResult:
    """One split fitted and scored with one seed: everything :func:`run_cell` keeps, and
    the fitted methods and scaler (rows in ``predictions`` / ``curves`` unless written)."""

    scores: CellScores
    lineages: list[Lineage]
    scaler: Scaler
    timings: dict[str, Any]
    predictions: pd.DataFrame | None = None
    curves: pd.DataFrame | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.scores.records

    @property
    def uncertainty(self) -> list[dict[str, Any]]:
        return self.scores.uncertainty


def run_fold(ds: Dataset, split: Split, cfg: RunConfig, *, seed: int, fold: int = 0,
             settings: BacktestSettings | None = None, callbacks: Sequence[Callback] = (),
             parts: Path | None = None) -> FoldResult:
    """Fit every configured method on one split with one seed, then score it.

    Args:
        ds / split / cfg: the dataset, the split and the run config.
        seed / fold: the cell.
        settings: calibration and backtest settings (default: the config's).
        callbacks: training events.
        parts: the folder the prediction / backtest rows are written to, piece by
            piece; None keeps them in the result.
    """
    settings = settings or backtest_settings(cfg, ds.interval)
    device = resolve_device(cfg.device)
    data, x, scaler = make_train_data(ds, split, cfg, device, seed=seed)
    lineages, timings = fit_methods(data, cfg, seed=seed, callbacks=callbacks)
    inputs = [x]  # handed over: scoring lets the inputs go once every split is predicted
    del data, x
    with FrameWriter(None if parts is None else parts / PREDICTIONS_PART) as predictions, \
            FrameWriter(None if parts is None else parts / CURVES_PART) as curves:
        scores = score_lineages(ds, split, lineages, inputs, settings=settings, seed=seed,
                                fold=fold, predictions=predictions, curves=curves)
    return FoldResult(scores, lineages, scaler, timings, predictions.frame(), curves.frame())


def run_cell(ds: Dataset, cell: Cell, cfg: RunConfig, *, settings: BacktestSettings,
             run_dir: Path | None = None, callbacks: Sequence[Callback] = (),
             parts: Path | None = None) -> CellResult:
    """Fit, evaluate, calibrate and backtest every method on one cell.

    Args:
        ds / cell / cfg: the dataset, the cell (split, seed) and the run config.
        settings: calibration and backtest settings.
        run_dir: where the cell that keeps its models saves them.
        callbacks: training events (in-process runs).
        parts: the folder its prediction / backtest rows are written to, piece by
            piece; None keeps them in the result.
    """
    t0 = time.perf_counter()
    result = run_fold(ds, cell.split, cfg, seed=cell.seed, fold=cell.fold, settings=settings,
                      callbacks=callbacks, parts=parts)
    if cell.save_models and run_dir is not None:
        _save_models(run_dir, ds, cfg, result.lineages, result.scaler,
                     result.scores.temperatures)
    return CellResult(cell.fold, cell.seed, result.records, result.uncertainty,
                      result.timings, time.perf_counter() - t0,
                      predictions=result.predictions, curves=result.curves,
                      evidence=result.scores.evidence)


def backtest_settings(cfg: RunConfig, interval: str | None) -> BacktestSettings:
    """The config's calibration and backtest settings, annualised for ``interval``."""
    bt = cfg.backtest
    ppy = annualisation(interval, bt.periods_per_year) if bt.enabled else 1.0
    return BacktestSettings(enabled=bt.enabled, fee_bps=bt.fee_bps,
                            slippage_bps=bt.slippage_bps, allow_short=bt.allow_short,
                            sizing=bt.sizing, uncertainty_gate=bt.uncertainty_gate,
                            periods_per_year=ppy, calibrate=cfg.evaluation.calibrate)


def _save_models(run_dir: Path, ds: Dataset, cfg: RunConfig, lineages: Sequence[Lineage],
                 scaler: Scaler, temperatures: dict[tuple[str, str], float]) -> None:
    """Every lineage as a model directory; its selected member's calibration goes along."""
    common = model_metadata(cfg, scaler=scaler.to_dict(),
                            feature_names=list(ds.feature_names),
                            class_names=list(ds.labels.class_names), interval=ds.interval,
                            gaps=ds.candles.attrs.get("gap_policy"),
                            time_format=ds.candles.attrs.get("time_format"))
    for lineage in lineages:
        chosen = member_name(lineage.members[lineage.selected].keys)
        save_lineage_models(run_dir, lineage, common,
                            temperature=temperatures.get((lineage.method, chosen), 1.0))

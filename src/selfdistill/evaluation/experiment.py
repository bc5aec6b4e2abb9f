"""Experiments: folds x seeds x methods, in parallel, summarised with honest statistics.

::

    candles -> dataset (once)
      -> folds (holdout | walk_forward | purged_kfold) x seeds = cells
      -> per cell, in a worker: run_fold (every method from scratch, scaler fitted
         on the cell's train rows) -> score_cell (temperature on val, backtest on test)
      -> records of every cell + <method>_selected + aggregates (mean, 95% CI)
      -> paired comparisons (vs generation 0, vs baseline) -> run directory

Nothing fitted in one cell reaches another: each cell builds its own scaler,
models and temperatures from its own training / validation rows. Cells run in
a process pool (``spawn``, so no forked torch state) with at most ``workers``
cells in flight; the dataset travels to each worker once. Each cell uses
:data:`CELL_THREADS` torch thread (in this process too, restored afterwards). Seeds are
``cfg.seed, cfg.seed + 1, ...``; every random choice inside a cell derives from
its seed, so the results do not depend on the number of workers.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from selfdistill.config import RunConfig
from selfdistill.errors import ConfigError
from selfdistill.evaluation.aggregate import (
    add_selected_records,
    aggregate_records,
    compare_records,
)
from selfdistill.evaluation.backtest import annualisation
from selfdistill.evaluation.cell import BacktestSettings, score_cell
from selfdistill.evaluation.fold import (
    Dataset,
    build_dataset,
    holdout_split,
    load_candles,
    run_fold,
)
from selfdistill.splits import Split, check_no_leak, purged_kfold, walk_forward
from selfdistill.training.callbacks import Callback, ExperimentCallback

__all__ = [
    "Cell",
    "CellResult",
    "ExperimentCallback",
    "ExperimentResult",
    "backtest_settings",
    "experiment_seeds",
    "plan_cells",
    "plan_splits",
    "run_cell",
    "run_experiment",
    "summarise",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One unit of work: every method on one split with one seed."""

    fold: int
    seed: int
    split: Split
    save_models: bool = False


@dataclass
class CellResult:
    fold: int
    seed: int
    records: list[dict[str, Any]]
    predictions: pd.DataFrame
    uncertainty: list[dict[str, Any]]
    curves: pd.DataFrame
    timings: dict[str, Any]
    seconds: float


@dataclass
class ExperimentResult:
    """Where the run went and what metrics.json holds."""

    run_dir: Path
    metrics: dict[str, Any]
    n_cells: int
    workers: int
    seconds: float
    timings: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ planning


def experiment_seeds(cfg: RunConfig) -> list[int]:
    """``evaluation.seeds`` consecutive seeds starting at ``cfg.seed``."""
    return [cfg.seed + i for i in range(cfg.evaluation.seeds)]


def plan_splits(ds: Dataset, cfg: RunConfig) -> list[Split]:
    """The folds of ``evaluation.scheme``, each checked leak-free.

    ``walk_forward`` tiles the last ``split.test`` fraction of rows into
    ``evaluation.folds`` test blocks, each right after a validation block of
    ``split.val`` of the rows (so the first training window is ``split.train``);
    a rolling window keeps ``split.train`` of the rows. ``purged_kfold`` carves
    ``split.val`` of the rows for validation from each fold's training rows.
    """
    ev, sp = cfg.evaluation, cfg.split
    start, end = ds.labels.start, ds.labels.end
    if ev.scheme == "holdout":
        if ev.folds != 1:
            raise ConfigError(f"evaluation.folds is {ev.folds} but scheme 'holdout' has one "
                              "fold; use scheme walk_forward or purged_kfold")
        return [holdout_split(ds, cfg)]
    if ev.scheme == "walk_forward":
        splits = walk_forward(start, end, n_folds=ev.folds, window=ev.window,
                              val=sp.val, test=sp.test / ev.folds, purge=sp.purge,
                              embargo=sp.embargo, min_train=int(sp.train * ds.n_rows))
    else:
        splits = purged_kfold(start, end, n_folds=ev.folds, embargo=sp.embargo, val=sp.val,
                              purge=sp.purge or 0)
    for split in splits:
        check_no_leak(split, start, end)
    return splits


def plan_cells(splits: Sequence[Split], seeds: Sequence[int]) -> list[Cell]:
    """Fold-major cells; models are kept from the last fold's first seed (the newest)."""
    last = len(splits) - 1
    return [Cell(k, s, split, save_models=(k == last and s == seeds[0]))
            for k, split in enumerate(splits) for s in seeds]


def backtest_settings(cfg: RunConfig, interval: str | None) -> BacktestSettings:
    bt = cfg.backtest
    ppy = annualisation(interval, bt.periods_per_year) if bt.enabled else 1.0
    return BacktestSettings(enabled=bt.enabled, fee_bps=bt.fee_bps,
                            slippage_bps=bt.slippage_bps, allow_short=bt.allow_short,
                            sizing=bt.sizing, uncertainty_gate=bt.uncertainty_gate,
                            periods_per_year=ppy, calibrate=cfg.evaluation.calibrate)


# ------------------------------------------------------------------ one cell


def run_cell(ds: Dataset, cell: Cell, cfg: RunConfig, *, settings: BacktestSettings,
             run_dir: Path | None = None, callbacks: Sequence[Callback] = ()) -> CellResult:
    """Fit, evaluate, calibrate and backtest every method on one cell."""
    t0 = time.perf_counter()
    result = run_fold(ds, cell.split, cfg, seed=cell.seed, fold=cell.fold, callbacks=callbacks)
    scores = score_cell(result.records, result.predictions, opens=ds.candles["open"],
                        settings=settings, class_names=tuple(ds.labels.class_names),
                        seed=cell.seed, fold=cell.fold)
    if cell.save_models and run_dir is not None:
        _save_models(run_dir, ds, cfg, result, _temperatures(scores.predictions))
    return CellResult(cell.fold, cell.seed, scores.records, scores.predictions,
                      result.uncertainty, scores.curves, result.timings,
                      time.perf_counter() - t0)


def _temperatures(predictions: Any) -> dict[tuple[str, str], float]:
    """(method, member) -> the temperature fitted on its validation rows (if any)."""
    if "temperature" not in predictions.columns:
        return {}
    firsts = predictions.groupby(["method", "member"], sort=False)["temperature"].first()
    return {key: float(t) for key, t in firsts.items() if t == t}  # t == t drops NaN


def _save_models(run_dir: Path, ds: Dataset, cfg: RunConfig, result: Any,
                 temperatures: dict[tuple[str, str], float]) -> None:
    """Every lineage as a model directory; its selected member's calibration goes along."""
    from selfdistill.evaluation.fold import member_name
    from selfdistill.rundir.write import model_metadata, save_lineage_models

    common = model_metadata(cfg, scaler=result.scaler.to_dict(),
                            feature_names=list(ds.features.columns),
                            class_names=list(ds.labels.class_names), interval=ds.interval)
    for lineage in result.lineages:
        chosen = member_name(lineage.members[lineage.selected].keys)
        save_lineage_models(run_dir, lineage, common,
                            temperature=temperatures.get((lineage.method, chosen), 1.0))


# ------------------------------------------------------------------ the pool

_WORKER: dict[str, Any] = {}
#: torch threads per cell. The models are tiny: intra-op threads cost more than they
#: give (3-6x slower with 2 threads on a busy 2-core machine, benchmarks/bench_workers.py);
#: parallelism comes from the workers.
CELL_THREADS = 1


def _init_worker(ds: Dataset, cfg: RunConfig, settings: BacktestSettings, run_dir: Path,
                 threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER.update(ds=ds, cfg=cfg, settings=settings, run_dir=run_dir)


def _work(cell: Cell) -> CellResult:
    return run_cell(_WORKER["ds"], cell, _WORKER["cfg"], settings=_WORKER["settings"],
                    run_dir=_WORKER["run_dir"])


def _in_process(ds: Dataset, cells: Sequence[Cell], cfg: RunConfig, settings: BacktestSettings,
                run_dir: Path, callbacks: Sequence[Callback]) -> Iterator[CellResult]:
    import torch

    fit_callbacks = list(callbacks)  # ExperimentCallbacks may follow training too
    before = torch.get_num_threads()
    torch.set_num_threads(CELL_THREADS)
    try:
        for cell in cells:
            yield run_cell(ds, cell, cfg, settings=settings, run_dir=run_dir,
                           callbacks=fit_callbacks)
    finally:
        torch.set_num_threads(before)


def _in_pool(ds: Dataset, cells: Sequence[Cell], cfg: RunConfig, settings: BacktestSettings,
             run_dir: Path, workers: int) -> Iterator[CellResult]:
    """Results as cells finish; at most ``workers`` cells in flight (bounded memory)."""
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(ds, cfg, settings, run_dir, CELL_THREADS)) as pool:
        queue = list(reversed(cells))
        running: set[Future[CellResult]] = set()
        while queue or running:
            while queue and len(running) < workers:
                running.add(pool.submit(_work, queue.pop()))
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()


def _iter_cells(ds: Dataset, cells: Sequence[Cell], cfg: RunConfig, settings: BacktestSettings,
                run_dir: Path, workers: int, callbacks: Sequence[Callback]
                ) -> Iterator[CellResult]:
    if workers <= 1 or len(cells) <= 1:
        return _in_process(ds, cells, cfg, settings, run_dir, callbacks)
    return _in_pool(ds, cells, cfg, settings, run_dir, workers)


def _cell_info(res: CellResult) -> dict[str, Any]:
    test_acc = [r["accuracy"] for r in res.records
                if r["split"] == "test" and r["method"] == "baseline" and "accuracy" in r]
    return {"fold": res.fold, "seed": res.seed, "seconds": res.seconds,
            "baseline_test_accuracy": test_acc[0] if test_acc else None}


# ------------------------------------------------------------------ the experiment


def run_experiment(cfg: RunConfig, *, out_dir: str | Path | None = None,
                   workers: int | None = None, callbacks: Sequence[Callback] = (),
                   overwrite: bool = False) -> ExperimentResult:
    """Run every fold x seed cell and write the run directory.

    Args:
        cfg: the validated run config.
        out_dir: the run directory (default ``runs/<name>-<UTC time>``); must be empty
            unless ``overwrite``.
        workers: processes (default ``evaluation.workers``); 1 runs in this process
            and passes training events to ``callbacks``.
        callbacks: :class:`ExperimentCallback` instances get experiment progress;
            plain callbacks get training events when ``workers == 1``.

    Returns:
        The run directory and the metrics.json payload.
    """
    from selfdistill.rundir.write import create_run_dir

    t0 = time.perf_counter()
    workers = workers if workers is not None else cfg.evaluation.workers
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    run_dir = create_run_dir(out_dir, cfg, overwrite=overwrite)
    candles, truth, interval = load_candles(cfg)
    ds = build_dataset(cfg, candles, truth, interval)
    splits = plan_splits(ds, cfg)
    cells = plan_cells(splits, experiment_seeds(cfg))
    settings = backtest_settings(cfg, ds.interval)
    progress = [cb for cb in callbacks if isinstance(cb, ExperimentCallback)]
    for cb in progress:
        cb.on_experiment_begin(len(cells), min(workers, len(cells)))
    log.info("%d folds x %d seeds = %d cells on %d workers", len(splits),
             cfg.evaluation.seeds, len(cells), workers)
    results: list[CellResult] = []
    for res in _iter_cells(ds, cells, cfg, settings, run_dir, workers, callbacks):
        results.append(res)
        for cb in progress:
            cb.on_cell_end(len(results), len(cells), _cell_info(res))
    from selfdistill.rundir.read import write_experiment

    metrics, timings = write_experiment(run_dir, cfg, ds, splits, results,
                                        workers=workers, seconds=time.perf_counter() - t0)
    return ExperimentResult(run_dir, metrics, len(cells), workers,
                            time.perf_counter() - t0, timings)


def summarise(results: Sequence[CellResult], cfg: RunConfig
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All records (cells, selected, aggregates) and the paired comparisons."""
    ordered = sorted(results, key=lambda r: (r.fold, r.seed))
    records = add_selected_records(rec for res in ordered for rec in res.records)
    n_boot = cfg.evaluation.bootstrap
    aggregates = aggregate_records(records, n_boot=n_boot, seed=cfg.seed)
    comparisons = compare_records(records, n_boot=n_boot, seed=cfg.seed)
    return records + aggregates, comparisons

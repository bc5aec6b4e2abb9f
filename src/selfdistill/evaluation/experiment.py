"""Experiments: folds x seeds x methods, in parallel, summarised with honest statistics.

::

    candles -> dataset (once)
      -> folds (holdout | walk_forward | purged_kfold) x seeds = cells
      -> per cell, in a worker: run_cell (every method from scratch, scaler fitted
         on the cell's train rows; then scored: temperature on val, backtest on test,
         rows streamed to the cell's folder, per-bar evidence kept)
      -> records of every cell + <method>_selected + aggregates (mean, 95% CI over folds)
      -> per-bar paired comparisons, findings (evaluation.summary)
      -> RunContents (in memory) -> rundir.write.write_run -> the run directory

Nothing fitted in one cell reaches another: each cell builds its own scaler,
models and temperatures from its own training / validation rows. Cells run in
a process pool (``spawn``, so no forked torch state), or as Ray tasks
(``evaluation.backend: ray``, :mod:`selfdistill.evaluation.backends`), with at most ``workers``
cells in flight; the dataset travels to each worker once. Each cell uses
:data:`CELL_THREADS` torch thread (in this process too, restored afterwards). Seeds are
``cfg.seed, cfg.seed + 1, ...``; every random choice inside a cell derives from
its seed, so the results do not depend on the number of workers.

Computing and writing are apart: this module computes every file's contents in memory
(:func:`run_contents`) and hands them to :func:`selfdistill.rundir.write.write_run`, the
run directory's one writer. The import points one way, from evaluation to rundir;
rundir takes plain records and frames and never imports evaluation, so there is no
cycle. :func:`run_experiment` creates the (empty) directory before the first cell runs,
so a wrong ``--out`` fails at once, and returns the metrics as written; a run that fails
or is interrupted removes the directory it created, or keeps it marked ``INCOMPLETE``
(:mod:`selfdistill.rundir.lifecycle`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from selfdistill.config import RunConfig
from selfdistill.errors import ConfigError
from selfdistill.evaluation.backends import CellBackend, ray_cells
from selfdistill.evaluation.backtest import annualisation
from selfdistill.evaluation.cell import (
    BacktestSettings,
    Cell,
    CellResult,
    backtest_settings,
    run_cell,
)
from selfdistill.evaluation.findings import RunFacts
from selfdistill.evaluation.fold import Dataset, build_dataset, holdout_split, load_candles
from selfdistill.evaluation.resume import keep_cell, resume_overwrite, resumed_cells
from selfdistill.evaluation.summary import summarise
from selfdistill.rundir.cellcache import cell_folder, clear_cells
from selfdistill.rundir.lifecycle import run_directory
from selfdistill.rundir.read import read_metrics
from selfdistill.rundir.write import RunContents, write_run
from selfdistill.splits import Split, check_no_leak, purged_kfold, walk_forward
from selfdistill.training.callbacks import Callback, ExperimentCallback

__all__ = [
    "CellBackend",
    "ExperimentCallback",
    "ExperimentResult",
    "backtest_settings",
    "experiment_seeds",
    "plan_cells",
    "plan_splits",
    "run_contents",
    "run_experiment",
    "run_facts",
]

log = logging.getLogger(__name__)


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
    run_dir = _WORKER["run_dir"]
    return run_cell(_WORKER["ds"], cell, _WORKER["cfg"], settings=_WORKER["settings"],
                    run_dir=run_dir, parts=cell_folder(run_dir, cell.fold, cell.seed))


def _in_process(ds: Dataset, cells: Sequence[Cell], cfg: RunConfig, settings: BacktestSettings,
                run_dir: Path, callbacks: Sequence[Callback]) -> Iterator[CellResult]:
    import torch

    fit_callbacks = list(callbacks)  # ExperimentCallbacks may follow training too
    before = torch.get_num_threads()
    torch.set_num_threads(CELL_THREADS)
    try:
        for cell in cells:
            yield run_cell(ds, cell, cfg, settings=settings, run_dir=run_dir,
                           callbacks=fit_callbacks,
                           parts=cell_folder(run_dir, cell.fold, cell.seed))
    finally:
        torch.set_num_threads(before)


def _in_pool(ds: Dataset, cells: Sequence[Cell], cfg: RunConfig, settings: BacktestSettings,
             run_dir: Path, workers: int) -> Iterator[CellResult]:
    """Results as cells finish; at most ``workers`` cells in flight (bounded memory).

    Workers start with Ctrl-C blocked, so an interrupt reaches this process alone (no
    traceback per worker); on any failure or interrupt the workers are stopped at once
    instead of finishing their cells.
    """
    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(ds, cfg, settings, run_dir, CELL_THREADS))
    try:
        queue = list(reversed(cells))
        running: set[Future[CellResult]] = set()
        while queue or running:
            with _sigint_blocked():  # workers started here inherit the blocked signal
                while queue and len(running) < workers:
                    running.add(pool.submit(_work, queue.pop()))
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Hold Ctrl-C while worker processes are started, and raise it afterwards.

    The workers inherit the blocked signal mask, so a Ctrl-C to the process group never
    reaches them; here an interrupt is only recorded meanwhile (other threads may take the
    signal), so it cannot strike between starting a worker and registering it.
    """
    if not hasattr(signal, "pthread_sigmask") or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    handler = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler)
    if caught:
        raise KeyboardInterrupt


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel queued cells and terminate the workers (Ctrl-C is blocked in them)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)


def _iter_cells(ds: Dataset, cells: Sequence[Cell], cfg: RunConfig, settings: BacktestSettings,
                run_dir: Path, workers: int, callbacks: Sequence[Callback],
                backend: CellBackend | None = None) -> Iterator[CellResult]:
    if backend is not None and backend.kind == "ray":
        return ray_cells(ds, cells, cfg, settings, run_dir, workers=workers,
                         threads=CELL_THREADS, address=backend.address)
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
                   overwrite: bool = False, backend: str | None = None,
                   ray_address: str | None = None, resume: bool = False) -> ExperimentResult:
    """Run every fold x seed cell and write the run directory.

    Args:
        cfg: the validated run config.
        out_dir: the run directory (default ``runs/<name>-<UTC time>``); must be empty
            unless ``overwrite``.
        workers: processes (default ``evaluation.workers``); 1 runs in this process
            and passes training events to ``callbacks``.
        callbacks: :class:`ExperimentCallback` instances get experiment progress;
            plain callbacks get training events when ``workers == 1``.
        backend / ray_address: ``local`` or ``ray`` and the Ray cluster (default
            ``evaluation.backend`` / ``evaluation.ray_address``; see
            :mod:`selfdistill.evaluation.backends`).
        resume: continue the unfinished run in ``out_dir``: its finished cells are kept
            (:mod:`selfdistill.evaluation.resume`), the others run.

    Returns:
        The run directory and the metrics.json payload.
    """
    t0 = time.perf_counter()
    workers = workers if workers is not None else cfg.evaluation.workers
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    where = CellBackend(backend or cfg.evaluation.backend,
                        ray_address if ray_address is not None else cfg.evaluation.ray_address,
                        resume)
    overwrite = overwrite or resume_overwrite(out_dir, resume)
    with run_directory(out_dir, cfg, overwrite=overwrite) as run_dir:  # marked, cleaned up
        contents, n_cells = _run_cells(cfg, run_dir, workers, callbacks, t0, where)
        write_run(run_dir, cfg, contents)
        clear_cells(run_dir)  # complete: the files hold what the cell cache held
    return ExperimentResult(run_dir, read_metrics(run_dir), n_cells, workers,
                            time.perf_counter() - t0, contents.timings)


def _run_cells(cfg: RunConfig, run_dir: Path, workers: int, callbacks: Sequence[Callback],
               t0: float, where: CellBackend) -> tuple[RunContents, int]:
    """Load, build the dataset, run every cell; the run directory's contents and cells."""
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
    results, todo = resumed_cells(run_dir, cfg, cells, resume=where.resume,
                                  class_names=ds.labels.class_names)
    for k, res in enumerate(results, 1):
        for cb in progress:
            cb.on_cell_end(k, len(cells), _cell_info(res))
    for res in _iter_cells(ds, todo, cfg, settings, run_dir, workers, callbacks, where):
        keep_cell(run_dir, res)
        res.predictions = res.curves = None  # rows on disk now: bounded memory
        results.append(res)
        for cb in progress:
            cb.on_cell_end(len(results), len(cells), _cell_info(res))
    contents = run_contents(cfg, ds, splits, results, workers=workers,
                            seconds=time.perf_counter() - t0)
    return contents, len(cells)


# ------------------------------------------------------------------ the results


def run_facts(ds: Dataset, splits: Sequence[Split], cfg: RunConfig) -> RunFacts:
    """What the findings' warnings need: test rows per fold, class balance, horizon."""
    y = ds.labels.y.to_numpy()
    test_rows = [len(split.test) for split in splits]
    labels = y[np.concatenate([np.asarray(split.test) for split in splits])]
    counts = np.bincount(labels, minlength=len(ds.labels.class_names))
    top = int(counts.argmax())
    return RunFacts(test_rows_per_fold=tuple(test_rows),
                    majority_share=float(counts[top] / max(counts.sum(), 1)),
                    majority_class=str(ds.labels.class_names[top]),
                    label_horizon=int(cfg.labels.horizon), scheme=cfg.evaluation.scheme)


def _class_balance(y: np.ndarray, rows: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    counts = np.bincount(y[rows], minlength=len(names)) if len(rows) else np.zeros(len(names))
    total = max(int(counts.sum()), 1)
    return {str(name): float(c / total) for name, c in zip(names, counts, strict=True)}


def market_identity(cfg: RunConfig, ds: Dataset, splits: Sequence[Split]) -> dict[str, Any]:
    """Which market a run covers and what its data looked like (for the report's header)."""
    data = cfg.data
    source: dict[str, Any] = {"source": data.source}
    if data.source in ("csv", "parquet"):
        source["path"] = str(data.path)
    elif data.source == "bybit":
        source.update(category=data.bybit.category, symbol=data.bybit.symbol)
    else:
        source["symbol"] = "synthetic"
    times = ds.candles.index
    y = ds.labels.y.to_numpy()
    names = list(ds.labels.class_names)
    balance = {name: _class_balance(y, np.concatenate([np.asarray(getattr(s, name))
                                                          for s in splits]), names)
               for name in ("train", "val", "test")}
    return {**source, "interval": ds.interval, "first_bar": str(times[0]),
            "last_bar": str(times[-1]), "bars": len(ds.candles), "labelled_rows": ds.n_rows,
            "class_balance": balance}


def run_contents(cfg: RunConfig, ds: Dataset, splits: Sequence[Split],
                 results: Sequence[CellResult], *, workers: int,
                 seconds: float) -> RunContents:
    """Everything the run directory holds besides the models, computed in memory."""
    ordered = sorted(results, key=lambda r: (r.fold, r.seed))
    summary = summarise(ordered, cfg, class_names=list(ds.labels.class_names),
                        periods_per_year=_periods(cfg, ds), facts=run_facts(ds, splits, cfg))
    records = summary.records
    ev, bt = cfg.evaluation, cfg.backtest
    extra = {
        "findings": summary.findings,
        "comparisons": summary.comparisons,
        "error_flags": summary.error_flags,
        "statistics": {"test": "per-bar paired test (Diebold-Mariano with an EWC long-run "
                               "variance, Student t); seeds averaged per bar",
                       "level": 0.95, "adjustment": ev.adjust,
                       "aggregate_interval": "Student t over folds (seeds averaged per fold)"},
        "class_names": list(ds.labels.class_names),
        "interval": ds.interval,
        "data": market_identity(cfg, ds, splits),
        "rows": {"labelled": ds.n_rows, "bars": len(ds.candles)},
        "experiment": {"scheme": ev.scheme, "folds": len(splits), "window": ev.window,
                       "seeds": [int(s) for s in sorted({r.seed for r in ordered})],
                       "workers": workers,
                       "calibrate": ev.calibrate, "fold_bounds": _fold_bounds(ds, splits)},
        "backtest": {**bt.model_dump(mode="json"),
                     "periods_per_year_used": _periods(cfg, ds)},
    }
    return RunContents(
        records=records,
        cells=[(r.fold, r.seed) for r in ordered],
        uncertainty=[u for r in ordered for u in r.uncertainty],
        timings={**_timings(ordered, workers, seconds),  # not deterministic, unlike metrics
                 "created_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")},
        extra=extra,
        prices=_prices(ds))


def _fold_bounds(ds: Dataset, splits: Sequence[Split]) -> list[dict[str, Any]]:
    times = ds.times
    out = []
    for k, split in enumerate(splits):
        row: dict[str, Any] = {"fold": k}
        for name in ("train", "val", "test"):
            rows = getattr(split, name)
            row[name] = {"rows": len(rows), "first": str(times[rows[0]]),
                         "last": str(times[rows[-1]])}
        out.append(row)
    return out


def _prices(ds: Dataset) -> pd.DataFrame:
    """Bar prices, and the true regime of each labelled bar on synthetic data."""
    frame = pd.DataFrame({"open_time": ds.candles.index,
                          "open": ds.candles["open"].to_numpy(),
                          "close": ds.candles["close"].to_numpy()})
    if ds.truth is not None:
        regime = pd.Series(pd.NA, index=range(len(frame)), dtype="Int64")
        regime.iloc[ds.labels.start] = ds.truth
        frame["true_regime"] = regime.array
    return frame


def _timings(results: Sequence[CellResult], workers: int, seconds: float) -> dict[str, Any]:
    return {"seconds": seconds, "workers": workers,
            "cell_seconds": sum(r.seconds for r in results),
            "cells": [{"fold": r.fold, "seed": r.seed, "seconds": r.seconds,
                       "methods": r.timings} for r in results]}


def _periods(cfg: RunConfig, ds: Dataset) -> float | None:
    if not cfg.backtest.enabled:
        return None
    return annualisation(ds.interval, cfg.backtest.periods_per_year)

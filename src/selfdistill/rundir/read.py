"""What an experiment writes into (and the report reads from) the run directory.

On top of the files of :mod:`selfdistill.rundir.write` (config.yaml, metrics.json,
timings.json, predictions.parquet, models/):

::

    backtest.parquet   per test decision: open_time, method, member, seed, fold,
                       position, asset_return, net (baselines: buy_and_hold,
                       always_flat, random)
    prices.parquet     open_time, open, close of every bar, plus true_regime on
                       synthetic data (null on rows without a label)

metrics.json gains ``comparisons`` (paired, with verdicts), ``experiment``
(scheme, folds, seeds, workers, the fold boundaries) and ``backtest``
(costs and annualisation); ``records`` gains the aggregate records.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from selfdistill.errors import DataError

if TYPE_CHECKING:
    from selfdistill.config import RunConfig
    from selfdistill.evaluation.experiment import CellResult
    from selfdistill.evaluation.fold import Dataset
    from selfdistill.splits import Split

__all__ = ["BACKTEST_FILE", "PRICES_FILE", "read_curves", "read_prices", "write_experiment"]

BACKTEST_FILE = "backtest.parquet"
PRICES_FILE = "prices.parquet"


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _fold_bounds(ds: Dataset, splits: Sequence[Split]) -> list[dict[str, Any]]:
    times = ds.features.index
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


def write_experiment(run_dir: Path, cfg: RunConfig, ds: Dataset, splits: Sequence[Split],
                     results: Sequence[CellResult], *, workers: int,
                     seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Summarise the cells and write every file of the run directory.

    Returns:
        The metrics.json payload (as read back) and the timings.
    """
    from selfdistill.evaluation.experiment import summarise
    from selfdistill.rundir.write import read_metrics, write_run

    ordered = sorted(results, key=lambda r: (r.fold, r.seed))
    records, comparisons = summarise(ordered, cfg)
    predictions = pd.concat([r.predictions for r in ordered], ignore_index=True)
    ev, bt = cfg.evaluation, cfg.backtest
    extra = {
        "comparisons": comparisons,
        "class_names": list(ds.labels.class_names),
        "interval": ds.interval,
        "rows": {"labelled": ds.n_rows, "bars": len(ds.candles)},
        "experiment": {"scheme": ev.scheme, "folds": len(splits), "window": ev.window,
                       "seeds": [int(s) for s in sorted({r.seed for r in ordered})],
                       "workers": workers, "bootstrap": ev.bootstrap,
                       "calibrate": ev.calibrate, "fold_bounds": _fold_bounds(ds, splits)},
        "backtest": {**bt.model_dump(mode="json"),
                     "periods_per_year_used": _periods(cfg, ds)},
    }
    timings = _timings(ordered, workers, seconds)
    write_run(run_dir, cfg, records=records, predictions=predictions,
              uncertainty=[u for r in ordered for u in r.uncertainty], timings=timings,
              extra=extra)
    curves = [r.curves for r in ordered if len(r.curves)]
    if curves:
        _write_parquet(pd.concat(curves, ignore_index=True), run_dir / BACKTEST_FILE)
    _write_parquet(_prices(ds), run_dir / PRICES_FILE)
    return read_metrics(run_dir), timings


def _periods(cfg: RunConfig, ds: Dataset) -> float | None:
    from selfdistill.evaluation.backtest import annualisation

    if not cfg.backtest.enabled:
        return None
    return annualisation(ds.interval, cfg.backtest.periods_per_year)


def damaged(path: Path, exc: BaseException) -> DataError:
    """The error for a run-directory file that exists but cannot be read."""
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DataError(f"'{path}' cannot be read ({detail}); the run directory is damaged: "
                     "run the experiment again")


def read_run_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file of a run directory; a damaged file is a DataError naming it."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise damaged(path, exc) from None


def read_curves(run_dir: str | Path) -> pd.DataFrame | None:
    """The backtest series of a run directory (None when the backtest was off)."""
    path = Path(run_dir) / BACKTEST_FILE
    return read_run_parquet(path) if path.is_file() else None


def read_prices(run_dir: str | Path) -> pd.DataFrame:
    """The bar prices (and true regimes on synthetic data) of a run directory."""
    path = Path(run_dir) / PRICES_FILE
    if not path.is_file():
        raise DataError(f"'{run_dir}' has no {PRICES_FILE}; run it again with this version")
    return read_run_parquet(path)

"""The run directory: the one description of what a run writes where.

::

    RUN_DIR/
      config.yaml          the resolved config (every default written out)
      metrics.json         machine-readable results (schema in README.md); deterministic
      timings.json         wall times and epochs (not deterministic, so kept apart)
      predictions.parquet  per-row probabilities for val / test, every method and member
      backtest.parquet     per test decision: open_time, method, member, seed, fold,
                           position, asset_return, net (baselines: buy_and_hold,
                           always_flat, random); absent when the backtest is off
      prices.parquet       open_time, open, close of every bar, plus true_regime on
                           synthetic data (null on rows without a label)
      models/<method>/     model.json + member_<i>.safetensors / .json (never pickle)
      report.html, summary.md   written by ``selfdistill report`` (and every run)
      INCOMPLETE           present while the run is unfinished: written when the directory
                           is created, removed once every result file is written; a run
                           that failed or was interrupted keeps it (first line: why)
      tune.json            runs written by ``selfdistill tune``: the search history, parameter
                           importances and the best parameters (see selfdistill.tuning)
      cells/               while INCOMPLETE: every finished fold x seed cell, so a killed run
                           resumes (``--resume``) without redoing them; removed once complete
                           (:mod:`selfdistill.rundir.cellcache`)

metrics.json holds the ``records`` (per cell, ``<method>_selected`` and aggregates),
``uncertainty``, ``comparisons`` (paired, with verdicts), ``experiment`` (scheme, folds,
seeds, workers, the fold boundaries) and ``backtest`` (costs and annualisation).

Who does what: :mod:`selfdistill.evaluation.experiment` computes every file's contents
in memory and hands them to :func:`selfdistill.rundir.write.write_run`, the one writer
(the cell that keeps its models saves them with
:func:`selfdistill.rundir.write.save_lineage_models`); :mod:`selfdistill.rundir.read`
reads them back; :mod:`selfdistill.rundir.lifecycle` marks an unfinished run and cleans
up after a failed one. The arrow points one way: evaluation imports rundir, and rundir knows
nothing of evaluation (it writes plain records, frames and models).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from selfdistill.errors import ConfigError, DataError

if TYPE_CHECKING:
    from selfdistill.config import RunConfig

__all__ = [
    "BACKTEST_FILE",
    "CELLS_DIR",
    "CONFIG_FILE",
    "INCOMPLETE_FILE",
    "METRICS_FILE",
    "METRICS_SCHEMA_VERSION",
    "MODELS_DIR",
    "PREDICTIONS_FILE",
    "PRICES_FILE",
    "TIMINGS_FILE",
    "TUNE_FILE",
    "create_run_dir",
    "damaged",
]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
TIMINGS_FILE = "timings.json"
PREDICTIONS_FILE = "predictions.parquet"
BACKTEST_FILE = "backtest.parquet"
PRICES_FILE = "prices.parquet"
MODELS_DIR = "models"
INCOMPLETE_FILE = "INCOMPLETE"
CELLS_DIR = "cells"
TUNE_FILE = "tune.json"

METRICS_SCHEMA_VERSION = 1


def create_run_dir(out: str | Path | None, cfg: RunConfig, *, overwrite: bool = False) -> Path:
    """``out`` or ``runs/<name>-<UTC timestamp>``; refuses a non-empty directory."""
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{cfg.name}-{stamp}"
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out '{path}' exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ConfigError(f"run directory '{path}' is not empty; choose another --out "
                          "or pass --overwrite")
    path.mkdir(parents=True, exist_ok=True)
    return path


def damaged(path: Path, exc: BaseException) -> DataError:
    """The error for a run-directory file that exists but cannot be read."""
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DataError(f"'{path}' cannot be read ({detail}); the run directory is damaged: "
                     "run the experiment again")

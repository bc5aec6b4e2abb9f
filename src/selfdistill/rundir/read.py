"""Reading a run directory back: metrics, predictions, backtest series, prices.

A missing file says the directory is not a run directory (or predates the file); a
file that exists but cannot be parsed is one :class:`~selfdistill.errors.DataError`
naming it (:func:`selfdistill.rundir.layout.damaged`). Reading the metrics of a run that
never finished (an ``INCOMPLETE`` marker, see :mod:`selfdistill.rundir.lifecycle`) logs a
warning, so ``selfdistill report`` says so. The layout is described in
:mod:`selfdistill.rundir.layout`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from selfdistill.errors import DataError
from selfdistill.rundir.layout import (
    BACKTEST_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PRICES_FILE,
    damaged,
)
from selfdistill.rundir.lifecycle import incomplete_reason

__all__ = ["read_curves", "read_metrics", "read_predictions", "read_prices", "read_run_parquet"]

log = logging.getLogger(__name__)


def read_run_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file of a run directory; a damaged file is a DataError naming it."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise damaged(path, exc) from exc  # the message keeps only its first line


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The parsed metrics.json of a run directory."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise DataError(f"'{run_dir}' is not a run directory (no metrics.json)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(path, exc) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        raise damaged(path, ValueError("no list of 'records'"))
    why = incomplete_reason(run_dir)
    if why is not None:
        log.warning("%s is an INCOMPLETE run (%s): its results are partial; run the "
                    "experiment again for complete ones", run_dir, why)
    return payload


def read_predictions(run_dir: str | Path) -> pd.DataFrame:
    """The predictions.parquet of a run directory."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        raise DataError(f"'{run_dir}' is not a run directory (no predictions.parquet)")
    return read_run_parquet(path)


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

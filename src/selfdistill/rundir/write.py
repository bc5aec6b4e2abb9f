"""Writing the run directory: the one writer of what an experiment computed.

:func:`write_run` writes config.yaml, metrics.json, timings.json, predictions.parquet,
backtest.parquet and prices.parquet from a :class:`RunContents` built in memory by
:mod:`selfdistill.evaluation.experiment`; :func:`save_lineage_models` writes
``models/<method>/`` (see :mod:`selfdistill.modelio.bundle`) from the cell that keeps
its models. Every file is written to a temporary name and renamed, so a reader never
sees half a file (:func:`selfdistill.atomic.atomic_write`). The layout is described in
:mod:`selfdistill.rundir.layout`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from selfdistill._version import __version__
from selfdistill.atomic import atomic_write, atomic_write_bytes
from selfdistill.config import RunConfig, dump_config
from selfdistill.features import pin_volume
from selfdistill.modelio.bundle import save_bundle
from selfdistill.rundir.cellcache import CURVES_PART, PREDICTIONS_PART, cell_files
from selfdistill.rundir.frames import concat_parquet
from selfdistill.rundir.layout import (
    BACKTEST_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    METRICS_SCHEMA_VERSION,
    MODELS_DIR,
    PREDICTIONS_FILE,
    PRICES_FILE,
    TIMINGS_FILE,
)
from selfdistill.rundir.lifecycle import mark_complete

if TYPE_CHECKING:
    from selfdistill.methods.base import Lineage

__all__ = [
    "RunContents",
    "model_metadata",
    "save_lineage_models",
    "write_json",
    "write_run",
]


@dataclass
class RunContents:
    """What an experiment leaves in its run directory, besides the models.

    Attributes:
        records: metrics records (per cell, ``<method>_selected``, aggregates).
        cells: (fold, seed) of every cell, in order: their prediction rows (val / test)
            and backtest rows, in the run directory's cell cache
            (:mod:`selfdistill.rundir.cellcache`), become predictions.parquet and
            backtest.parquet (none without a backtest).
        uncertainty: disagreement summaries (error rate per quantile).
        timings: wall times (timings.json; not deterministic).
        extra: further metrics.json fields (comparisons, experiment, backtest, ...).
        prices: bar prices, and true regimes on synthetic data.
    """

    records: list[dict[str, Any]]
    cells: list[tuple[int, int]]
    uncertainty: list[dict[str, Any]]
    timings: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    prices: pd.DataFrame | None = None


def _clean(value: Any) -> Any:
    """JSON-safe values: numpy scalars to Python, NaN / inf to null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_json(path: str | Path, payload: Any) -> None:
    """Deterministic JSON (sorted keys, NaN as null), written atomically."""
    text = json.dumps(_clean(payload), indent=1, sort_keys=True, allow_nan=False)
    atomic_write_bytes(Path(path), (text + "\n").encode())


def model_metadata(cfg: RunConfig, *, scaler: dict[str, Any], feature_names: list[str],
                   class_names: list[str], interval: str | None,
                   gaps: str | None = None, time_format: str | None = None) -> dict[str, Any]:
    """What a model file needs besides its weights to predict on new candles.

    Besides the feature config (with ``volume`` as training resolved it), the gap policy
    the training data resolved to (``gaps``: mark / sessions / error; ``auto`` is never
    stored when it was decided) and the date format its file was read with
    (``time_format``), so ``selfdistill predict`` treats new candles the same way.
    """
    features = pin_volume(cfg.features, feature_names).model_dump(mode="json")
    policy = gaps or (cfg.data.gaps if cfg.data.gaps != "auto" else None)
    return {"class_names": class_names, "feature_names": feature_names, "scaler": scaler,
            "features": features, "labels": cfg.labels.model_dump(mode="json"),
            "interval": interval, "gaps": policy,
            "time_format": time_format or cfg.data.time_format}


def save_lineage_models(run_dir: Path, lineage: Lineage, common: dict[str, Any],
                        *, prefix: str = "", temperature: float = 1.0) -> list[Path]:
    """A lineage as the model directory ``models/<prefix><method>/`` (see modelio.bundle).

    ``temperature`` is the calibration fitted on validation rows for the selected
    member; ``predict`` divides logits by it.
    """
    members = lineage.members
    metas = [{**common, "method": lineage.method, "output": m.output, "member_index": i,
              "selected": i == lineage.selected, "n_members": len(members),
              "history": m.history} for i, m in enumerate(members)]
    directory = save_bundle(
        run_dir / MODELS_DIR / f"{prefix}{lineage.method}", [m.model for m in members],
        member_keys=[m.keys for m in members], member_meta=metas,
        classes=list(common["class_names"]), feature_names=common["feature_names"],
        selected=lineage.selected, method=lineage.method, scaler=common["scaler"],
        temperature=temperature,
        feature_config=common["features"],
        extra={k: common[k] for k in ("class_names", "labels", "interval", "gaps", "time_format")
               if k in common})
    return [directory / f"member_{i}.json" for i in range(len(members))]


def write_run(run_dir: Path, cfg: RunConfig, contents: RunContents) -> None:
    """Every file of the run directory except the models and the report.

    Removes the ``INCOMPLETE`` marker once everything is written (see
    :mod:`selfdistill.rundir.lifecycle`).
    """
    atomic_write_bytes(run_dir / CONFIG_FILE, dump_config(cfg).encode())
    payload = {"schema_version": METRICS_SCHEMA_VERSION, "selfdistill_version": __version__,
               "name": cfg.name, "records": contents.records,
               "uncertainty": contents.uncertainty, **contents.extra}
    write_json(run_dir / METRICS_FILE, payload)
    write_json(run_dir / TIMINGS_FILE, contents.timings)
    concat_parquet(cell_files(run_dir, contents.cells, PREDICTIONS_PART),
                   run_dir / PREDICTIONS_FILE)  # row group by row group: never whole
    concat_parquet(cell_files(run_dir, contents.cells, CURVES_PART), run_dir / BACKTEST_FILE)
    if contents.prices is not None:
        _write_parquet(contents.prices, run_dir / PRICES_FILE)
    mark_complete(run_dir)  # last: a run stopped before this point stays marked INCOMPLETE

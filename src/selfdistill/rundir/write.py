"""The run directory: everything a run makes, written atomically, read back by path.

::

    RUN_DIR/
      config.yaml          the resolved config (every default written out)
      metrics.json         machine-readable results (schema in README.md); deterministic
      timings.json         wall times and epochs (not deterministic, so kept apart)
      predictions.parquet  per-row probabilities for val / test, every method and member
      models/<method>/     model.json + member_<i>.safetensors / .json (never pickle)
      backtest.parquet, prices.parquet   written by the experiment (see evaluation)
      report.html, summary.md            written by ``selfdistill report`` (and every run)
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from selfdistill import __version__
from selfdistill.config import RunConfig, dump_config
from selfdistill.errors import ConfigError, DataError
from selfdistill.methods.base import Lineage
from selfdistill.modelio.bundle import save_bundle
from selfdistill.rundir.read import damaged, read_run_parquet

__all__ = [
    "METRICS_SCHEMA_VERSION",
    "create_run_dir",
    "read_metrics",
    "read_predictions",
    "save_lineage_models",
    "write_json",
    "write_run",
]

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


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: str | Path, payload: Any) -> None:
    """Deterministic JSON (sorted keys, NaN as null), written atomically."""
    text = json.dumps(_clean(payload), indent=1, sort_keys=True, allow_nan=False)
    _atomic_write(Path(path), (text + "\n").encode())


def model_metadata(cfg: RunConfig, *, scaler: dict[str, Any], feature_names: list[str],
                   class_names: list[str], interval: str | None) -> dict[str, Any]:
    """What a model file needs besides its weights to predict on new candles."""
    return {"class_names": class_names, "feature_names": feature_names, "scaler": scaler,
            "features": cfg.features.model_dump(mode="json"),
            "labels": cfg.labels.model_dump(mode="json"), "interval": interval}


def save_lineage_models(run_dir: Path, lineage: Lineage, common: dict[str, Any],
                        *, prefix: str = "", temperature: float = 1.0) -> list[Path]:
    """A lineage as the model directory ``models/<prefix><method>/`` (see modeldir).

    ``temperature`` is the calibration fitted on validation rows for the selected
    member; ``predict`` divides logits by it.
    """
    members = lineage.members
    metas = [{**common, "method": lineage.method, "output": m.output, "member_index": i,
              "selected": i == lineage.selected, "n_members": len(members),
              "history": m.history} for i, m in enumerate(members)]
    directory = save_bundle(
        run_dir / "models" / f"{prefix}{lineage.method}", [m.model for m in members],
        member_keys=[m.keys for m in members], member_meta=metas,
        classes=list(common["class_names"]), feature_names=common["feature_names"],
        selected=lineage.selected, method=lineage.method, scaler=common["scaler"],
        temperature=temperature,
        feature_config=common["features"],
        extra={k: common[k] for k in ("class_names", "labels", "interval") if k in common})
    return [directory / f"member_{i}.json" for i in range(len(members))]


def write_run(run_dir: Path, cfg: RunConfig, *, records: list[dict[str, Any]],
              predictions: pd.DataFrame, uncertainty: list[dict[str, Any]],
              timings: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """config.yaml, metrics.json, timings.json and predictions.parquet."""
    _atomic_write(run_dir / "config.yaml", dump_config(cfg).encode())
    payload = {"schema_version": METRICS_SCHEMA_VERSION, "selfdistill_version": __version__,
               "name": cfg.name, "records": records, "uncertainty": uncertainty,
               **(extra or {})}
    write_json(run_dir / "metrics.json", payload)
    write_json(run_dir / "timings.json", timings)
    tmp = run_dir / "predictions.parquet.tmp"
    predictions.to_parquet(tmp, index=False)
    os.replace(tmp, run_dir / "predictions.parquet")


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The parsed metrics.json of a run directory."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise DataError(f"'{run_dir}' is not a run directory (no metrics.json)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(path, exc) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        raise damaged(path, ValueError("no list of 'records'"))
    return payload


def read_predictions(run_dir: str | Path) -> pd.DataFrame:
    """The predictions.parquet of a run directory."""
    path = Path(run_dir) / "predictions.parquet"
    if not path.is_file():
        raise DataError(f"'{run_dir}' is not a run directory (no predictions.parquet)")
    return read_run_parquet(path)


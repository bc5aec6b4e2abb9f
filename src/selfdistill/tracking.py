"""MLflow tracking: a run directory (and each tuning trial) as an MLflow run.

``--track mlflow`` (or ``tracking.mlflow.enabled: true``) logs, once a run directory is
complete, one MLflow run holding

* params: the resolved config (config.yaml), one dotted key each (``born_again.alpha``);
* metrics: every aggregate record's mean and 95% interval on validation and test
  (``test/born_again_selected/accuracy``, ``..._ci_low``, ``..._ci_high``);
* tags: the findings' answers (``finding.own_baseline = not significant``), the overall
  line, and every paired comparison's verdict
  (``verdict.born_again_selected.vs_baseline.accuracy = better``);
* artifacts: report.html, summary.md, metrics.json, config.yaml and ``models/``.

A ``selfdistill tune`` study is a parent run (the final run directory's content plus
the search) with one child run per trial (its parameters, per-fold validation values,
state). The tracking URI is any MLflow URI (``tracking.mlflow.uri``). The default is a
SQLite database, ``sqlite:///mlruns.db``, with artifacts in ``mlartifacts/`` beside it:
MLflow 3 keeps its ``./mlruns`` file store in maintenance mode and refuses to open one
unless ``MLFLOW_ALLOW_FILE_STORE`` is set, which this module does when the URI is a
folder, since the user asked for it. MLflow is imported only here, only when asked for
(``pip install 'selfdistill[mlflow]'``).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from selfdistill.config.scaleout import MlflowConfig
from selfdistill.errors import ConfigError, TrackingError
from selfdistill.rundir.layout import CONFIG_FILE, METRICS_FILE, MODELS_DIR
from selfdistill.rundir.read import read_metrics

__all__ = ["MlflowTracker", "flatten", "metric_items", "tag_items"]

log = logging.getLogger(__name__)

_ARTIFACTS = ("report.html", "summary.md", METRICS_FILE, CONFIG_FILE)
_NAME = re.compile(r"[^\w\-. /:]")  # MLflow keys: alphanumerics, _ - . space / :
_BATCH = 500  # MLflow takes at most 1000 metrics / 100 params per batch
#: An Optuna trial's state as an MLflow run status.
_TRIAL_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "fail": "FAILED",
                 "running": "RUNNING"}


def _key(text: str) -> str:
    return _NAME.sub("_", text)[:250]


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{'born_again.alpha': '0.3', ...}: every leaf of a nested mapping, as text."""
    out: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[_key(name)] = str(value)[:6000]
    return out


def _output(record: dict[str, Any]) -> str:
    keys = [f"{k}={v}" for k, v in record.items()
            if k in ("generation", "exit", "snapshot", "cycle") and v is not None]
    return record["method"] + (f"[{','.join(keys)}]" if keys else "")


def metric_items(metrics: dict[str, Any]) -> dict[str, float]:
    """Aggregate val / test metrics with their intervals, as MLflow metric names."""
    out: dict[str, float] = {}
    for rec in metrics.get("records", []):
        if not rec.get("aggregate") or rec.get("split") not in ("val", "test"):
            continue
        base = f"{rec['split']}/{_output(rec)}"
        for name, value in rec.items():
            if isinstance(value, dict) and isinstance(value.get("mean"), int | float):
                for part, suffix in (("mean", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high")):
                    if isinstance(value.get(part), int | float):
                        out[_key(f"{base}/{name}{suffix}")] = float(value[part])
    return out


def tag_items(metrics: dict[str, Any]) -> dict[str, str]:
    """The findings' answers and every comparison's verdict, as MLflow tags."""
    findings = metrics.get("findings") or {}
    tags = {_key(f"finding.{q['id']}"): str(q.get("answer"))
            for q in findings.get("questions", [])}
    if findings.get("overall"):
        tags["finding.overall"] = str(findings["overall"])[:5000]
    for row in metrics.get("comparisons", []):
        output = row["method"] + ("" if row.get("candidate") in (None, "-")
                                  else f"[{row['candidate']}]")
        tags[_key(f"verdict.{output}.{row['kind']}.{row['metric']}")] = str(row["verdict"])
    tags["selfdistill.name"] = str(metrics.get("name", ""))
    return tags


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _BATCH):
        yield items[start:start + _BATCH]


class MlflowTracker:
    """Logs run directories and tuning trials to one MLflow experiment."""

    def __init__(self, settings: MlflowConfig, experiment: str) -> None:
        self.settings = settings
        self.experiment = settings.experiment or experiment
        self._client: Any = None
        self._experiment_id: str | None = None

    # ------------------------------------------------------------ connection

    def _connect(self) -> tuple[Any, str]:
        if self._client is not None and self._experiment_id is not None:
            return self._client, self._experiment_id
        uri = self.settings.uri
        if _is_folder(uri):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # asked for by name
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise ConfigError("--track mlflow needs MLflow: pip install 'selfdistill[mlflow]'"
                              ) from exc
        try:
            client = MlflowClient(tracking_uri=uri)
            found = client.get_experiment_by_name(self.experiment)
            experiment_id = found.experiment_id if found is not None else \
                client.create_experiment(self.experiment, artifact_location=self._artifacts())
        except Exception as exc:  # mlflow raises many kinds; all mean "cannot track here"
            raise TrackingError(f"cannot use the MLflow tracking URI '{uri}': "
                                f"{_first_line(exc)}") from exc
        self._client, self._experiment_id = client, experiment_id
        return client, experiment_id

    def _artifacts(self) -> str | None:
        """Where a new experiment's artifacts go: beside a SQLite database by default."""
        if self.settings.artifact_root is not None:
            return _as_uri(self.settings.artifact_root)
        if self.settings.uri.startswith("sqlite:///"):
            database = Path(self.settings.uri.removeprefix("sqlite:///"))
            return (database.parent / "mlartifacts").resolve().as_uri()
        return None  # a server or a folder decides

    # ------------------------------------------------------------ logging

    def log_run(self, run_dir: str | Path, *, parent_id: str | None = None,
                extra_params: Mapping[str, Any] | None = None) -> str:
        """Log a complete run directory as one MLflow run; returns its run id."""
        path = Path(run_dir)
        metrics = read_metrics(path)
        config = yaml.safe_load((path / CONFIG_FILE).read_text(encoding="utf-8")) or {}
        params = {**flatten(config), **flatten(dict(extra_params or {}))}
        tags = {**tag_items(metrics), "selfdistill.run_dir": str(path.resolve())}
        run_id = self.start(path.name, params=params, tags=tags, parent_id=parent_id)
        self.log_values(run_id, metric_items(metrics))
        self._guard(partial(self._log_artifacts, run_id, path))
        self.finish(run_id)
        log.info("logged %s to MLflow run %s (%s)", path, run_id, self.settings.uri)
        return run_id

    def _log_artifacts(self, run_id: str, path: Path) -> None:
        client, _ = self._connect()
        for name in _ARTIFACTS:
            if (path / name).is_file():
                client.log_artifact(run_id, str(path / name))
        if (path / MODELS_DIR).is_dir():
            client.log_artifacts(run_id, str(path / MODELS_DIR), MODELS_DIR)

    def log_trials(self, parent_id: str, trials: Sequence[Mapping[str, Any]], *,
                   metric: str) -> list[str]:
        """Each tuning trial as a child run of ``parent_id``: its parameters, validation
        value (and per fold, as steps) and state."""
        ids = []
        for trial in trials:
            status = _TRIAL_STATUS.get(str(trial.get("state")), "FAILED")
            run_id = self.start(f"trial-{trial['number']}",
                                params=flatten(dict(trial.get("params") or {})),
                                tags={"selfdistill.trial": str(trial["number"]),
                                      "selfdistill.trial_state": str(trial.get("state"))},
                                parent_id=parent_id)
            for step, value in enumerate(trial.get("fold_values") or []):
                self.log_values(run_id, {f"validation_{metric}_fold": float(value)}, step=step)
            if isinstance(trial.get("value"), int | float):
                self.log_values(run_id, {f"validation_{metric}": float(trial["value"])})
            self.finish(run_id, status)
            ids.append(run_id)
        return ids

    def start(self, name: str, *, params: Mapping[str, str], tags: Mapping[str, str],
              parent_id: str | None = None) -> str:
        """Create a run (a child of ``parent_id`` if given) with its params and tags."""
        client, experiment_id = self._connect()
        all_tags = dict(tags)
        if parent_id is not None:
            all_tags["mlflow.parentRunId"] = parent_id
        run = self._guard(partial(client.create_run, experiment_id, run_name=name,
                                  tags=all_tags))
        run_id = str(run.info.run_id)
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self._guard(partial(client.log_batch, run_id, params=items[start:start + 100]))
        return run_id

    def log_values(self, run_id: str, values: Mapping[str, float], step: int = 0) -> None:
        """Metrics of a run (one step)."""
        from mlflow.entities import Metric

        client, _ = self._connect()
        stamp = int(time.time() * 1000)
        items = [Metric(k, float(v), stamp, step) for k, v in values.items()]
        for batch in _chunks(items):
            self._guard(partial(client.log_batch, run_id, metrics=batch))

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        client, _ = self._connect()
        for key, value in tags.items():
            self._guard(partial(client.set_tag, run_id, key, value))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        client, _ = self._connect()
        self._guard(partial(client.set_terminated, run_id, status=status))

    def _guard(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (ConfigError, TrackingError):
            raise
        except Exception as exc:  # the server, the database or the artifact store failed
            raise TrackingError(f"logging to MLflow at '{self.settings.uri}' failed: "
                                f"{_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _is_folder(uri: str) -> bool:
    return uri.startswith("file:") or ("://" not in uri and not uri.startswith("databricks"))


def _as_uri(location: str) -> str:
    return location if "://" in location else Path(location).resolve().as_uri()

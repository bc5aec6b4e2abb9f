"""Options shared by ``run`` and ``tune``: where cells run, resuming, MLflow tracking.

``--backend``, ``--ray-address`` and ``--track`` are spellings of config keys
(``evaluation.backend``, ``evaluation.ray_address``, ``tracking.mlflow.enabled``): they
become ``--set`` overrides, so they are validated like the file and recorded in the run's
config.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from selfdistill.config import RunConfig
from selfdistill.errors import ConfigError, TrackingError

__all__ = ["BACKEND", "RAY_ADDRESS", "TRACK", "log_run_to_mlflow", "scale_overrides"]

BACKEND = typer.Option(None, "--backend", help="Where the cells run: local (a process "
                       "pool on this machine) or ray (a Ray cluster); default "
                       "evaluation.backend.")
RAY_ADDRESS = typer.Option(None, "--ray-address", help="The Ray cluster: auto (started "
                           "here with `ray start`) or ray://host:port; default: start Ray "
                           "on this machine.")
TRACK = typer.Option(None, "--track", help="Log the run to a tracker: mlflow "
                     "(tracking.mlflow.uri, default sqlite:///mlruns.db).")


def scale_overrides(backend: str | None, ray_address: str | None, track: str | None
                    ) -> list[str]:
    """The ``--set`` overrides these options stand for."""
    out = []
    if backend is not None:
        out.append(f"evaluation.backend={json.dumps(backend)}")
    if ray_address is not None:
        out.append(f"evaluation.ray_address={json.dumps(ray_address)}")
        if backend is None:
            out.append("evaluation.backend=ray")  # an address means Ray
    if track is not None:
        if track != "mlflow":
            raise ConfigError(f"--track '{track}' is not a tracker; the one supported is "
                              "mlflow")
        out.append("tracking.mlflow.enabled=true")
    return out


def log_run_to_mlflow(cfg: RunConfig, run_dir: Path) -> str | None:
    """Log a complete run directory to MLflow when tracking is on; the MLflow run id."""
    if not cfg.tracking.mlflow.enabled:
        return None
    from selfdistill.tracking import MlflowTracker

    try:
        return MlflowTracker(cfg.tracking.mlflow, cfg.name).log_run(run_dir)
    except TrackingError as exc:
        raise TrackingError(f"the run directory '{run_dir}' is complete, but {exc}") from exc

"""``selfdistill tune CONFIG.yaml --trials N``: search ``tune.space``, evaluate the best once."""

from __future__ import annotations

from pathlib import Path

import typer

from selfdistill.cli.scale import BACKEND, RAY_ADDRESS, TRACK, scale_overrides
from selfdistill.config import RunConfig, load_config
from selfdistill.errors import Interrupted, TrackingError

__all__ = ["register"]


def _track(cfg: RunConfig, run_dir: Path, trials: list[dict[str, object]]) -> str | None:
    """The final run as the parent MLflow run, each trial as a child run."""
    if not cfg.tracking.mlflow.enabled:
        return None
    from selfdistill.tracking import MlflowTracker

    tracker = MlflowTracker(cfg.tracking.mlflow, cfg.name)
    try:
        parent = tracker.log_run(run_dir, extra_params={"tune": {"trials": len(trials)}})
        tracker.log_trials(parent, trials, metric=cfg.tune.metric)
    except TrackingError as exc:
        raise TrackingError(f"the run directory '{run_dir}' is complete, but {exc}") from exc
    return parent


def _tune(config: Path, overrides: list[str], trials: int, storage: str | None,
          study_name: str | None, workers: int, out: Path | None, overwrite: bool) -> None:
    cfg = load_config(config, overrides)  # config errors answer before the heavy imports
    from selfdistill.tuning.space import check_space

    check_space(cfg)
    from selfdistill.cli.progress import console, findings_lines, stdout
    from selfdistill.report import write_report
    from selfdistill.rundir.lifecycle import kept_note
    from selfdistill.tuning.study import run_tune

    try:
        result = run_tune(cfg, trials=trials, storage=storage, study_name=study_name,
                          workers=workers, out_dir=out, overwrite=overwrite)
    except KeyboardInterrupt as exc:
        where = "the study keeps its finished trials" if storage else "nothing was kept"
        raise Interrupted(f"interrupted; {kept_note(exc) or where}") from None
    summary, run_dir = result.summary, result.experiment.run_dir
    best = summary["best"]
    counts = ", ".join(f"{n} {state}" for state, n in summary["counts"].items() if n)
    stdout.print(f"{len(summary['trials'])} trials ({counts}); best: trial {best['number']}, "
                 f"validation {summary['study']['metric']} {best['value']:.4f} with "
                 f"{best['params']}", markup=False, highlight=False)
    stdout.print(summary["warning"], markup=False, highlight=False)
    for line in findings_lines(result.experiment.metrics):
        stdout.print(line, markup=False, highlight=False)
    if cfg.report.enabled:
        console.print(f"report: {write_report(run_dir)}")
    console.print(f"run directory: {run_dir}")
    tracked = _track(cfg, run_dir, summary["trials"])
    if tracked is not None:
        console.print(f"mlflow run: {tracked} ({cfg.tracking.mlflow.uri})")


def register(app: typer.Typer) -> None:
    """Add ``tune`` to the app."""

    @app.command("tune")
    def tune(
        config: Path = typer.Argument(..., help="Run config (YAML) with a tune.space section."),
        trials: int = typer.Option(..., "--trials", min=1, help="Trials in the study (in "
                                   "total: a resumed study runs only the missing ones)."),
        storage: str | None = typer.Option(None, "--storage", help="Optuna storage URL, e.g. "
                                           "sqlite:///tune.db (resumable; default: memory)."),
        study_name: str | None = typer.Option(None, "--study-name",
                                              help="Study name (default: the config's name)."),
        workers: int = typer.Option(1, "--workers", min=1, help="Trial loops at once (more "
                                    "than 1 needs --storage)."),
        overrides: list[str] = typer.Option([], "--set", help="Override a config key."),
        out: Path | None = typer.Option(None, "--out", help="Run directory of the final "
                                        "evaluation (default runs/<name>-<timestamp>)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty --out."),
        backend: str | None = BACKEND,
        ray_address: str | None = RAY_ADDRESS,
        track: str | None = TRACK,
    ) -> None:
        """Search tune.space on validation rows; evaluate the best parameters on test once."""
        _tune(config, [*overrides, *scale_overrides(backend, ray_address, track)], trials,
              storage, study_name, workers, out, overwrite)

"""``selfdistill run`` and ``selfdistill demo``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer

from selfdistill.cli.scale import BACKEND, RAY_ADDRESS, TRACK, log_run_to_mlflow, scale_overrides
from selfdistill.config import load_config
from selfdistill.errors import Interrupted

__all__ = ["register"]


def _cells_text(n_cells: int, seeds: int) -> str:
    """'6 cells = 3 folds x 2 seeds' (every fold runs every seed)."""
    folds = n_cells // seeds

    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'s' * (n != 1)}"

    return f"{plural(n_cells, 'cell')} = {plural(folds, 'fold')} x {plural(seeds, 'seed')}"


def _run(config: Path | None, overrides: list[str], out: Path | None, overwrite: bool,
         report: bool, workers: int | None, resume: bool = False) -> None:
    cfg = load_config(config, overrides)  # before the heavy imports: config errors answer at once
    from selfdistill.cli.progress import (
        ProgressCallback,
        console,
        findings_lines,
        progress_callback,
        results_table,
        stdout,
    )
    from selfdistill.evaluation.experiment import run_experiment
    from selfdistill.rundir.lifecycle import kept_note

    try:
        with ProgressCallback.make_progress() as progress:
            result = run_experiment(cfg, out_dir=out, workers=workers, overwrite=overwrite,
                                    callbacks=[progress_callback(progress)], resume=resume)
    except KeyboardInterrupt as exc:  # typer would exit 130 without a word
        raise Interrupted(f"interrupted; {kept_note(exc) or 'no run directory yet'}") from None
    ev = cfg.evaluation
    title = (f"{cfg.name}: {ev.scheme}, {_cells_text(result.n_cells, ev.seeds)}"
             if result.n_cells > 1 else f"{cfg.name}: seed {cfg.seed}")
    for line in findings_lines(result.metrics):  # the answer first, then the table
        stdout.print(line, markup=False, highlight=False)
    stdout.print(results_table(result.metrics, title=title))
    if report and cfg.report.enabled:
        from selfdistill.report import write_report

        path = write_report(run_dir=result.run_dir)
        console.print(f"report: {path}")
    console.print(f"run directory: {result.run_dir}  ({result.seconds:.1f} s)")
    tracked = log_run_to_mlflow(cfg, result.run_dir)
    if tracked is not None:
        console.print(f"mlflow run: {tracked} ({cfg.tracking.mlflow.uri})")


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``demo`` to the app."""

    @app.command("run")
    def run(
        config: Path = typer.Argument(..., help="Run config (YAML)."),
        overrides: list[str] = typer.Option(
            [], "--set", help="Override a config key: --set born_again.generations=8 "
            "(value parsed as YAML; repeatable)."),
        out: Path | None = typer.Option(None, "--out", help="Run directory "
                                        "(default runs/<name>-<timestamp>)."),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="Write into a non-empty --out directory."),
        report: bool = typer.Option(True, "--report/--no-report",
                                    help="Write report.html into the run directory."),
        workers: int | None = typer.Option(None, "--workers", min=1, help="Processes for "
                                           "the folds x seeds cells (default "
                                           "evaluation.workers)."),
        backend: str | None = BACKEND,
        ray_address: str | None = RAY_ADDRESS,
        resume: bool = typer.Option(False, "--resume", help="Continue the unfinished run "
                                    "in --out: its finished cells are kept."),
        track: str | None = TRACK,
    ) -> None:
        """Run every method of a config over its folds x seeds; write a run directory."""
        _run(config, [*overrides, *scale_overrides(backend, ray_address, track)], out,
             overwrite, report, workers, resume)

    @app.command("demo")
    def demo(
        out: Path | None = typer.Option(None, "--out", help="Run directory."),
        overrides: list[str] = typer.Option([], "--set", help="Override a config key."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty --out."),
    ) -> None:
        """Born-Again self-distillation on the synthetic market (no network needed)."""
        with resources.as_file(resources.files("selfdistill") / "configs" / "demo.yaml") as p:
            _run(p, overrides, out, overwrite, report=True, workers=None)

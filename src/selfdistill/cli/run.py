"""``selfdistill run`` and ``selfdistill demo``."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import typer

from selfdistill.config import load_config

__all__ = ["register"]


def _run(config: Path | None, overrides: list[str], out: Path | None, overwrite: bool,
         report: bool) -> None:
    from selfdistill.cli.progress import ProgressCallback, console, results_table, stdout
    from selfdistill.runs import execute

    cfg = load_config(config, overrides)
    t0 = time.perf_counter()
    with ProgressCallback.make_progress() as progress:
        run_dir, metrics = execute(cfg, out, overwrite=overwrite,
                                   callbacks=[ProgressCallback(progress)])
    stdout.print(results_table(metrics["records"], title=f"{cfg.name}: seed {cfg.seed}"))
    if report and cfg.report.enabled:
        from selfdistill.report import write_report

        write_report(run_dir)
    console.print(f"run directory: {run_dir}  ({time.perf_counter() - t0:.1f} s)")


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
    ) -> None:
        """Run every method of a config and write a run directory."""
        _run(config, overrides, out, overwrite, report)

    @app.command("demo")
    def demo(
        out: Path | None = typer.Option(None, "--out", help="Run directory."),
        overrides: list[str] = typer.Option([], "--set", help="Override a config key."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty --out."),
    ) -> None:
        """Born-Again self-distillation on the synthetic market (no network needed)."""
        with resources.as_file(resources.files("selfdistill") / "configs" / "demo.yaml") as p:
            _run(p, overrides, out, overwrite, report=True)

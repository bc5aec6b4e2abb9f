"""``selfdistill report RUN_DIR``: write report.html and summary.md for a run directory."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``report`` to the app."""

    @app.command("report")
    def report(
        run_dir: Path = typer.Argument(..., help="A run directory written by `selfdistill run`."),
    ) -> None:
        """Write a self-contained report.html (and summary.md) from a run directory."""
        from selfdistill.cli.progress import console
        from selfdistill.report import write_report

        path = write_report(run_dir)
        console.print(f"report: {path}")
        console.print(f"summary: {path.with_name('summary.md')}")

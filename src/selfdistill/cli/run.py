"""``selfdistill run`` and ``selfdistill demo``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``demo`` to the app (filled in by the pipeline work)."""

    @app.command("demo")
    def demo() -> None:
        """Run the shipped default config on the synthetic market."""
        raise typer.Exit(1)

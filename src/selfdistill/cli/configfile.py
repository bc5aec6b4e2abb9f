"""``selfdistill init`` and ``selfdistill config show``: start a config, see it resolved.

``init`` writes the commented starter of :mod:`selfdistill.config.starter` (for the
synthetic market, or for a candle file with ``--data``); it never replaces a file
without ``--overwrite``. ``config show`` prints a config with every default written
out, after ``--set`` overrides: what a run would use. Neither imports torch or pandas.
"""

from __future__ import annotations

from pathlib import Path

import typer

from selfdistill.atomic import atomic_write_text
from selfdistill.config import dump_config, load_config
from selfdistill.config.starter import starter_config
from selfdistill.errors import ConfigError

__all__ = ["register"]


def _check_target(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise ConfigError(f"'{path}' is a directory; give a file name such as "
                          f"{path / 'selfdistill.yaml'}")
    if path.exists() and not overwrite:
        raise ConfigError(f"'{path}' already exists; choose another file or pass --overwrite")


def _init(path: Path, data: Path | None, overwrite: bool) -> None:
    if data is not None and not data.is_file():
        raise ConfigError(f"--data '{data}' is not a file; give a CSV or Parquet file of "
                          "candles")
    _check_target(path, overwrite)
    atomic_write_text(path, starter_config(data=data, config_name=str(path)))
    typer.echo(f"wrote {path}; run it with: selfdistill run {path}")


def register(app: typer.Typer) -> None:
    """Add ``init`` and the ``config`` group (``show``) to the app."""

    @app.command("init")
    def init(
        path: Path = typer.Argument(Path("selfdistill.yaml"), help="Config file to write."),
        data: Path | None = typer.Option(None, "--data", help="Candles (CSV or Parquet) to "
                                         "start from (default: the synthetic market)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
    ) -> None:
        """Write a commented starter config."""
        _init(path, data, overwrite)

    config = typer.Typer(help="Inspect run configs.", no_args_is_help=True)

    @config.command("show")
    def show(
        path: Path | None = typer.Argument(None, help="Run config (YAML); none: the "
                                           "defaults."),
        overrides: list[str] = typer.Option(
            [], "--set", help="Override a config key: --set training.lr=0.01 (repeatable)."),
    ) -> None:
        """Print a config resolved: every default filled in, --set applied, validated."""
        typer.echo(dump_config(load_config(path, overrides)), nl=False)

    app.add_typer(config, name="config")

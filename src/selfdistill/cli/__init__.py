"""The ``selfdistill`` command.

Each sub-module owns a group of commands and exposes ``register(app)``.
``main`` runs the app and turns our errors into one clear line and an exit
code: 0 success, 2 usage or config error, 1 data / network / runtime error.
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys

import click
import typer

from selfdistill import __version__
from selfdistill.errors import SelfDistillError

__all__ = ["app", "main"]

app = typer.Typer(
    name="selfdistill",
    help="Train market-regime classifiers and improve them by self-distillation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"selfdistill {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO if verbose
                        else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _register_all() -> None:
    # Each module adds its commands; keep this list sorted.
    from selfdistill.cli import run

    for module in (run,):
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = app(args=args, standalone_mode=False, prog_name="selfdistill")
        return int(result) if isinstance(result, int) else 0
    except SelfDistillError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        if debug:
            raise
        typer.echo(f"error: {exc.format_message()}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # an unexpected bug: one line, traceback with --debug
        if debug:
            raise
        typer.echo(f"error: unexpected {type(exc).__name__}: {exc} "
                   "(run with --debug for the traceback)", err=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

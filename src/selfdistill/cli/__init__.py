"""The ``selfdistill`` command.

Each sub-module owns a group of commands and exposes ``register(app)``.
``main`` runs the app and turns our errors into one clear line and an exit
code: 0 success, 2 usage or config error, 1 data / network / runtime error.
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys

import typer

from selfdistill._version import __version__
from selfdistill.errors import SelfDistillError

__all__ = ["app", "console_main", "main"]

app = typer.Typer(
    name="selfdistill",
    help="Train market-regime classifiers and improve them by self-distillation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO if verbose
                        else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _register_all() -> None:
    # Each module adds its commands; keep this list sorted.
    from selfdistill.cli import data, live, predict, pretrain, report, run

    for module in (data, live, predict, pretrain, report, run):
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code.

    Typer handles usage errors itself (message + exit 2); our own errors become
    one line on stderr with their exit code; anything else is a bug, shown as
    one line (the traceback with ``--debug``).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        app(args=args, prog_name="selfdistill")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except SelfDistillError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, OSError) and exc.filename is not None:
            # the file system said no (a file where a directory goes, permissions, ...)
            typer.echo(f"error: {_os_error(exc)}", err=True)
        else:  # an unexpected bug: one line, traceback with --debug
            typer.echo(f"error: unexpected {type(exc).__name__}: {exc} "
                       "(run with --debug for the traceback)", err=True)
        return 1
    return 0


def _os_error(exc: OSError) -> str:
    """'cannot use PATH: reason (hint)' for an OSError raised by a read or a write."""
    path = exc.filename
    reason = exc.strerror or str(exc)
    hints = {FileExistsError: "a file is in the way of a directory",
             NotADirectoryError: "a file is in the way of a directory",
             IsADirectoryError: "a directory is where a file should be",
             PermissionError: "check the permissions",
             FileNotFoundError: "check the path"}
    hint = next((h for kind, h in hints.items() if isinstance(exc, kind)), None)
    return f"cannot use '{path}': {reason}" + (f" ({hint}; choose another path)" if hint else "")


def console_main() -> None:
    """The ``selfdistill`` console script."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    console_main()

"""The ``selfdistill`` command.

Each sub-module owns a group of commands and exposes ``register(app)``.
``main`` runs the app and turns our errors into one clear line and an exit
code: 0 success, 2 usage or config error, 1 data / network / runtime error.
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable
from typing import Any

import typer
import typer.main

from selfdistill._version import __version__
from selfdistill.errors import SelfDistillError

__all__ = ["app", "console_main", "main"]

app = typer.Typer(
    name="selfdistill",
    help="Train market-regime classifiers and improve them by self-distillation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain help: typer's rich panels show every flag as taking a value ("--overwrite <bool>")
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
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
    from selfdistill.cli import (
        configfile,
        data,
        live,
        predict,
        pretrain,
        report,
        run,
        runs,
        study,
        tune,
    )

    for module in (configfile, data, live, predict, pretrain, report, run, runs, study, tune):
        module.register(app)


_register_all()


@functools.cache
def _command() -> Callable[..., Any]:
    """The click command of ``app``, built once: typer rebuilds it on every ``app()`` call
    (tens of ms), which in-process callers (tests, notebooks) would pay each time."""
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code.

    Typer handles usage errors itself (message + exit 2); our own errors become
    one line on stderr with their exit code; anything else is a bug, shown as
    one line (the traceback with ``--debug``).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        _command()(args=args, prog_name="selfdistill")
    except SystemExit as exc:
        code = exc.code
        if code == 130:  # typer turns a Ctrl-C it catches into a silent exit 130
            typer.echo("interrupted", err=True)
        return code if isinstance(code, int) else (0 if code is None else 1)
    except SelfDistillError as exc:
        if debug:
            raise
        typer.echo(f"error: {_one_line(str(exc))}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:
        if debug:
            raise
        if _out_of_memory(exc):
            typer.echo(f"error: out of memory: {_allocation(exc)}; make the model, "
                       "training.batch_size, the data or evaluation.workers smaller", err=True)
        elif isinstance(exc, OSError) and exc.filename is not None:
            # the file system said no (a file where a directory goes, permissions, ...)
            typer.echo(f"error: {_os_error(exc)}", err=True)
        else:  # an unexpected bug: one line, traceback with --debug
            typer.echo(f"error: unexpected {type(exc).__name__}: {exc} "
                       "(run with --debug for the traceback)", err=True)
        return 1
    return 0


def _one_line(text: str) -> str:
    """The error contract is one line: a newline inside a message (a file name, a quoted
    value) becomes a space."""
    return re.sub(r"\s*[\r\n]+\s*", " ", text.strip())


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation failed: MemoryError (NumPy, Python) or torch's CPU / CUDA allocator."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        words in text for words in ("can't allocate memory", "not enough memory", "out of memory"))


def _allocation(exc: BaseException) -> str:
    """'could not allocate 14.4 GB' from torch's message, else its first line."""
    match = re.search(r"allocate (\d+) bytes", str(exc))
    if match:
        return f"could not allocate {int(match.group(1)) / 1e9:,.1f} GB"
    return _first_line(exc)


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

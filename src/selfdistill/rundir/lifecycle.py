"""An unfinished run directory is marked, a failed one cleaned up.

A run directory is created with an ``INCOMPLETE`` marker (its first line says why the
run is not finished: "running since ...", then the error or "interrupted"), and
:func:`selfdistill.rundir.write.write_run` removes it once every result file is
written. So a run that crashed, ran out of disk, was interrupted or killed leaves a
directory that says so, and the readers (:func:`selfdistill.rundir.read.read_metrics`,
hence ``selfdistill report``) warn about it.

:func:`run_directory` wraps a run: when it fails before any result was written and
it created the directory, the directory is removed (nothing in it can be used), unless
it holds finished cells (:mod:`selfdistill.rundir.cellcache`) and the disk did not fail:
then it is kept, and ``selfdistill run --resume`` redoes only the other cells; otherwise
the directory is kept and marked. Either way the error
says what was kept: a :class:`~selfdistill.errors.SelfDistillError`'s message gets
"; removed ..." / "; kept ..." appended, and any other exception (``KeyboardInterrupt``
included) carries the same text as a note (``exc.__notes__``).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from selfdistill.errors import SelfDistillError
from selfdistill.rundir.layout import CELLS_DIR, INCOMPLETE_FILE, METRICS_FILE, create_run_dir

if TYPE_CHECKING:
    from selfdistill.config import RunConfig

__all__ = ["incomplete_reason", "kept_note", "mark_complete", "mark_incomplete",
           "run_directory"]

log = logging.getLogger(__name__)


def mark_incomplete(run_dir: Path, reason: str) -> None:
    """Write the ``INCOMPLETE`` marker (best effort: a full disk must not hide the error)."""
    with contextlib.suppress(OSError):
        (run_dir / INCOMPLETE_FILE).write_text(reason.strip() + "\n", encoding="utf-8")


def mark_complete(run_dir: Path) -> None:
    """Remove the ``INCOMPLETE`` marker: every result file of the run is written."""
    (run_dir / INCOMPLETE_FILE).unlink(missing_ok=True)


def incomplete_reason(run_dir: str | Path) -> str | None:
    """Why the run in ``run_dir`` is unfinished (the marker's first line), None when it is not."""
    marker = Path(run_dir) / INCOMPLETE_FILE
    if not marker.is_file():
        return None
    try:
        lines = marker.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "unknown reason"
    return lines[0].strip() if lines and lines[0].strip() else "unknown reason"


def kept_note(exc: BaseException) -> str | None:
    """The "removed ... / kept ..." text :func:`run_directory` attached to ``exc``."""
    notes = getattr(exc, "__notes__", None) or []
    return next((n for n in reversed(notes) if n.startswith(("removed ", "kept "))), None)


@contextlib.contextmanager
def run_directory(out: str | Path | None, cfg: RunConfig, *, overwrite: bool = False
                  ) -> Iterator[Path]:
    """Create the run directory (see ``create_run_dir``), marked INCOMPLETE, and guard it.

    On an exception inside the block the run is settled (removed or kept and marked, see
    the module docstring), the error is told what was kept, and it propagates.
    """
    existed = out is not None and Path(out).exists()
    run_dir = create_run_dir(out, cfg, overwrite=overwrite)
    mark_incomplete(run_dir, f"running since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    try:
        yield run_dir
    except BaseException as exc:
        _tell(exc, _settle(run_dir, created=not existed, exc=exc))
        raise


def _settle(run_dir: Path, *, created: bool, exc: BaseException) -> str:
    """Remove or mark the directory of a failed run; return what was kept, in words."""
    # finished cells make the run resumable, unless the disk failed (then free the space)
    cells = not isinstance(exc, OSError) and any((run_dir / CELLS_DIR).glob("*/DONE"))
    if created and not (run_dir / METRICS_FILE).exists() and not cells:
        shutil.rmtree(run_dir, ignore_errors=True)
        if not run_dir.exists():
            log.info("removed the unfinished run directory %s", run_dir)
            return f"removed the unfinished run directory '{run_dir}'"
    why = "interrupted" if isinstance(exc, KeyboardInterrupt) else (
        f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    mark_incomplete(run_dir, f"{why} at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    resume = "; its finished cells are kept: run it again with --resume" if cells else ""
    return f"kept the partial run directory '{run_dir}' (marked {INCOMPLETE_FILE}{resume})"


def _tell(exc: BaseException, kept: str) -> None:
    """Append ``kept`` to a SelfDistillError's one-line message; a note on anything else."""
    if isinstance(exc, SelfDistillError) and exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]}; {kept}", *exc.args[1:])
    exc.add_note(kept)

"""Notice when the model directory a live loop serves has changed, and has settled.

A retrained model arrives in one of two ways: a run rewrites the directory in place
(``selfdistill run --out runs/latest --overwrite``: member files first, ``model.json``
last), or a symlink is pointed at a new directory (``ln -sfn runs/new/models/born_again
current``, atomic). :class:`ModelWatcher` polls a signature of the directory (its resolved
path and the size and modification time of ``model.json`` and every member file) and
reports a change only once the signature has held still for one poll, so a directory
half-way through being written is not loaded. A signature that was refused is not tried
again until it changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

__all__ = ["ModelWatcher", "signature"]

log = logging.getLogger(__name__)

Signature = tuple[str, tuple[tuple[str, int, int], ...]]


def signature(path: Path) -> Signature:
    """(resolved directory, ((file, size, mtime_ns), ...)) of a model directory."""
    resolved = path.resolve()
    files = []
    try:
        entries = sorted(resolved.iterdir())
    except OSError:
        return str(resolved), ()
    for entry in entries:
        if entry.name == "model.json" or entry.name.startswith("member_"):
            try:
                stat = entry.stat()
            except OSError:  # removed while we looked: the signature will change again
                continue
            files.append((entry.name, stat.st_size, stat.st_mtime_ns))
    return str(resolved), tuple(files)


class ModelWatcher:
    """Says when the model directory holds a new, settled set of files.

    Args:
        locate: returns the model directory to look at now (it may resolve a run
            directory or a symlink anew on every poll).
    """

    def __init__(self, locate: Callable[[], Path]) -> None:
        self.locate = locate
        self.serving = self._look()
        self._seen = self.serving
        self._refused: Signature | None = None

    def _look(self) -> Signature:
        try:
            return signature(self.locate())
        except Exception as exc:  # the directory is being replaced: try again next poll
            log.debug("cannot read the model directory now: %s", exc)
            return ("", ())

    def poll(self) -> Path | None:
        """The directory to load when it changed and held still since the last poll."""
        now = self._look()
        settled = now == self._seen
        self._seen = now
        if not settled or not now[1] or now in (self.serving, self._refused):
            return None
        return Path(now[0])

    def accepted(self) -> None:
        """The directory last returned by :meth:`poll` now serves."""
        self.serving = self._seen

    def refused(self) -> None:
        """The directory last returned by :meth:`poll` was refused: wait for a new change."""
        self._refused = self._seen

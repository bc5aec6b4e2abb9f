"""Where live signal lines go: standard output and / or a file, one JSON object a line.

A file is opened for appending and every line is written whole with one ``write`` and
fsynced before the next candle is processed, so a crash loses at most the line being
written and never leaves two lines interleaved. A torn last line (the process was
killed mid-write) is completed with a newline before anything is appended, and
:func:`last_open_time` skips it, so a restarted ``selfdistill live --out FILE`` resumes
after the last candle the file holds whole (no candle missed or written twice).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from selfdistill.errors import StorageError

__all__ = ["SignalSink", "last_open_time"]

log = logging.getLogger(__name__)

_TAIL = 1 << 16  # bytes read from the end of a file to find its last line


def _storage_error(message: str, exc: OSError, path: Path | None) -> StorageError:
    err = StorageError(message)
    err.errno, err.strerror, err.filename = exc.errno, exc.strerror, str(path)
    return err


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"


class SignalSink:
    """Writes each signal to standard output (``stdout``) and to ``path`` (fsync per line).

    Attributes:
        latest: the last record written (what ``GET /signal`` answers), or None.
        lines: lines written since start.
    """

    def __init__(self, path: Path | None = None, *, stdout: bool = True) -> None:
        self.path, self.stdout = path, stdout
        self.latest: dict[str, Any] | None = None
        self.lines = 0
        self._fd: int | None = None
        if path is not None:
            self._fd = self._open(path)

    @staticmethod
    def _open(path: Path) -> int:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            size = os.fstat(fd).st_size
            if size:
                with open(path, "rb") as handle:
                    handle.seek(size - 1)
                    if handle.read(1) != b"\n":  # a torn last line: close it
                        os.write(fd, b"\n")
        except OSError as exc:
            raise _storage_error(f"cannot append to --out '{path}': {exc.strerror or exc}; "
                                 "choose another path", exc, path) from exc
        return fd

    def write(self, record: dict[str, Any]) -> None:
        """Write one record; raise StorageError when the file or standard output fails."""
        line = _line(record)
        if self._fd is not None:
            try:
                os.write(self._fd, line.encode())
                os.fsync(self._fd)
            except OSError as exc:
                raise _storage_error(f"cannot write to --out '{self.path}': "
                                     f"{exc.strerror or exc}; the lines before are kept", exc,
                                     self.path) from exc
        if self.stdout:
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except (BrokenPipeError, ValueError) as exc:
                raise StorageError("standard output was closed (a pipe reader exited?); "
                                   "use --out FILE to keep the signals") from exc
        self.latest = record
        self.lines += 1

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def last_open_time(path: Path) -> pd.Timestamp | None:
    """The ``open_time`` of the last whole line of a signal file (None: none or no file)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL))
            tail = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _storage_error(f"cannot read --out '{path}': {exc.strerror or exc}", exc,
                             path) from exc
    lines = tail.split(b"\n")
    whole = lines[:-1]  # the piece after the last newline is torn (or empty)
    if lines[-1]:
        log.warning("%s ends with a torn line (%d bytes); it is ignored", path, len(lines[-1]))
    for raw in reversed(whole):
        try:
            return pd.Timestamp(json.loads(raw)["open_time"])
        except (ValueError, KeyError, TypeError):
            continue
    return None

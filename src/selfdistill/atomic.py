"""Atomic file writes: the one helper every file selfdistill writes goes through.

:func:`atomic_write` writes to a hidden temporary file in the destination's folder
(``.<name>.<random>.tmp``), fsyncs it, renames it over the destination and fsyncs the
folder. A reader (or a crash, or ``kill -9``) therefore sees the old file or the new
one, never half of either. When the write fails (disk full, quota, permissions, a
read-only file system) the temporary file is removed, the destination is left as it
was, and the failure is one :class:`~selfdistill.errors.StorageError` naming the path,
the reason and what was kept, instead of an anonymous ``OSError``.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_bytes(folder / "a.txt", b"hello").read_bytes()
    b'hello'
    >>> sorted(p.name for p in folder.iterdir())  # no temporary file left behind
    ['a.txt']
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from selfdistill.errors import StorageError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "finish_temp",
           "storage_error", "temp_path"]

_REASONS = {
    errno.ENOSPC: ("no space left on device", "free some disk space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or raise the quota"),
    errno.EROFS: ("the file system is read-only", "write somewhere else"),
    errno.EACCES: ("permission denied", "check the permissions or write somewhere else"),
    errno.EPERM: ("operation not permitted", "check the permissions or write somewhere else"),
    errno.EISDIR: ("a directory is in the way", "choose another path"),
    errno.ENOTDIR: ("a file is in the way of a folder", "choose another path"),
}


def temp_path(path: Path) -> Path:
    """The hidden temporary name :func:`atomic_write` writes before renaming."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def storage_error(path: Path, exc: OSError, *, existed: bool | None = None) -> StorageError:
    """One-line error for a failed write of ``path``: reason, what was kept, the fix."""
    reason, fix = _REASONS.get(exc.errno or 0, (exc.strerror or str(exc) or "write failed",
                                                "check the disk and the path"))
    if existed is None:
        existed = path.exists()
    kept = (f"the previous '{path.name}' is unchanged" if existed
            else f"no '{path.name}' was written")
    err = StorageError(f"cannot write '{path}': {reason}; {kept}; {fix} and run again")
    err.errno, err.strerror, err.filename = exc.errno, reason, str(path)
    return err


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically; ``write(tmp)`` writes the content to the path it is given.

    Missing parent folders are created. Returns ``path``.

    Raises:
        StorageError: the write, the fsync or the rename failed (disk full, permissions,
            ...); the temporary file is gone and ``path`` is as it was.
    """
    path = Path(path)
    existed = path.exists()
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if isinstance(exc, StorageError):
            raise
        raise storage_error(path, exc, existed=existed) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    _fsync_folder(path.parent)
    return path


def finish_temp(tmp: Path, path: Path) -> Path:
    """Finish a file written piece by piece to ``tmp`` (:func:`temp_path` of ``path``):
    fsync it and rename it over ``path``, as :func:`atomic_write` does.

    Raises:
        StorageError: the fsync or the rename failed; ``tmp`` is removed.
    """
    existed = path.exists()
    try:
        _fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise storage_error(path, exc, existed=existed) from exc
    _fsync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: _write_bytes(tmp, data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; not every file system lets a folder be fsynced."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

"""The one atomic-write helper: used by every writer; a full disk is one clear line."""

from __future__ import annotations

import errno
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from selfdistill import atomic
from selfdistill.atomic import atomic_write, atomic_write_bytes
from selfdistill.cli import main
from selfdistill.data.files import save_candles
from selfdistill.data.synthetic import generate_market
from selfdistill.errors import SelfDistillError, StorageError
from tiny_experiment import TINY_RUN

SRC = Path(__file__).resolve().parents[1] / "src" / "selfdistill"


def _disk_full(when: str) -> object:
    """A replacement for the helper's byte writer that fails like a full disk on ``when``."""
    real = atomic._write_bytes

    def write(path: Path, data: bytes) -> None:
        if when in path.name:
            path.write_bytes(data[: len(data) // 2])  # a half-written temporary file
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    return write


def _debris(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_every_writer_goes_through_the_one_helper() -> None:
    # issue 12: nine hand-written temp-file-and-rename writes in seven files became one helper
    offenders = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "atomic.py":
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"os\.replace\(|\.replace\(\s*(out|path|file|weights)\b|"
                     r"with_name\([^)]*\.tmp", text):
            offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "x.json"
    atomic_write_bytes(target, b"one")
    atomic_write(target, lambda tmp: tmp.write_text("two"))
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]


def test_atomic_write_fsyncs_the_file_and_the_folder(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = atomic.os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    atomic_write_bytes(tmp_path / "a", b"data")
    assert len(synced) == 2  # the temporary file before the rename, the folder after


@pytest.mark.parametrize("existed", [False, True])
def test_a_full_disk_is_one_line_naming_the_path_and_what_was_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existed: bool) -> None:
    target = tmp_path / "metrics.json"
    if existed:
        target.write_text("old")
    monkeypatch.setattr(atomic, "_write_bytes", _disk_full("metrics.json"))
    with pytest.raises(StorageError) as info:
        atomic_write_bytes(target, b"x" * 1000)
    text = str(info.value)
    assert "\n" not in text
    assert str(target) in text
    assert "no space left on device" in text
    assert ("previous 'metrics.json' is unchanged" if existed else
            "no 'metrics.json' was written") in text
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value, OSError)  # callers that handle OSError still do
    assert (target.read_text() == "old") if existed else not target.exists()
    assert _debris(tmp_path) == []


def test_a_failing_writer_callback_leaves_no_debris(tmp_path: Path) -> None:
    def write(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(StorageError, match="permission denied"):
        atomic_write(tmp_path / "out.parquet", write)
    assert list(tmp_path.iterdir()) == []


def test_run_on_a_full_disk_says_which_file_and_leaves_nothing_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # issue 13 item 5: was "unexpected OSError" without a path, and metrics.json.tmp stayed
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    monkeypatch.setattr(atomic, "_write_bytes", _disk_full("metrics.json"))
    out = tmp_path / "runs" / "r1"
    assert main(["run", str(config), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    errors = [e for e in err if not e.startswith("[")]  # besides the plain progress lines
    assert errors == [err[-1]], err
    line = err[-1]
    assert line.startswith("error: cannot write ")
    assert str(out / "metrics.json") in line
    assert "no space left on device" in line
    assert f"removed the unfinished run directory '{out}'" in line
    assert not out.exists()
    assert _debris(tmp_path) == []


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (needs root and mount rights; skipped where that is impossible)."""
    mount = tmp_path / "full"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                              capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot run mount here")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace')[:80]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, timeout=10, check=False)


def test_a_really_full_file_system_keeps_the_old_file(tiny_tmpfs: Path) -> None:
    candles, _ = generate_market(300, seed=1)
    target = tiny_tmpfs / "candles.csv"
    save_candles(candles, target)
    before = target.read_bytes()
    big = generate_market(20_000, seed=2)[0]  # ~2 MB of CSV: cannot fit
    with pytest.raises(SelfDistillError, match=r"no space left on device"):
        save_candles(big, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["candles.csv"]
    assert np.isfinite(pd.read_csv(target)["close"]).all()

"""Memory at scale: peak RAM per bar and time per million bars of a whole synthetic run.

Each size is one whole ``selfdistill run`` process on synthetic one-minute bars (10M
bars are 19 years), with the default methods, one epoch, one worker and the report,
as a user would run it. The peak is the process's maximum resident set
(``ru_maxrss``: interpreter, torch and every array included), divided by the bars;
"above start-up" subtracts what the same process holds after its imports, which is
what grows with the data. Time is the process's wall and CPU seconds per million bars.

With ``--against REF`` every size is also run with the source of git revision REF
(a temporary worktree; same interpreter and packages), alternating the two so that
both see the same machine, and the ratios new / old are printed. The target
(issue 16): at most 300 bytes per bar at 10M bars, and no more than 10% slower.

    .venv/bin/python benchmarks/bench_memory.py [--bars 1e6,4e6,1e7] [--against REF]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_BYTES_PER_BAR = 300
TARGET_BARS = 10_000_000
TARGET_SLOWDOWN = 1.10
#: Resident set after ``import selfdistill.evaluation.experiment`` (what every run holds
#: before its first bar), measured once per source tree.
_STARTUP = ("import resource, selfdistill.evaluation.experiment, selfdistill.report; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")

CONFIG = """\
name: memory
seed: 0
data:
  source: synthetic
  synthetic: {{n_bars: {bars}, interval: "1"}}
training: {{epochs: 1, batch_size: 1024, patience: 1}}
born_again: {{generations: 2}}
evaluation: {{workers: 1}}
"""


@dataclass
class Measure:
    bars: int
    peak_bytes: int
    wall_s: float
    cpu_s: float
    rc: int


def run_once(src: Path, bars: int, folder: Path, tag: str) -> Measure:
    """One whole ``selfdistill run`` with the package imported from ``src``."""
    config = folder / f"{tag}-{bars}.yaml"
    config.write_text(CONFIG.format(bars=bars))
    out = folder / f"{tag}-{bars}-run"
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "selfdistill", "run", str(config),
                             "--out", str(out), "--overwrite"], env=env, cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        print(f"  {tag} {bars:,} bars failed (exit {rc}): {err.decode()[-2000:]}",
              file=sys.stderr)
    return Measure(bars, usage.ru_maxrss * 1024, wall, usage.ru_utime + usage.ru_stime, rc)


def startup_bytes(src: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", _STARTUP], env=env, check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[-1]) * 1024


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """The source folder of git revision ``ref``, checked out in a temporary worktree."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-ref-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=ROOT,
                       check=True, capture_output=True)
        try:
            yield path / "src"
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT,
                           check=False, capture_output=True)


def line(tag: str, m: Measure, base: int) -> str:
    per_m = m.bars / 1e6
    return (f"  {tag:<5} {m.bars:>11,} bars  peak {m.peak_bytes / 2**20:8.0f} MiB  "
            f"{m.peak_bytes / m.bars:7.0f} B/bar  ({(m.peak_bytes - base) / m.bars:5.0f} above "
            f"start-up)  {m.wall_s / per_m:6.1f} s wall, {m.cpu_s / per_m:6.1f} s CPU per M bars"
            + ("" if m.rc == 0 else f"  FAILED (exit {m.rc})"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", default="1e6,4e6,1e7",
                        help="comma-separated sizes (default 1e6,4e6,1e7)")
    parser.add_argument("--against", default=None,
                        help="a git revision to compare with (run alternately, same machine)")
    args = parser.parse_args(argv)
    sizes = [int(float(b)) for b in args.bars.split(",")]
    trees = {"new": ROOT / "src"}
    with contextlib.ExitStack() as stack:
        if args.against:
            trees["old"] = stack.enter_context(worktree(args.against))
        base = {tag: startup_bytes(src) for tag, src in trees.items()}
        for tag, b in base.items():
            print(f"start-up ({tag}): {b / 2**20:.0f} MiB resident after the imports")
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-memory-")))
        failed = False
        for bars in sizes:
            print(f"{bars:,} bars (one-minute synthetic, default methods, 1 epoch, report):")
            got = {}
            for tag, src in trees.items():
                got[tag] = run_once(src, bars, folder, tag)
                print(line(tag, got[tag], base[tag]), flush=True)
                failed |= got[tag].rc != 0
            if "old" in got and got["old"].rc == 0 and got["new"].rc == 0:
                new, old = got["new"], got["old"]
                print(f"  new / old: memory {new.peak_bytes / old.peak_bytes:.2f}x, wall "
                      f"{new.wall_s / old.wall_s:.2f}x, CPU {new.cpu_s / old.cpu_s:.2f}x "
                      f"(target <= {TARGET_SLOWDOWN:.2f}x)")
        last = got["new"]
        verdict = last.peak_bytes / last.bars <= TARGET_BYTES_PER_BAR
        if last.bars >= TARGET_BARS:
            print(f"target <= {TARGET_BYTES_PER_BAR} B/bar at {last.bars:,} bars: "
                  f"{'met' if verdict else 'MISSED'} ({last.peak_bytes / last.bars:.0f} B/bar)")
        else:  # below 10M bars the fixed start-up (~390 MB) and allocator slack dominate
            print(f"(the {TARGET_BYTES_PER_BAR} B/bar target is for {TARGET_BARS:,} bars)")
            verdict = True
    return 1 if failed or not verdict else 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())

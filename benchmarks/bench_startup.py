"""Start-up: how long the `selfdistill` command takes to answer a usage or config error.

Each case is a whole process (``python -m selfdistill ...``, interpreter start-up and
imports included), run ``--repeats`` times; prints the median and the slowest, the exit
code, the process's own CPU time and whether the median meets the target (1.5 s: a user
who mistypes should not wait for torch to load). On a shared machine wall time grows
with the load; the CPU column does not. Cases: a missing file, a misspelt key, a name
that is a path, a 396-byte "billion laughs" file, a binary file, a typer usage error,
``--help`` and ``config show``. Exits 1 when a median misses the target.

    .venv/bin/python benchmarks/bench_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 1.5



def billion_laughs() -> str:
    """The classic: 9 lines of 9 aliases each, 9**9 (387 million) strings when expanded."""
    lines = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def cases(folder: Path) -> dict[str, list[str]]:
    """Name -> arguments; the files they read are written into ``folder``."""
    (folder / "typo.yaml").write_text("training:\n  epoch: 3\n")
    (folder / "laughs.yaml").write_text(billion_laughs())
    (folder / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    return {
        "run missing.yaml": ["run", str(folder / "missing.yaml")],
        "run typo.yaml (training.epoch)": ["run", str(folder / "typo.yaml")],
        "run --set name=../../x": ["run", str(folder / "typo.yaml"), "--set", "name=../../x"],
        "run laughs.yaml (billion laughs)": ["run", str(folder / "laughs.yaml")],
        "run binary.yaml": ["run", str(folder / "binary.yaml")],
        "run (no config: usage error)": ["run"],
        "fetch --interval 7": ["fetch", "--symbol", "BTCUSDT", "--interval", "7",
                               "--start", "2024-01-01"],
        "--help": ["--help"],
        "config show (defaults)": ["config", "show"],
    }


def time_once(args: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the child process, exit code)."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "selfdistill", *args], capture_output=True,
                          check=False)
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return wall, cpu, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    repeats = parser.parse_args().repeats
    missed = []
    print(f"{'case':<36} {'median s':>9} {'max s':>7} {'cpu s':>6} {'exit':>5}  "
          f"target {TARGET_S} s (median wall)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in cases(Path(tmp)).items():
            runs = [time_once(args) for _ in range(repeats)]
            wall = [w for w, _, _ in runs]
            median = statistics.median(wall)
            cpu = statistics.median(c for _, c, _ in runs)
            ok = median <= TARGET_S
            missed += [] if ok else [name]
            print(f"{name:<36} {median:9.2f} {max(wall):7.2f} {cpu:6.2f} {runs[-1][2]:5d}  "
                  f"{'ok' if ok else 'MISSED'}")
    print(f"{repeats} runs per case; {'all within' if not missed else 'missed:'} "
          f"{', '.join(missed) if missed else f'the {TARGET_S} s target'}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (cpu s: the process's own "
          "CPU time, which load does not inflate)")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()

"""Report time: how long `selfdistill report RUN_DIR` takes on the demo's run directory.

The whole process is timed (``python -m selfdistill report DIR``: interpreter start-up,
imports, reading the run directory, every figure and table, writing report.html and
summary.md), ``--repeats`` times; prints the median and the slowest wall time, the
median CPU time of the process, and whether the median meets the target (3 s). On a
shared machine wall time grows with the load; the CPU column does not. Then, in this
process, where the time goes: imports, reading, each section, the summary.

Without ``--run-dir`` the demo is run first (``selfdistill demo``, about a minute) into a
temporary folder. Exits 1 when the median misses the target.

    .venv/bin/python benchmarks/bench_report.py [--run-dir runs/demo] [--repeats 7]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 3.0


def time_once(run_dir: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `selfdistill report` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "selfdistill", "report", str(run_dir)],
                   capture_output=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def breakdown(run_dir: Path) -> list[tuple[str, float]]:
    """CPU seconds of each step, measured in this process (imports first, so cold)."""
    clock = time.process_time
    steps: list[tuple[str, float]] = []
    t = clock()
    import selfdistill.report as report
    from selfdistill.report.sections import BUILDERS, SECTION_IDS

    steps.append(("import selfdistill.report (pandas, matplotlib)", clock() - t))
    t = clock()
    run = report.load_run(run_dir)
    steps.append(("read the run directory", clock() - t))
    for sid, _ in SECTION_IDS:
        t = clock()
        BUILDERS[sid](run)
        steps.append((f"section {sid}", clock() - t))
    t = clock()
    report.render_markdown(run)
    steps.append(("summary.md", clock() - t))
    return steps


def demo_run(folder: Path) -> Path:
    out = folder / "demo"
    print(f"running the demo into {out} (about a minute) ...", flush=True)
    subprocess.run([sys.executable, "-m", "selfdistill", "demo", "--out", str(out)],
                   capture_output=True, check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="a run directory (default: run the demo into a temporary one)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or demo_run(Path(tmp))
        runs = [time_once(run_dir) for _ in range(args.repeats)]
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        ok = wall <= TARGET_S
        print(f"selfdistill report {run_dir}: median {wall:.2f} s, max "
              f"{max(w for w, _ in runs):.2f} s, CPU {cpu:.2f} s over {args.repeats} runs; "
              f"target {TARGET_S:.1f} s (median wall): {'met' if ok else 'MISSED'}")
        print("\nwhere the time goes (CPU seconds, one run in this process):")
        for name, seconds in breakdown(run_dir):
            print(f"  {name:<48} {seconds:6.2f}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()

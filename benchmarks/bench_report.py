"""Report time: how long `selfdistill report RUN_DIR` takes on the demo's run directory.

The whole process is timed (``python -m selfdistill report DIR``: interpreter start-up,
imports, reading the run directory, every figure and table, writing report.html and
summary.md), ``--repeats`` times; prints the median and the slowest wall time, the
median CPU time of the process, whether the median meets the target (3 s), and the
process's peak resident memory (``ru_maxrss``) with what it holds above a process that
only imports the report (what grows with the run: divide by its bars). On a
shared machine wall time grows with the load; the CPU column does not. Then, in this
process, where the time goes: imports, reading, each section, the summary.

Without ``--run-dir`` the demo is run first (``selfdistill demo``, about a minute) into a
temporary folder. Exits 1 when the median misses the target.

    .venv/bin/python benchmarks/bench_report.py [--run-dir runs/demo] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 3.0


def time_once(run_dir: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak resident MB) of one `selfdistill report` process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "selfdistill", "report", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"selfdistill report {run_dir} failed: {err.decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def import_peak_mb() -> float:
    """Peak resident MB of a process that only imports what the report command imports."""
    code = ("import resource, selfdistill.cli, selfdistill.report; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                         text=True)
    return int(out.stdout) / 1024


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
        wall = statistics.median(w for w, _, _ in runs)
        cpu = statistics.median(c for _, c, _ in runs)
        peak = statistics.median(m for _, _, m in runs)
        ok = wall <= TARGET_S
        print(f"selfdistill report {run_dir}: median {wall:.2f} s, max "
              f"{max(w for w, _, _ in runs):.2f} s, CPU {cpu:.2f} s over {args.repeats} runs; "
              f"target {TARGET_S:.1f} s (median wall): {'met' if ok else 'MISSED'}")
        print(f"peak resident memory {peak:.0f} MB, {peak - import_peak_mb():.0f} MB above "
              "the imports")
        print("\nwhere the time goes (CPU seconds, one run in this process):")
        for name, seconds in breakdown(run_dir):
            print(f"  {name:<48} {seconds:6.2f}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()

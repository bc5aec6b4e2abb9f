"""Speed-up of the experiment with 2 worker processes vs 1, measured in one run.

    .venv/bin/python benchmarks/bench_workers.py [--config configs/walk_forward.yaml]
                                                 [--set evaluation.seeds=2 ...]

Runs the shipped walk-forward experiment (folds x seeds cells, every method
retrained per cell; another config with ``--config``) with ``workers=1`` (in
this process) and ``workers=2`` (spawn pool); every cell uses one torch thread
either way (``evaluation.CELL_THREADS``). Prints both wall times, the speed-up,
and whether the two runs produced the same test accuracies. Worker start-up
(importing torch in each spawned process) is included: it is what a user pays.
On a machine shared with other jobs the ratio moves with their load; the
script prints the load average and, for scale, the speed-up two processes get
on a pure-Python loop at the same time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from selfdistill.config import load_config
from selfdistill.evaluation import run_experiment

SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "walk_forward.yaml"


def bench_config(path: Path, overrides: list[str]) -> Any:
    return load_config(path, overrides)


def _spin(n: int) -> float:
    t0 = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i
    return time.perf_counter() - t0


def free_core_ratio(n: int = 10_000_000, jobs: int = 4) -> float:
    """Speed-up of 2 spawn processes over 1 on a pure-Python loop: the cores really free now."""
    t0 = time.perf_counter()
    for _ in range(jobs):
        _spin(n)
    one = time.perf_counter() - t0
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_spin, [1] * 2))  # start both processes before timing
        t0 = time.perf_counter()
        list(pool.map(_spin, [n] * jobs))
        two = time.perf_counter() - t0
    return one / two


def _accuracies(metrics: dict[str, Any]) -> dict[tuple[Any, ...], float]:
    return {(r["method"], r.get("generation"), r["fold"], r["seed"]): r["accuracy"]
            for r in metrics["records"]
            if r["split"] == "test" and not r.get("aggregate") and "accuracy" in r}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=SHIPPED)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override, e.g. --set evaluation.seeds=2")
    args = parser.parse_args()
    cfg = bench_config(args.config, args.overrides)
    ev = cfg.evaluation
    cells = ev.folds * ev.seeds
    print(f"{args.config.name}: {cells} cells ({ev.folds} folds x {ev.seeds} seeds), "
          f"methods {', '.join(cfg.methods)}; cpus: {os.cpu_count()}, "
          f"load average before: {os.getloadavg()[0]:.1f}")
    seconds: dict[int, float] = {}
    accuracy: dict[int, dict[tuple[Any, ...], float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: imports and first-call costs of this process are not the pool's merit
        warm = bench_config(args.config, [*args.overrides, "evaluation.seeds=1",
                                          "evaluation.folds=1", "evaluation.scheme=holdout"])
        run_experiment(warm, out_dir=Path(tmp) / "warm", workers=1)
        for workers in (1, 2):
            t0 = time.perf_counter()
            result = run_experiment(cfg, out_dir=Path(tmp) / f"w{workers}", workers=workers)
            seconds[workers] = time.perf_counter() - t0
            accuracy[workers] = _accuracies(result.metrics)
            print(f"workers={workers}: {seconds[workers]:7.1f} s  "
                  f"({seconds[workers] / cells:5.2f} s per cell; "
                  f"load average {os.getloadavg()[0]:.1f})")
    ratio = free_core_ratio()
    gap = max(abs(accuracy[1][k] - accuracy[2][k]) for k in accuracy[1])
    print(f"speed-up 2 workers vs 1: {seconds[1] / seconds[2]:.2f}x "
          f"(ideal 2x; worker start-up, about one torch import each, is included)")
    print(f"for scale, 2 processes vs 1 on a pure-Python loop right now: {ratio:.2f}x "
          "(below 2x = other jobs hold the cores)")
    print(f"largest test-accuracy difference between the runs: {gap:.4f}")

if __name__ == "__main__":
    main()

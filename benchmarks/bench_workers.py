"""Speed-up of the experiment with 2 worker processes vs 1, measured in one run.

    .venv/bin/python benchmarks/bench_workers.py [--bars 3000] [--folds 2] [--seeds 2]

Runs the same small walk-forward experiment (folds x seeds cells, every method
retrained per cell) with ``workers=1`` (in process) and ``workers=2`` (spawn
pool, one torch thread per worker), prints both wall times, the speed-up, and
whether the two runs produced the same test accuracies. Worker start-up
(importing torch in each spawned process) is included: it is what a user pays.
On a machine shared with other jobs the ratio moves with their load; the
script prints the load average next to the numbers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from selfdistill.config import parse_config
from selfdistill.evaluation import run_experiment


def bench_config(bars: int, folds: int, seeds: int) -> Any:
    return parse_config({
        "name": "bench_workers", "device": "cpu",
        "data": {"synthetic": {"n_bars": bars}},
        "model": {"hidden": [32, 32]},
        "training": {"epochs": 8, "patience": 0},
        "methods": ["baseline", "born_again", "lightgbm"],
        "born_again": {"generations": 2},
        "lightgbm": {"n_estimators": 100},
        "evaluation": {"scheme": "walk_forward", "folds": folds, "seeds": seeds,
                       "bootstrap": 500},
    })


def _accuracies(metrics: dict[str, Any]) -> dict[tuple[Any, ...], float]:
    return {(r["method"], r.get("generation"), r["fold"], r["seed"]): r["accuracy"]
            for r in metrics["records"]
            if r["split"] == "test" and not r.get("aggregate") and "accuracy" in r}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=3000)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    cfg = bench_config(args.bars, args.folds, args.seeds)
    cells = args.folds * args.seeds
    print(f"cells: {cells} ({args.folds} folds x {args.seeds} seeds), {args.bars} bars, "
          f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}")
    seconds, accuracy = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            t0 = time.perf_counter()
            result = run_experiment(cfg, out_dir=Path(tmp) / f"w{workers}", workers=workers)
            seconds[workers] = time.perf_counter() - t0
            accuracy[workers] = _accuracies(result.metrics)
            print(f"workers={workers}: {seconds[workers]:7.1f} s  "
                  f"({seconds[workers] / cells:5.1f} s per cell; "
                  f"load average {os.getloadavg()[0]:.1f})")
    gap = max(abs(accuracy[1][k] - accuracy[2][k]) for k in accuracy[1])
    print(f"speed-up 2 workers vs 1: {seconds[1] / seconds[2]:.2f}x")
    print(f"largest test-accuracy difference between the runs: {gap:.4f}")


if __name__ == "__main__":
    main()

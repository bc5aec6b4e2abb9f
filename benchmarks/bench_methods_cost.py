"""Cost of snapshot distillation vs Born-Again for comparable accuracy, on the same data.

Both methods train on one split of the default synthetic market with the same
backbone, batch size and optimizer, in one process. For each method the
members (generations / snapshots) and the running ensembles of the members so
far are scored on validation rows, with the wall time and epochs spent to
reach them. The level to reach is the worse of the two methods' best validation
accuracies (and, separately, NLLs), so both reach it; the ratio of the costs at
which each first does is the headline. Test rows are read once, for the
selected members.

Member times are training wall times (snapshot's include computing each cycle's
cached soft targets); "whole run" times wrap the method call.

Usage: python benchmarks/bench_methods_cost.py [--bars 20000] [--generations 3]
       [--cycles 4] [--epochs-per-cycle 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from selfdistill.config import RunConfig, parse_config
from selfdistill.evaluation.fold import build_dataset, holdout_split, load_candles, make_train_data
from selfdistill.methods import Lineage, TrainData
from selfdistill.methods.born_again import fit_born_again
from selfdistill.methods.snapshot import fit_snapshot
from selfdistill.training.loop import make_optimizer


@dataclass
class Point:
    """One scored model: a member or the running ensemble, and the cost to get there."""

    name: str
    val_accuracy: float
    val_nll: float
    seconds: float
    epochs: int


def _config(args: argparse.Namespace) -> RunConfig:
    return parse_config({
        "seed": args.seed, "device": "cpu",
        "data": {"synthetic": {"n_bars": args.bars}},
        "training": {"epochs": 30, "patience": 5},
        "born_again": {"generations": args.generations},
        "snapshot": {"cycles": args.cycles, "epochs_per_cycle": args.epochs_per_cycle},
    })


def _score(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    p = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    return float((probs.argmax(1) == y).mean()), float(-np.log(p).mean())


def _points(lineage: Lineage, data: TrainData, label: str) -> list[Point]:
    """Every member and the ensemble of the members so far, with cumulative cost."""
    y = data.y[data.val_rows].numpy()
    points, probs, seconds, epochs = [], [], 0.0, 0
    for member in lineage.members:
        probs.append(member.predict_proba(data.x, data.val_rows))
        seconds += member.info["seconds"]
        epochs += member.info["epochs"]
        name = ",".join(f"{k}={v}" for k, v in member.keys.items() if k != "cycle")
        points.append(Point(f"{label} {name}", *_score(probs[-1], y), seconds, epochs))
        if len(probs) > 1:
            points.append(Point(f"{label} ensemble of {len(probs)}",
                                *_score(np.mean(probs, axis=0), y), seconds, epochs))
    return points


def _first_reaching(points: list[Point], target: float, metric: str) -> Point:
    """First point at least as good as ``target`` (accuracy: higher, NLL: lower is better)."""
    if metric == "accuracy":
        return next(p for p in points if p.val_accuracy >= target - 1e-12)
    return next(p for p in points if p.val_nll <= target + 1e-12)


def _compare(points: dict[str, list[Point]], metric: str) -> None:
    """Cost at which each method first reaches the worse of the two methods' best."""
    if metric == "accuracy":
        target = min(max(p.val_accuracy for p in pts) for pts in points.values())
        print(f"\ncomparable accuracy: validation accuracy >= {target:.4f}")
    else:
        target = max(min(p.val_nll for p in pts) for pts in points.values())
        print(f"\ncomparable NLL: validation NLL <= {target:.4f}")
    reach = {label: _first_reaching(pts, target, metric) for label, pts in points.items()}
    for label, p in reach.items():
        print(f"  {label:11s} first at {p.name!r}: {p.seconds:.2f} s, {p.epochs} epochs")
    ba, sn = reach["born_again"], reach["snapshot"]
    print(f"  snapshot / born_again: time {sn.seconds / ba.seconds:.2f}x, "
          f"epochs {sn.epochs / ba.epochs:.2f}x")


def _test_accuracy(lineage: Lineage, x: torch.Tensor, rows: torch.Tensor,
                   y: np.ndarray) -> float:
    probs = lineage.members[lineage.selected].predict_proba(x, rows)
    return float((probs.argmax(1) == y).mean())


def _print_points(points: list[Point]) -> None:
    print(f"{'model':34s} {'val acc':>8s} {'val NLL':>8s} {'seconds':>8s} {'epochs':>7s}")
    for p in points:
        print(f"{p.name:34s} {p.val_accuracy:8.4f} {p.val_nll:8.4f} {p.seconds:8.2f} "
              f"{p.epochs:7d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--epochs-per-cycle", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # the first optimizer of a process imports torch._dynamo (seconds): not either method's cost
    make_optimizer(torch.nn.Linear(1, 1), kind="adamw", lr=1e-3, weight_decay=0.0)
    cfg = _config(args)
    candles, truth, interval = load_candles(cfg)
    ds = build_dataset(cfg, candles, truth, interval)
    split = holdout_split(ds, cfg)
    data, x, _ = make_train_data(ds, split, cfg, torch.device("cpu"))
    print(f"rows: train {len(split.train)}, val {len(split.val)}, test {len(split.test)}; "
          f"model {cfg.model.hidden}, batch {cfg.training.batch_size}")
    runs = {}
    for label, fit in (("born_again", fit_born_again), ("snapshot", fit_snapshot)):
        t0 = time.perf_counter()
        lineage = fit(data, cfg, seed=cfg.seed)
        runs[label] = (lineage, time.perf_counter() - t0)
    points = {label: _points(lineage, data, label) for label, (lineage, _) in runs.items()}
    for label in runs:
        _print_points(points[label])
    for metric in ("accuracy", "nll"):
        _compare(points, metric)
    test_rows = torch.as_tensor(split.test, dtype=torch.int64)
    y_test = ds.labels.y.to_numpy()[split.test]
    print()
    for label, (lineage, wall) in runs.items():
        print(f"{label:11s} whole run {wall:.2f} s, {lineage.info['epochs']} epochs; selected "
              f"member test accuracy {_test_accuracy(lineage, x, test_rows, y_test):.4f}")
    (ba_lineage, ba_wall), (sn_lineage, sn_wall) = runs["born_again"], runs["snapshot"]
    print(f"snapshot / born_again whole runs: time {sn_wall / ba_wall:.2f}x, "
          f"epochs {sn_lineage.info['epochs'] / ba_lineage.info['epochs']:.2f}x")


if __name__ == "__main__":
    main()

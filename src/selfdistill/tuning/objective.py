"""The search's objective: a validation score from bars before the first test bar only.

The final run's test rows are read once, by the final evaluation. So the search gets a
dataset cut before them: every labelled row whose label interval ends before the first
test bar of any fold (the *development* rows; the test rows' labels are not even in
memory). On those rows the config's scheme is laid out again (``walk_forward`` with the
same number of folds, fractions, window, purge and embargo; ``holdout`` as one fold).
In each such fold the tuned method is fitted on the training rows, makes its own choices
(early stopping, best generation) on the validation block, and is scored on the block
after it, still development rows: the objective is the mean over folds (and seeds) of
that score, NLL by default (``tune.metric``).

``purged_kfold`` tests on every bar, which leaves no development rows: tuning refuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from selfdistill.config import RunConfig
from selfdistill.errors import ConfigError
from selfdistill.evaluation.experiment import experiment_seeds, plan_splits
from selfdistill.evaluation.findings import ALTERNATIVES, SELF_DISTILLATION
from selfdistill.evaluation.fold import Dataset, make_train_data
from selfdistill.evaluation.metrics import classification_metrics
from selfdistill.methods import get_method
from selfdistill.splits import Split, check_no_leak, walk_forward
from selfdistill.training.device import resolve_device

__all__ = ["LOWER_IS_BETTER", "SearchData", "fold_score", "search_data", "tuned_method",
           "validation_score"]

#: ``tune.metric`` values where smaller is better (the study minimises them).
LOWER_IS_BETTER = ("nll", "brier")


@dataclass
class SearchData:
    """The development rows (nothing from the test period) and the search's folds."""

    ds: Dataset
    splits: list[Split]
    first_test_time: str  # the first test bar of the final evaluation, for the report


def tuned_method(cfg: RunConfig) -> str:
    """``tune.method``, or the last self-distillation method of ``methods`` (else the last
    method that learns: not ``majority``)."""
    if cfg.tune.method is not None:
        if cfg.tune.method not in cfg.methods:
            raise ConfigError(f"tune.method '{cfg.tune.method}' is not in methods "
                              f"{cfg.methods}; add it or choose one of them")
        return cfg.tune.method
    learned = [m for m in cfg.methods if m != "majority"]
    distilled = [m for m in learned if m in SELF_DISTILLATION]
    if not learned:
        raise ConfigError("tune needs a method that learns in methods (not only majority)")
    return (distilled or [m for m in learned if m not in ALTERNATIVES] or learned)[-1]


def search_data(ds: Dataset, cfg: RunConfig) -> SearchData:
    """The development rows of ``ds`` and the folds the search scores on."""
    ev, sp = cfg.evaluation, cfg.split
    if ev.scheme == "purged_kfold":
        raise ConfigError("tune needs evaluation.scheme walk_forward or holdout: purged_kfold "
                          "tests on every bar, so no bar is left to search on")
    first_test = min(int(split.test[0]) for split in plan_splits(ds, cfg))
    bar = ds.labels.start[first_test]
    n_dev = int(np.argmax(ds.labels.end >= bar))  # labels ending before the first test bar
    dev = ds.head(n_dev)
    folds = ev.folds if ev.scheme == "walk_forward" else 1
    splits = walk_forward(dev.labels.start, dev.labels.end, n_folds=folds, window=ev.window,
                          val=sp.val, test=sp.test / folds, purge=sp.purge,
                          embargo=sp.embargo, min_train=int(sp.train * n_dev))
    for split in splits:
        check_no_leak(split, dev.labels.start, dev.labels.end)
    return SearchData(dev, splits, str(ds.times[first_test]))


def fold_score(data: SearchData, k: int, cfg: RunConfig, *, method: str, seed: int) -> float:
    """``tune.metric`` of ``method``'s validation-chosen member on fold k's scoring block."""
    split = data.splits[k]
    device = resolve_device(cfg.device)
    train_data, x, _ = make_train_data(data.ds, split, cfg, device)
    lineage = get_method(method)(train_data, cfg, seed=seed)
    rows = torch.as_tensor(split.test, dtype=torch.int64, device=device)
    proba = lineage.members[lineage.selected].predict_proba(x, rows)  # (N, C)
    y = data.ds.labels.y.to_numpy()[split.test]
    scores = classification_metrics(y, proba, n_classes=len(data.ds.labels.class_names))
    return float(scores[cfg.tune.metric])


def validation_score(data: SearchData, cfg: RunConfig, *,
                     report: Callable[[int, float], None] | None = None,
                     seeds: Sequence[int] | None = None) -> tuple[float, list[float]]:
    """(mean over folds, per-fold values), each fold averaged over the run's seeds.

    ``report(k, running mean)`` is called after each fold (the pruner's hook; it may
    raise to stop the trial).
    """
    method = tuned_method(cfg)
    seeds = list(seeds) if seeds is not None else experiment_seeds(cfg)
    values: list[float] = []
    for k in range(len(data.splits)):
        values.append(float(np.mean([fold_score(data, k, cfg, method=method, seed=s)
                                     for s in seeds])))
        if report is not None:
            report(k, float(np.mean(values)))
    return float(np.mean(values)), values

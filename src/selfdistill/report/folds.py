"""Results per fold: test accuracy, NLL and Sharpe ratio of each headline output, fold by
fold (seeds averaged within the fold), so a reader sees whether a mean over folds hides
one lucky period.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from selfdistill.report.markup import fmt, note, table
from selfdistill.report.outputs import Output, headline_outputs
from selfdistill.report.rundata import RunData

__all__ = ["FOLD_METRICS", "fold_means", "folds_section"]

#: (metric, column title) per fold.
FOLD_METRICS = (("accuracy", "acc."), ("nll", "NLL"), ("sharpe", "Sharpe"))


def fold_means(records: list[dict[str, Any]], metric: str) -> dict[int, float]:
    """Per fold, the mean over its seeds of ``metric`` (cells without it left out)."""
    by_fold: dict[int, list[float]] = {}
    for rec in records:
        value = rec.get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
            by_fold.setdefault(int(rec["fold"]), []).append(float(value))
    return {fold: float(np.mean(v)) for fold, v in sorted(by_fold.items())}


def _row(run: RunData, output: Output, folds: list[int], metrics: list[tuple[str, str]]
         ) -> list[str]:
    cells = run.index.cells.get(("test", *output), [])
    means = {m: fold_means(cells, m) for m, _ in metrics}
    row = [run.index.label(output)]
    for fold in folds:
        row += [fmt(means[m].get(fold), 2 if m == "sharpe" else 3) for m, _ in metrics]
    return row


def folds_section(run: RunData) -> str:
    """The per-fold table of every headline output (test rows, seeds averaged)."""
    bounds = {int(b["fold"]): b for b in
              (run.metrics.get("experiment") or {}).get("fold_bounds", [])}
    outputs = headline_outputs(run.index)
    folds = sorted({int(r["fold"]) for o in outputs
                    for r in run.index.cells.get(("test", *o), [])})
    if not folds:
        return note("No per-cell test records in metrics.json.")
    metrics = [(m, t) for m, t in FOLD_METRICS
               if any(m in r for o in outputs for r in run.index.cells.get(("test", *o), []))]
    groups = [("", 1)]
    for fold in folds:
        test = (bounds.get(fold) or {}).get("test") or {}
        when = f" ({str(test.get('first', ''))[:10]} → {str(test.get('last', ''))[:10]})" \
            if test else ""
        groups.append((f"fold {fold}{when}", len(metrics)))
    header = ["output", *(t for _ in folds for _, t in metrics)]
    rows = [_row(run, o, folds, metrics) for o in outputs]
    return (table(header, rows, groups=groups)
            + note("Test rows of each fold; mean over the fold's seeds. Selected outputs show "
                   "the member each cell chose on validation. Sharpe: annualised, after "
                   "fees and slippage."))

"""How well a per-bar score ranks errors: AUROC with intervals for dependent bars.

Used to ask whether generation disagreement flags the model's errors, and whether
it does so better than the model's own confidence (1 - max probability). The
AUROC's per-bar pseudo-values (DeLong's placements) turn it into a per-bar mean, so
the verdict engine's long-run variance gives intervals and paired tests that hold
under autocorrelation (:mod:`selfdistill.evaluation.statistics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from selfdistill.evaluation.statistics import MIN_BARS, mean_difference_test, not_testable

__all__ = ["auroc", "auroc_comparison", "auroc_pseudo_values"]


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` (ties count one half).

    0.5 is no information; 1.0 ranks every positive above every negative. NaN when
    one class is absent.
    """
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s)  # average ranks: ties count one half
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc_pseudo_values(score: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """(T,) per-bar pseudo-values whose mean is the AUROC (DeLong's placement values).

    A positive bar's placement is the share of negatives it outranks (ties one half),
    a negative bar's the share of positives that outrank it; each bar's pseudo-value
    is ``A + (placement - A) / share of its class``. Their mean is A, and the long-run
    variance of the series over T is the variance of A (DeLong, DeLong &
    Clarke-Pearson 1988, here with autocorrelated bars).
    """
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    place = np.empty(s.size)
    place[y] = (np.searchsorted(neg, s[y], "left") + np.searchsorted(neg, s[y], "right")
                ) / (2 * neg.size)
    place[~y] = 1 - (np.searchsorted(pos, s[~y], "left")
                     + np.searchsorted(pos, s[~y], "right")) / (2 * pos.size)
    a = auroc(s, y)
    share = np.where(y, y.mean(), 1 - y.mean())
    return a + (place - a) / share


def auroc_comparison(scores: dict[str, np.ndarray], error: np.ndarray, *, reference: str,
                     level: float = 0.95, fold_sizes: Sequence[int] | None = None
                     ) -> dict[str, dict[str, dict[str, Any]]]:
    """AUROC of each score for predicting an error, with intervals robust to autocorrelation.

    Each score gets its AUROC with an interval (from the EWC long-run variance of its
    per-bar pseudo-values, :func:`auroc_pseudo_values`; with several seeds, each seed's
    AUROC over the same bars, averaged, the seeds' spread added as in any per-bar
    test); every score other than ``reference`` also gets the paired difference
    AUROC(score) - AUROC(reference) (``vs_reference``), tested like any per-bar
    differential. Each entry is a :class:`TestResult` as a dict.

    Args:
        scores: name -> (T,) or (S, T) score, higher = more likely an error; bars in
            time order.
        error: (T,) or (S, T), True where the prediction was wrong.
        reference: the score the others are compared with (e.g. 1 - max probability).
        level: interval coverage.
        fold_sizes: bars of each fold, in order (None: one fold).
    """
    err = np.atleast_2d(np.asarray(error, dtype=bool))
    n = err.shape[1]
    reason = (f"{n} test bars; needs at least {MIN_BARS}" if n < MIN_BARS
              else "every bar is an error" if err.all(axis=1).any()
              else "no bar is an error" if not err.any(axis=1).all() else None)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if reason:
        return {name: {"auroc": not_testable(float("nan"), reason, n_bars=n).to_dict()}
                for name in scores}
    pseudo = {name: np.stack([auroc_pseudo_values(row, e) for row, e in
                              zip(np.atleast_2d(np.asarray(s, dtype=np.float64)), err,
                                  strict=True)])
              for name, s in scores.items()}
    for name in scores:
        vs_half = mean_difference_test(pseudo[name] - 0.5, level=level,
                                       fold_sizes=fold_sizes)
        out[name] = {"auroc": vs_half.rescaled(offset=0.5).to_dict()}
        if name != reference:
            out[name]["vs_reference"] = mean_difference_test(
                pseudo[name] - pseudo[reference], level=level,
                fold_sizes=fold_sizes).to_dict()
    return out

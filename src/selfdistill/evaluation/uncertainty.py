"""Uncertainty from disagreement between members (generations, heads, snapshots).

Given the class probabilities of M members on the same N samples:

- ``variance``: per sample, the variance across members of each class
  probability (population variance, ddof 0), averaged over classes.
- ``entropy``: entropy of the members' mean prediction (total uncertainty, nats).
- ``mutual_information``: entropy of the mean minus the mean of the members'
  entropies (the part of the uncertainty due to disagreement; BALD), nats, >= 0.
- ``flip_rate``: the fraction of consecutive member pairs (m, m + 1) whose
  arg-max class differs: how often the predicted label flips from one
  generation to the next. 0 for a single member.

:func:`error_by_quantile` shows whether the uncertainty means something: the
error rate should rise from the least to the most uncertain bin (bins by value, so
ties are never split). :mod:`selfdistill.evaluation.ranking` tests it: the AUROC of
each measure for predicting an error, next to the model's own confidence.
"""

from __future__ import annotations

import numpy as np

from selfdistill.errors import DataError

__all__ = ["disagreement", "entropy", "error_by_quantile"]


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats along the last axis, with ``0 log 0 = 0``.

    Args:
        p: (..., C) probabilities.

    Returns:
        (...) entropies.
    """
    p = np.asarray(p, dtype=np.float64)
    logp = np.log(p, out=np.zeros_like(p), where=p > 0)
    return -(p * logp).sum(axis=-1)


def disagreement(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample disagreement between M members.

    Args:
        probs: (M, N, C) class probabilities of M members on N samples.

    Returns:
        ``variance``, ``mutual_information``, ``flip_rate`` and ``entropy``,
        each (N,) float64.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 3 or p.shape[0] < 1 or p.shape[1] < 1:
        raise DataError(f"disagreement needs probabilities of shape (members, samples, "
                        f"classes) with at least one member and sample, got {p.shape}")
    mean = p.mean(axis=0)  # (N, C)
    total = entropy(mean)  # (N,)
    expected = entropy(p).mean(axis=0)  # (N,)
    labels = p.argmax(axis=2)  # (M, N)
    flips = (labels[1:] != labels[:-1]).mean(axis=0) if len(p) > 1 else np.zeros(p.shape[1])
    return {
        "variance": p.var(axis=0).mean(axis=1),
        "mutual_information": np.maximum(total - expected, 0.0),
        "flip_rate": flips.astype(np.float64),
        "entropy": total,
    }


def error_by_quantile(uncertainty: np.ndarray, correct: np.ndarray,
                      n_quantiles: int = 5) -> list[dict[str, float]]:
    """Error rate per bin of uncertainty *values*, least uncertain first.

    Bin edges are the ``n_quantiles``-quantiles of the values, and a sample's bin
    is decided by its value alone: equal values always share a bin, so ties are
    never split by row order (a measure that is mostly 0, like ``flip_rate``, gets
    one bin for all its zeros instead of several "quantiles" that are really
    time segments). There are fewer than ``n_quantiles`` bins when values repeat.

    Args:
        uncertainty: (N,) any per-sample uncertainty score.
        correct: (N,) bool, whether each prediction was right.
        n_quantiles: the most bins (5 = quintiles when every value differs).

    Returns:
        One dict per non-empty bin: ``low`` / ``high`` (uncertainty range in the
        bin), ``error_rate`` and ``n``.
    """
    u = np.asarray(uncertainty, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if u.ndim != 1 or u.shape != ok.shape:
        raise DataError(f"uncertainty and correct must be 1-D of equal length, got "
                        f"{u.shape} and {ok.shape}")
    if n_quantiles < 1 or len(u) < n_quantiles:
        raise DataError(f"{len(u)} samples cannot fill {n_quantiles} quantiles; "
                        "need n_quantiles >= 1 and at least that many samples")
    if not np.all(np.isfinite(u)):
        raise DataError("uncertainty holds NaN or inf")
    inner = np.unique(np.quantile(u, np.linspace(0, 1, n_quantiles + 1)[1:-1]))
    bins = np.searchsorted(inner, u, side="left")  # value <= edge goes left: ties stay
    return [
        {"low": float(u[bins == b].min()), "high": float(u[bins == b].max()),
         "error_rate": float(1.0 - ok[bins == b].mean()), "n": int((bins == b).sum())}
        for b in np.unique(bins)
    ]

"""Classification and calibration metrics (NumPy only).

Conventions: ``y_true`` holds class ids ``0 .. C-1``; ``proba`` holds one row of
class probabilities per sample; the prediction is the arg-max (first class on
ties) and the confidence its probability.

- ``nll``: mean of ``-log(max(p[y], 1e-12))``.
- ``brier``: multi-class Brier score, ``sum_c (p_c - 1[y = c])^2`` averaged over
  rows (0 is perfect, 2 is the worst).
- ``ece``: expected calibration error over ``n_bins`` equal-width confidence bins
  ``(i / n_bins, (i + 1) / n_bins]`` (bin 0 also holds confidence 0): the
  row-weighted mean of ``|accuracy - mean confidence|`` per bin.
- ``balanced_accuracy``: mean recall over the classes present in ``y_true``.
- ``macro_f1``: mean F1 over the classes present in ``y_true`` or predicted (a
  class with no true and no predicted rows is not scored; F1 is 0 when precision
  and recall are both 0). Both follow scikit-learn's defaults.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from selfdistill.errors import DataError
from selfdistill.softmax import PROB_FLOOR

__all__ = [
    "MetricTotals",
    "classification_metrics",
    "confusion_matrix",
    "expected_calibration_error",
    "reliability_curve",
]

_SUM_TOLERANCE = 1e-3


def _check(y_true: np.ndarray, proba: np.ndarray,
           n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: (N,) int64 labels and (N, C) float64 probabilities."""
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or y.ndim != 1 or len(y) != len(p) or len(y) == 0:
        raise DataError(f"metrics need y_true (N,) and proba (N, C) with N > 0, got shapes "
                        f"{y.shape} and {p.shape}")
    c = p.shape[1] if n_classes is None else n_classes
    if p.shape[1] != c:
        raise DataError(f"proba has {p.shape[1]} columns, expected n_classes={c}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(
            np.abs(p.sum(axis=1) - 1.0) > _SUM_TOLERANCE):
        raise DataError("proba rows must be finite, non-negative and sum to 1 "
                        f"(within {_SUM_TOLERANCE})")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= c:
        raise DataError(f"y_true must hold integer class ids in 0..{c - 1}, "
                        f"got values {np.unique(y)[:10].tolist()}")
    return y.astype(np.int64), p


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    flat = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _f1_scores(cm: np.ndarray) -> tuple[float, float]:
    """Balanced accuracy and macro F1 from a confusion matrix (sklearn's defaults)."""
    tp = np.diag(cm).astype(np.float64)
    true_n, pred_n = cm.sum(axis=1), cm.sum(axis=0)
    present = true_n > 0
    recall = np.divide(tp, true_n, out=np.zeros_like(tp), where=present)
    scored = present | (pred_n > 0)
    f1_den = true_n + pred_n
    f1 = np.divide(2 * tp, f1_den, out=np.zeros_like(tp), where=f1_den > 0)
    return float(recall[present].mean()), float(f1[scored].mean())


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """(N,) bin of each confidence, bins right-closed ``(i / n, (i + 1) / n]``."""
    return np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def _binned(y: np.ndarray, p: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """Per-bin row count, summed confidence and summed correctness, each (n_bins,)."""
    if n_bins < 1:
        raise DataError(f"n_bins must be >= 1, got {n_bins}")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    idx = _bin_index(confidence, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    return count, conf_sum, acc_sum


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins.

    Args:
        y_true: (N,) class ids.
        proba: (N, C) probabilities.
        n_bins: number of bins over [0, 1].

    Returns:
        ``sum_b (n_b / N) * |acc_b - conf_b|``.
    """
    y, p = _check(y_true, proba)
    _, conf_sum, acc_sum = _binned(y, p, n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / len(y))


def reliability_curve(y_true: np.ndarray, proba: np.ndarray,
                      n_bins: int = 15) -> dict[str, list[float]]:
    """Per non-empty confidence bin: its edges, mean confidence, accuracy and count.

    Args:
        y_true: (N,) class ids.
        proba: (N, C) probabilities.
        n_bins: number of equal-width bins over [0, 1].

    Returns:
        Lists of equal length under ``bin_lower``, ``bin_upper``, ``confidence``,
        ``accuracy`` and ``count`` (JSON-ready; empty bins are left out).
    """
    y, p = _check(y_true, proba)
    count, conf_sum, acc_sum = _binned(y, p, n_bins)
    used = np.flatnonzero(count > 0)
    return {
        "bin_lower": [float(b / n_bins) for b in used],
        "bin_upper": [float((b + 1) / n_bins) for b in used],
        "confidence": (conf_sum[used] / count[used]).tolist(),
        "accuracy": (acc_sum[used] / count[used]).tolist(),
        "count": count[used].tolist(),
    }


class MetricTotals:
    """The sums behind :func:`classification_metrics`, added up chunk by chunk.

    Every metric here is a sum over rows (the confusion matrix, the log-likelihood, the
    Brier score, the per-bin confidence and correctness of the ECE), so a split too
    large to hold at once (the training rows of a 10M-bar run, times every member) is
    scored in pieces; one piece gives exactly :func:`classification_metrics`.

    Example:
        >>> import numpy as np
        >>> t = MetricTotals(2).add([0, 1], [[0.9, 0.1], [0.2, 0.8]]).add([1], [[0.6, 0.4]])
        >>> t.result()["accuracy"], t.result()["n"]
        (0.6666666666666666, 3)
    """

    def __init__(self, n_classes: int = 3, n_bins: int = 15) -> None:
        if n_bins < 1:
            raise DataError(f"n_bins must be >= 1, got {n_bins}")
        self.n_classes, self.n_bins = n_classes, n_bins
        self.cm = np.zeros((n_classes, n_classes), dtype=np.int64)
        self.nll_sum = self.brier_sum = 0.0
        self.conf_sum, self.acc_sum = np.zeros(n_bins), np.zeros(n_bins)
        self.n = 0

    def add(self, y_true: ArrayLike, proba: ArrayLike) -> MetricTotals:
        """Add rows: (N,) class ids and (N, C) probabilities."""
        y, p = _check(np.asarray(y_true), np.asarray(proba), self.n_classes)
        pred = p.argmax(axis=1)
        self.cm += confusion_matrix(y, pred, self.n_classes)
        p_true = p[np.arange(len(y)), y]
        self.nll_sum += float(-np.sum(np.log(np.maximum(p_true, PROB_FLOOR))))
        onehot = np.eye(self.n_classes)[y]
        self.brier_sum += float(np.sum(np.sum((p - onehot) ** 2, axis=1)))
        _, conf_sum, acc_sum = _binned(y, p, self.n_bins)
        self.conf_sum += conf_sum
        self.acc_sum += acc_sum
        self.n += len(y)
        return self

    def result(self) -> dict[str, Any]:
        """The metrics of every row added (see :func:`classification_metrics`)."""
        if self.n == 0:
            raise DataError("metrics need at least one row")
        balanced, macro_f1 = _f1_scores(self.cm)
        return {
            "accuracy": float(np.trace(self.cm) / self.n),
            "balanced_accuracy": balanced,
            "macro_f1": macro_f1,
            "nll": self.nll_sum / self.n,
            "brier": self.brier_sum / self.n,
            "ece": float(np.abs(self.acc_sum - self.conf_sum).sum() / self.n),
            "confusion_matrix": self.cm.tolist(),
            "n": self.n,
        }


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, *, n_classes: int = 3,
                           n_bins: int = 15) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, NLL, Brier, ECE and the confusion matrix.

    Args:
        y_true: (N,) class ids in ``0 .. n_classes - 1``.
        proba: (N, n_classes) predicted probabilities (rows sum to 1).
        n_classes: number of classes.
        n_bins: ECE bins.

    Returns:
        Plain Python floats / ints / lists (JSON-ready): ``accuracy``,
        ``balanced_accuracy``, ``macro_f1``, ``nll``, ``brier``, ``ece``,
        ``confusion_matrix`` (rows = true, columns = predicted) and ``n``.
    """
    return MetricTotals(n_classes, n_bins).add(y_true, proba).result()

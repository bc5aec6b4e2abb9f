"""Softmax, log-softmax and the negative log-likelihood in NumPy: the one implementation.

Every NumPy path that turns logits into class probabilities, or scores probabilities
against labels, goes through these functions: the metrics and temperature scaling in
:mod:`selfdistill.evaluation`, the torch-free runtime in :mod:`selfdistill.serving`,
the LightGBM wrapper and model selection in the methods. They import nothing but
NumPy, so every layer may use them. (Torch code uses ``torch.softmax`` /
``F.log_softmax`` on tensors inside networks and losses;
:func:`selfdistill.training.loop.probabilities` is the one place a network's logits
become float64 NumPy probabilities.)

Conventions: classes lie along the last axis; results are float64; a probability is
floored at :data:`PROB_FLOOR` before its log, so one confident mistake costs
``-log(1e-12) ≈ 27.6`` nats instead of infinity.

Example:
    >>> import numpy as np
    >>> z = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> softmax(z).round(4).tolist()
    [[0.787, 0.1065, 0.1065], [0.3333, 0.3333, 0.3333]]
    >>> round(nll(softmax(z), np.array([0, 2])), 4)
    0.6691
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["PROB_FLOOR", "log_probabilities", "log_softmax", "nll", "nll_of_logits", "softmax"]

#: The smallest probability a log is taken of.
PROB_FLOOR = 1e-12


def log_softmax(logits: ArrayLike, *, temperature: float = 1.0) -> np.ndarray:
    """``log softmax(logits / temperature)`` along the last axis.

    Args:
        logits: (..., C) scores; any real numbers.
        temperature: divides the logits first (> 0; 1 leaves them as they are).

    Returns:
        (..., C) float64 log-probabilities; the row maximum is subtracted before
        exponentiating, so large logits do not overflow.
    """
    z = np.array(logits, dtype=np.float64)  # a copy: the steps below work in place
    if temperature != 1.0:
        z /= temperature
    z -= z.max(axis=-1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return z


def softmax(logits: ArrayLike, *, temperature: float = 1.0) -> np.ndarray:
    """(..., C) float64 probabilities ``softmax(logits / temperature)`` (rows sum to 1)."""
    out = log_softmax(logits, temperature=temperature)
    np.exp(out, out=out)
    return out


def log_probabilities(proba: ArrayLike) -> np.ndarray:
    """(..., C) float64 ``log(p)``, with ``p`` clipped to ``[PROB_FLOOR, 1]``.

    The result works as logits: the softmax of ``log p`` is ``p`` again (up to the floor).
    """
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), PROB_FLOOR, 1.0))


def nll(proba: ArrayLike, y: ArrayLike) -> float:
    """Mean negative log-likelihood ``-mean(log(max(p[i, y_i], PROB_FLOOR)))``.

    Args:
        proba: (N, C) class probabilities.
        y: (N,) integer class ids in ``0 .. C - 1``.
    """
    p = np.asarray(proba, dtype=np.float64)
    labels = np.asarray(y)
    p_true = p[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(p_true, PROB_FLOOR))))


def nll_of_logits(logits: ArrayLike, y: ArrayLike, *, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of labels ``y`` (N,) under ``softmax(logits / T)`` (N, C).

    Exact in log space (no floor): ``-mean(log_softmax(logits / T)[i, y_i])``.
    """
    labels = np.asarray(y)
    log_p = log_softmax(logits, temperature=temperature)
    return float(-log_p[np.arange(len(labels)), labels].mean())

"""Multinomial logistic regression: the fitted model and its softmax (NumPy only).

One scikit-learn ``LogisticRegression`` (lbfgs, L2; multinomial for three or
more classes, the default in scikit-learn >= 1.5) is fitted on the training rows
for each inverse regularisation strength ``C`` of a grid; the one with the
lowest mean validation negative log-likelihood is kept, ties going to the
smaller ``C`` (stronger regularisation). The chosen model is *not* refitted on
training + validation rows, so the validation NLL stays an honest selection score.

The fitted coefficients are plain arrays and :func:`predict_proba` is a NumPy
softmax, so the model is stored through safetensors and never pickled. Fitting
(the grid, scikit-learn) lives in :mod:`selfdistill.methods.logistic`.

Classes absent from the training rows: scikit-learn only knows the classes it
saw (with two it fits one binary logit). Here every class keeps its column: an
absent class gets probability ``floor = 1 / (n_train + n_classes)`` (the
add-one estimate of a class never seen in ``n_train`` draws) and the seen
classes share the rest in scikit-learn's proportions, so validation NLL stays
finite when validation rows hold such a class.

Features are used as given: pass the project's scaled features (the scaler is
fitted on training rows), since the L2 penalty assumes comparable scales.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import numpy as np

from selfdistill.nn.classic.checks import check_arrays, check_features
from selfdistill.softmax import log_softmax, softmax

__all__ = ["LogisticParams", "class_proba", "from_arrays", "log_proba", "nll", "predict_proba",
           "to_arrays"]

log = logging.getLogger(__name__)

_SHAPES: dict[str, tuple[int | str, ...]] = {
    "coef": ("C", "F"), "intercept": ("C",), "present": ("C",), "floor": (),
    "chosen_c": (), "grid": ("G",), "val_nll": ("G",),
}


@dataclass(frozen=True)
class LogisticParams:
    """A fitted model and its selection record; read-only arrays, checked on construction.

    Attributes:
        coef: (C, F) weights; zero rows for classes absent from training.
        intercept: (C,) biases.
        present: (C,) bool, the classes seen in training.
        floor: () probability of each absent class.
        chosen_c: () the inverse regularisation strength picked on validation.
        grid: (G,) the strengths tried, in the order given.
        val_nll: (G,) mean validation negative log-likelihood of each.
    """

    coef: np.ndarray
    intercept: np.ndarray
    present: np.ndarray
    floor: np.ndarray
    chosen_c: np.ndarray
    grid: np.ndarray
    val_nll: np.ndarray

    def __post_init__(self) -> None:
        arrays = check_arrays({f.name: getattr(self, f.name) for f in fields(self)}, _SHAPES)
        if arrays["present"].dtype != np.bool_ or not arrays["present"].any():
            raise ValueError("present must be a bool array with at least one True, got "
                             f"{arrays['present']!r}")
        n_missing = int((~arrays["present"]).sum())
        if not 0 < float(arrays["floor"]) * max(n_missing, 1) < 1:
            raise ValueError(f"floor must lie in (0, 1 / {max(n_missing, 1)}), "
                             f"got {float(arrays['floor'])}")
        for name, arr in arrays.items():
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def n_classes(self) -> int:
        return int(self.coef.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])


def to_arrays(params: LogisticParams) -> dict[str, np.ndarray]:
    """Name -> array copies, ready for ``safetensors.numpy.save_file``."""
    return {f.name: np.array(getattr(params, f.name)) for f in fields(params)}


def from_arrays(arrays: dict[str, np.ndarray]) -> LogisticParams:
    """:class:`LogisticParams` from :func:`to_arrays` output; ValueError on bad arrays."""
    return LogisticParams(**check_arrays(arrays, _SHAPES))


def predict_proba(params: LogisticParams, x: np.ndarray) -> np.ndarray:
    """(N, C) class probabilities: a stable softmax over the classes seen in training.

    Args:
        params: a fitted model.
        x: (N, F) features.

    Returns:
        (N, C) float64, rows sum to 1; absent classes hold ``params.floor``.

    Example:
        >>> p = LogisticParams(coef=np.array([[1.0], [-1.0], [0.0]]), intercept=np.zeros(3),
        ...                    present=np.array([True, True, False]), floor=np.array(0.01),
        ...                    chosen_c=np.array(1.0), grid=np.array([1.0]),
        ...                    val_nll=np.array([0.5]))
        >>> predict_proba(p, np.array([[0.0], [1.0]])).round(3).tolist()
        [[0.495, 0.495, 0.01], [0.872, 0.118, 0.01]]
    """
    x = check_features(x, "x", params.n_features)
    return class_proba(x, params.coef, params.intercept, params.present, float(params.floor))


def log_proba(params: LogisticParams, x: np.ndarray) -> np.ndarray:
    """(N, C) ``log(predict_proba(params, x))`` computed in log space (no underflow to -inf).

    Args:
        params: a fitted model.
        x: (N, F) features.
    """
    x = check_features(x, "x", params.n_features)
    present = params.present
    logits = np.where(present, x @ params.coef.T + params.intercept, -np.inf)  # (N, C)
    out = log_softmax(logits)  # (N, C); absent classes -inf (a present one keeps max finite)
    n_missing = int((~present).sum())
    if n_missing:
        floor = float(params.floor)
        out = out + np.log1p(-n_missing * floor)
        out[:, ~present] = np.log(floor)
    return out


def class_proba(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray, present: np.ndarray,
                floor: float) -> np.ndarray:
    """(N, C) probabilities for checked ``x`` (N, F); see :func:`predict_proba`.

    The arrays of a model before it is a :class:`LogisticParams` (fitting scores each
    candidate on validation rows with it).
    """
    logits = x @ coef.T + intercept  # (N, C)
    logits = np.where(present, logits, -np.inf)  # absent classes: exp(-inf) = 0
    proba = softmax(logits)  # (N, C); absent classes 0 (a present one keeps max finite)
    n_missing = int((~present).sum())
    if n_missing:
        proba = proba * (1.0 - n_missing * floor)
        proba[:, ~present] = floor
    return proba


def nll(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of labels ``y`` (N,) under ``proba`` (N, C)."""
    return float(-np.mean(np.log(proba[np.arange(len(y)), y])))

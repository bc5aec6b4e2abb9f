"""Multinomial logistic regression on the same scaled features, folds and seeds (``logistic``).

One scikit-learn ``LogisticRegression`` (lbfgs, L2; multinomial for three or more
classes) is fitted on the training rows for each inverse regularisation strength
``C`` of ``logistic.grid``; the one with the lowest mean validation negative
log-likelihood is kept, ties going to the smaller ``C`` (stronger regularisation).
Validation rows are the only selection input and test rows are never read. The
chosen model is *not* refitted on training + validation rows, so the validation NLL
stays an honest selection score. Fits run on one BLAS thread, so the same cell
gives the same coefficients on any machine.

The fitted :class:`~selfdistill.nn.classic.logistic.LogisticParams` (absent classes
keep a floored column) is wrapped in
:class:`~selfdistill.nn.classic.modules.LogisticClassifier`, an ``nn.Module``
returning log-probabilities, so evaluation, model files and ``predict`` treat it
like any network.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np

from selfdistill.config import RunConfig
from selfdistill.errors import TrainingError
from selfdistill.methods.base import Lineage, Member, TrainData
from selfdistill.methods.common import derive_seed
from selfdistill.nn.classic.checks import check_features, check_labels, check_positive_int
from selfdistill.nn.classic.logistic import LogisticParams, class_proba, nll
from selfdistill.nn.classic.modules import LogisticClassifier, last_bar
from selfdistill.training.callbacks import Callback

__all__ = ["fit", "fit_logistic"]

log = logging.getLogger(__name__)

_Fit = tuple[np.ndarray, np.ndarray, np.ndarray]  # coef (C, F), intercept (C,), present (C,)


def _fit_one(x: np.ndarray, y: np.ndarray, n_classes: int, c: float, seed: int,
             max_iter: int) -> _Fit:
    """(coef (C, F), intercept (C,), present (C,)) of one L2 fit at strength ``c``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    present = np.bincount(y, minlength=n_classes) > 0
    seen = np.flatnonzero(present)
    coef, intercept = np.zeros((n_classes, x.shape[1])), np.zeros(n_classes)
    if seen.size == 1:  # one class: nothing to fit, it takes all the mass not floored
        return coef, intercept, present
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = LogisticRegression(C=c, l1_ratio=0.0, solver="lbfgs", max_iter=max_iter,
                                   random_state=seed).fit(x, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.info("logistic C=%g: lbfgs stopped at max_iter=%d before converging", c, max_iter)
    if seen.size == 2:  # binary: one logit z for classes_[1]; softmax([0, z]) = sigmoid
        coef[seen[1]], intercept[seen[1]] = model.coef_[0], model.intercept_[0]
    else:
        coef[seen], intercept[seen] = model.coef_, model.intercept_
    return coef, intercept, present


def _check_grid(grid: Sequence[float]) -> np.ndarray:
    values = np.asarray(grid, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not (np.isfinite(values) & (values > 0)).all():
        raise ValueError(f"grid must be a non-empty sequence of finite C > 0, got {grid!r}")
    return values


def fit(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
        n_classes: int, seed: int, grid: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
        max_iter: int = 1000) -> LogisticParams:
    """Fit one model per ``C`` in ``grid`` on training rows; keep the best on validation.

    Args:
        x_train: (N, F) training features. y_train: (N,) class ids in ``[0, n_classes)``.
        x_val: (M, F) validation features. y_val: (M,) class ids; the only selection input.
        n_classes: C >= 2; every class keeps a column even if absent from ``y_train``.
        seed: passed to scikit-learn (lbfgs itself is deterministic).
        grid: inverse L2 strengths to try (smaller = stronger regularisation).
        max_iter: lbfgs iteration cap.

    Returns:
        The model with the lowest mean validation NLL, ties to the smaller ``C``.

    Raises:
        ValueError: a bad argument or input, named with what would be valid.
    """
    from threadpoolctl import threadpool_limits

    n_classes = check_positive_int(n_classes, "n_classes", 2)
    max_iter = check_positive_int(max_iter, "max_iter", 1)
    seed = check_positive_int(seed, "seed", 0)
    values = _check_grid(grid)
    x_tr = check_features(x_train, "x_train")
    y_tr = check_labels(y_train, x_tr.shape[0], n_classes, "y_train")
    x_va = check_features(x_val, "x_val", x_tr.shape[1])
    y_va = check_labels(y_val, x_va.shape[0], n_classes, "y_val")
    floor = 1.0 / (x_tr.shape[0] + n_classes)
    fits: list[_Fit] = []
    scores = np.empty(values.size)
    with threadpool_limits(limits=1):  # same coefficients on any core count
        for i, c in enumerate(values):
            fits.append(_fit_one(x_tr, y_tr, n_classes, float(c), seed, max_iter))
            scores[i] = nll(class_proba(x_va, *fits[-1], floor), y_va)
            log.debug("logistic C=%g: validation NLL %.5f", c, scores[i])
    best = int(np.lexsort((values, scores))[0])  # lowest NLL first, then the smallest C
    coef, intercept, present = fits[best]
    return LogisticParams(coef=coef, intercept=intercept, present=present,
                          floor=np.array(floor), chosen_c=np.array(values[best]), grid=values,
                          val_nll=scores)


def fit_logistic(data: TrainData, cfg: RunConfig, *, seed: int,
                 callbacks: Sequence[Callback] = ()) -> Lineage:
    """Fit on train rows for each ``C`` of ``logistic.grid``; keep the best on validation rows."""
    lc = cfg.logistic
    x = last_bar(data.x)  # (R, F)
    y = data.y.cpu().numpy()
    tr, va = data.train_rows.cpu().numpy(), data.val_rows.cpu().numpy()
    for cb in callbacks:
        cb.on_fit_begin("logistic", len(lc.grid))
    try:
        params = fit(x[tr], y[tr], x[va], y[va], n_classes=data.n_classes,
                     seed=derive_seed(seed, "logistic"), grid=lc.grid, max_iter=lc.max_iter)
    except ValueError as exc:
        raise TrainingError(f"logistic: {exc}") from exc
    history = [{"epoch": float(i + 1), "C": float(c), "val_loss": float(v)}
               for i, (c, v) in enumerate(zip(params.grid, params.val_nll, strict=True))]
    for cb in callbacks:
        for record in history:
            cb.on_epoch_end("logistic", record)
        cb.on_fit_end("logistic", history)
    chosen = float(params.chosen_c)
    log.debug("logistic: C=%g chosen on validation NLL", chosen)
    info = {"C": chosen, "val_nll": float(params.val_nll.min())}
    member = Member({"generation": None}, LogisticClassifier(params).eval(), history, info=info)
    return Lineage("logistic", [member], info=info)

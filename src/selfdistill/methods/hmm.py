"""A causal Gaussian HMM on the same features, folds and seeds (method ``hmm``).

Fitting reads training rows only. EM (Baum-Welch, :mod:`selfdistill.methods.hmm_em`)
runs ``hmm.n_init`` times from seeds derived from the run seed and the highest
training log-likelihood wins; then the training labels turn hidden states into
classes, ``state_to_class[k, c] = P(class c | state k)``, from the *filtered*
training posteriors as soft counts plus a Laplace prior. Nothing is chosen on
validation rows (evaluation fits the temperature on them, as for every method).

For EM the training rows are cut into independent sequences wherever they are not
consecutive: between the training blocks of a purged k-fold, and, when
:attr:`TrainData.positions` is known, where bars were dropped (a gap in the candles).

Predictions are *forward-filtered*: the probabilities of row t read rows <= t only,
never smoothed and never Viterbi (see :mod:`selfdistill.nn.classic.hmm`). The fitted
:class:`~selfdistill.nn.classic.modules.HMMClassifier` is sequential, so evaluation
filters once over every labelled row in time order, straight through the purge
between the training and validation blocks and over dropped bars (each is one
step: a purge is not a missing market period, and the filter must not restart at
the validation or test block, which would make those rows forget the past the
model is allowed to see). ``selfdistill predict`` filters from the first bar of
the candles it is given that has complete features.

References:
    Rabiner, "A tutorial on hidden Markov models ...", Proc. IEEE 77(2), 1989.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from selfdistill.config import RunConfig
from selfdistill.errors import TrainingError
from selfdistill.methods.base import Lineage, Member, TrainData
from selfdistill.methods.common import derive_seed
from selfdistill.nn.classic.checks import check_features, check_labels, check_positive_int
from selfdistill.nn.classic.hmm import COVARIANCE_TYPES, HMMParams, filter_proba, segments
from selfdistill.nn.classic.modules import HMMClassifier, last_bar
from selfdistill.training.callbacks import Callback

__all__ = ["fit", "fit_hmm", "train_lengths"]

log = logging.getLogger(__name__)


def _class_map(alpha: np.ndarray, y: np.ndarray, n_classes: int, prior: float) -> np.ndarray:
    """(K, C) P(class | state) from soft counts of filtered posteriors plus ``prior`` each."""
    onehot = np.eye(n_classes)[y]  # (N, C)
    counts = alpha.T @ onehot + prior  # (K, C)
    return counts / counts.sum(axis=1, keepdims=True)


def _check_fit_args(n_states: int, n_classes: int, seed: int, n_init: int, n_iter: int,
                    covariance: str, tol: float, var_floor: float, prior: float) -> None:
    for name, count, minimum in (("n_states", n_states, 2), ("n_classes", n_classes, 2),
                                 ("seed", seed, 0), ("n_init", n_init, 1),
                                 ("n_iter", n_iter, 1)):
        check_positive_int(count, name, minimum)
    if covariance not in COVARIANCE_TYPES:
        raise ValueError(f"covariance {covariance!r} is not one of {', '.join(COVARIANCE_TYPES)}")
    for name, value in (("tol", tol), ("var_floor", var_floor), ("prior", prior)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def fit(x_train: np.ndarray, y_train: np.ndarray, *, n_states: int, n_classes: int, seed: int,
        n_init: int = 3, covariance: str = "diag", lengths: Sequence[int] | None = None,
        n_iter: int = 100, tol: float = 1e-4, var_floor: float = 1e-3, prior: float = 1.0,
        on_init: Callable[[int, float], None] | None = None) -> HMMParams:
    """Fit the HMM by EM on training rows, then map states to classes with training labels.

    Args:
        x_train: (N, F) training features in time order (scaled; no NaN).
        y_train: (N,) class ids in ``[0, n_classes)``; used only for ``state_to_class``.
        n_states: K >= 2 hidden states (may differ from ``n_classes``).
        n_classes: C >= 2.
        seed: derives the ``random_state`` of every EM initialisation.
        n_init: EM runs; the highest training log-likelihood wins.
        covariance: one of :data:`~selfdistill.nn.classic.hmm.COVARIANCE_TYPES`.
        lengths: sizes of consecutive independent sequences in ``x_train`` (e.g.
            training blocks of a purged split); None: one sequence.
        n_iter / tol: EM iteration cap and log-likelihood gain that stops it.
        var_floor: variances are at least ``var_floor`` x the training variance of
            their feature (a constant feature counts as variance 1).
        prior: Laplace pseudo-count added to every (state, class) soft count.
        on_init: called with (init index, training log-likelihood) after each EM run.

    Returns:
        The fitted :class:`HMMParams`. ``startprob`` is uniform (not learned): a
        single training sequence holds one observation of the initial state.

    Raises:
        ValueError: a bad argument or input, named with what would be valid.
    """
    _check_fit_args(n_states, n_classes, seed, n_init, n_iter, covariance, tol, var_floor,
                    prior)
    x = check_features(x_train, "x_train")
    y = check_labels(y_train, x.shape[0], n_classes, "y_train")
    segments(lengths, x.shape[0])  # validate before the slow part
    if x.shape[0] <= n_states:
        raise ValueError(f"x_train has {x.shape[0]} rows; fitting {n_states} states needs more")
    from selfdistill.methods.hmm_em import best_em  # hmmlearn is needed to fit, not to filter

    em = best_em(x, lengths, int(n_states), int(seed), int(n_init), int(n_iter), float(tol),
                 float(var_floor), on_init)
    uniform = np.full((n_states, n_classes), 1.0 / n_classes)
    unmapped = HMMParams(**em, state_to_class=uniform)
    alpha = filter_proba(unmapped, x, lengths=lengths)  # (N, K) filtered, never smoothed
    return HMMParams(**em, state_to_class=_class_map(alpha, y, n_classes, float(prior)))


def train_lengths(rows: np.ndarray, positions: np.ndarray | None = None) -> list[int]:
    """Sizes of the runs of consecutive rows (and, when known, consecutive bars).

    Args:
        rows: (N,) sorted row indices (the training rows).
        positions: (R,) bar position of every row, or None.

    Example:
        >>> train_lengths(np.array([0, 1, 2, 6, 7]))
        [3, 2]
        >>> train_lengths(np.array([0, 1, 2, 3]), positions=np.array([10, 11, 15, 16]))
        [2, 2]
    """
    breaks = np.diff(rows) != 1
    if positions is not None:
        breaks |= np.diff(positions[rows]) != 1
    bounds = np.r_[0, np.flatnonzero(breaks) + 1, len(rows)]
    return [int(n) for n in np.diff(bounds)]


def fit_hmm(data: TrainData, cfg: RunConfig, *, seed: int,
            callbacks: Sequence[Callback] = ()) -> Lineage:
    """Fit the HMM on train rows (see the module docstring); one member, no generations."""
    hc = cfg.hmm
    x = last_bar(data.x)  # (R, F)
    y = data.y.cpu().numpy()
    rows = np.sort(data.train_rows.cpu().numpy())
    positions = None if data.positions is None else data.positions.cpu().numpy()
    history: list[dict[str, float]] = []

    def on_init(i: int, ll: float) -> None:
        history.append({"epoch": float(i + 1), "train_loglik": ll / len(rows)})
        for cb in callbacks:
            cb.on_epoch_end("hmm", history[-1])

    for cb in callbacks:
        cb.on_fit_begin("hmm", hc.n_init)
    try:
        params = fit(x[rows], y[rows], n_states=hc.n_states, n_classes=data.n_classes,
                     seed=derive_seed(seed, "hmm"), n_init=hc.n_init, n_iter=hc.n_iter,
                     covariance=hc.covariance, lengths=train_lengths(rows, positions),
                     on_init=on_init)
    except ValueError as exc:
        raise TrainingError(f"hmm: {exc}") from exc
    for cb in callbacks:
        cb.on_fit_end("hmm", history)
    best = max(h["train_loglik"] for h in history)
    log.debug("hmm: %d states, train log-likelihood %.4f per row", hc.n_states, best)
    info = {"n_states": hc.n_states, "train_loglik": best}
    member = Member({"generation": None}, HMMClassifier(params).eval(), history, info=info)
    return Lineage("hmm", [member], info=info)

"""Baum-Welch for the ``hmm`` method, on hmmlearn's forward-backward, with a variance floor.

Kept apart from :mod:`selfdistill.nn.classic.hmm` so that filtering and prediction
need NumPy only; hmmlearn (pinned: :class:`FlooredGaussianHMM` overrides its private
``_do_mstep``) is needed to fit. Forward-backward *smoothing* is right here: EM
estimates parameters from the training rows as a whole; only the posteriors used as
predictions must be causal, and those come from
:func:`selfdistill.nn.classic.hmm.filter_proba`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hmmlearn.hmm import GaussianHMM
from threadpoolctl import threadpool_limits

__all__ = ["FlooredGaussianHMM", "best_em"]

log = logging.getLogger(__name__)


class FlooredGaussianHMM(GaussianHMM):
    """A diagonal GaussianHMM whose every M-step keeps variances >= ``variance_floor`` (F,).

    hmmlearn's ``min_covar`` only shapes the *initial* covariances; during EM a
    state may still shrink onto a repeated value (a feature clipped by the
    scaler, a flat stretch) with variance -> 0 and likelihood -> infinity, or go
    negative by cancellation. Flooring inside the M-step keeps EM on the
    constrained problem instead of repairing a collapsed solution afterwards.
    """

    variance_floor: np.ndarray

    def _do_mstep(self, stats: dict[str, Any]) -> None:
        super()._do_mstep(stats)
        full = self.covars_  # type: ignore[has-type]  # (K, F, F) even for diag
        self.covars_ = np.maximum(np.diagonal(full, axis1=1, axis2=2), self.variance_floor)


def _em_once(x: np.ndarray, lengths: Sequence[int] | None, n_states: int, random_state: int,
             n_iter: int, tol: float, floor: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """One EM run from one hmmlearn initialisation: (train log-likelihood, params)."""
    model = FlooredGaussianHMM(n_components=n_states, covariance_type="diag",
                               min_covar=float(floor.min()), n_iter=n_iter, tol=tol,
                               random_state=random_state, params="tmc", init_params="tmc",
                               implementation="log")
    model.variance_floor = floor
    # startprob stays uniform: one training sequence says almost nothing about bar 0's
    # state, and an EM estimate there collapses to one-hot, pinning every new sequence
    model.startprob_ = np.full(n_states, 1.0 / n_states)
    with threadpool_limits(limits=1):  # one thread: same k-means init on any machine; and
        model.fit(x, lengths)  # 40x faster here than two OpenMP threads on shared cores
    variances = np.maximum(np.diagonal(model.covars_, axis1=1, axis2=2), floor)  # (K, F)
    found = {"startprob": np.array(model.startprob_), "transmat": np.array(model.transmat_),
             "means": np.array(model.means_), "variances": variances}
    if not all(np.isfinite(v).all() for v in found.values()):
        return -np.inf, found
    return float(model.score(x, lengths)), found


def best_em(x: np.ndarray, lengths: Sequence[int] | None, n_states: int, seed: int,
            n_init: int, n_iter: int, tol: float, var_floor: float,
            on_init: Callable[[int, float], None] | None = None) -> dict[str, np.ndarray]:
    """The EM run with the highest training log-likelihood over ``n_init`` derived seeds.

    Args:
        x: (N, F) checked training features; lengths: sequence sizes or None.
        n_states: K. seed: derives one ``random_state`` per init.
        n_init / n_iter / tol: EM restarts, iteration cap, stopping gain.
        var_floor: variances stay >= ``var_floor`` x each feature's training variance
            (a constant feature counts as variance 1).
        on_init: called with (init index, training log-likelihood) after each init.

    Returns:
        startprob (K,), transmat (K, K), means (K, F), variances (K, F).

    Raises:
        ValueError: no init gave finite parameters.
    """
    spread = x.var(axis=0)
    floor = var_floor * np.where(spread > 0, spread, 1.0)  # (F,)
    seeds = np.random.SeedSequence(seed).generate_state(n_init)
    best_ll, best = -np.inf, None
    for i, s in enumerate(seeds):
        ll, found = _em_once(x, lengths, n_states, int(s), n_iter, tol, floor)
        log.debug("hmm init %d/%d: train log-likelihood %.4f", i + 1, n_init, ll)
        if on_init is not None:
            on_init(i, ll)
        if best is None or ll > best_ll:  # strict: the first of equal runs wins
            best_ll, best = ll, found
    if best is None or not np.isfinite(best_ll):
        raise ValueError(f"EM gave no finite model in {n_init} init(s) with n_states="
                         f"{n_states}; use fewer states or more varied features")
    return best

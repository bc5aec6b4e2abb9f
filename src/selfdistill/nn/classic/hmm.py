"""Causal Gaussian HMM regime classifier: the model and its forward filter (NumPy only).

The model has K hidden states with diagonal Gaussian emissions over the F
features. It is fitted without labels (Baum-Welch, via hmmlearn's
``GaussianHMM``) on training rows only; the training labels are used once,
afterwards, to turn states into classes: ``state_to_class[k, c] = P(class c |
state k)``, estimated from the *filtered* training posteriors as soft counts
plus a Laplace prior. A prediction for bar t is ``filter_proba(x)[t] @
state_to_class``.

Why not hmmlearn's ``predict`` / ``predict_proba`` / ``score_samples``: they
run forward-backward over the whole sequence passed in, so the posterior at
bar t is conditioned on bars t+1, t+2, ... (smoothing), and ``predict`` is a
Viterbi path, also decided with the future in view. Both leak the future into
every bar but the last one (hmmlearn issues 355, 496, 540; issue 579 asks for a
causal API, which 0.3.3 does not have). Here the posterior of bar t is the
normalised forward variable alpha_t, which reads observations <= t only; it is
identical to the smoothed posterior at the *final* bar of ``x[: t + 1]``, which
the tests use as the reference.

States are unordered and EM finds a local optimum, so several initialisations
are run from seeds derived from ``seed`` and the highest training
log-likelihood wins; the same seed gives the same parameters (EM runs with
one BLAS / OpenMP thread, so also on machines with other core counts). Fitting
lives in :mod:`selfdistill.methods.hmm` (EM in :mod:`selfdistill.methods.hmm_em`);
this module needs NumPy only.

References:
    Rabiner, "A tutorial on hidden Markov models ...", Proc. IEEE 77(2), 1989
    (forward algorithm with per-step scaling, section V.A).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from selfdistill.nn.classic.checks import check_arrays, check_features

__all__ = [
    "COVARIANCE_TYPES",
    "HMMParams",
    "filter_proba",
    "from_arrays",
    "predict_proba",
    "segments",
    "to_arrays",
]

COVARIANCE_TYPES = ("diag",)
_LOG_2PI = float(np.log(2.0 * np.pi))
_SUM_TOL = 1e-6  # stored distributions must sum to 1 within this
_SHAPES: dict[str, tuple[str, ...]] = {
    "startprob": ("K",), "transmat": ("K", "K"), "means": ("K", "F"),
    "variances": ("K", "F"), "state_to_class": ("K", "C"),
}


@dataclass(frozen=True)
class HMMParams:
    """A fitted HMM; read-only float64 arrays, checked on construction.

    Attributes:
        startprob: (K,) initial state distribution.
        transmat: (K, K) ``transmat[i, j] = P(state j at t + 1 | state i at t)``.
        means: (K, F) emission means.
        variances: (K, F) diagonal emission variances, all > 0.
        state_to_class: (K, C) ``P(class c | state k)``; rows sum to 1.
    """

    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    state_to_class: np.ndarray

    def __post_init__(self) -> None:
        arrays = check_arrays({f.name: getattr(self, f.name) for f in fields(self)}, _SHAPES)
        k = arrays["startprob"].shape[0]
        if k < 2:
            raise ValueError(f"an HMM needs at least 2 states, got {k}")
        for name in ("startprob", "transmat", "state_to_class"):
            _check_distribution(arrays[name], name)
        if (arrays["variances"] <= 0).any():
            raise ValueError("variances must all be > 0, got min "
                             f"{arrays['variances'].min()}")
        for name, arr in arrays.items():
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def n_states(self) -> int:
        return int(self.means.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.state_to_class.shape[1])


def _check_distribution(p: np.ndarray, name: str) -> None:
    """ValueError unless every row of ``p`` is non-negative and sums to 1."""
    sums = p.sum(axis=-1)
    if (p < 0).any() or not np.allclose(sums, 1.0, rtol=0.0, atol=_SUM_TOL):
        raise ValueError(f"{name} rows must be probability distributions (>= 0, sum 1); "
                         f"got min {p.min():.3g}, row sums {np.atleast_1d(sums)[:5]}")


def to_arrays(params: HMMParams) -> dict[str, np.ndarray]:
    """Name -> float64 array copies, ready for ``safetensors.numpy.save_file``."""
    return {f.name: np.array(getattr(params, f.name)) for f in fields(params)}


def from_arrays(arrays: dict[str, np.ndarray]) -> HMMParams:
    """:class:`HMMParams` from :func:`to_arrays` output; ValueError on bad keys/shapes/values."""
    return HMMParams(**check_arrays(arrays, _SHAPES))


def segments(lengths: Sequence[int] | None, n_rows: int) -> list[tuple[int, int]]:
    """(start, stop) of each independent sequence; None means one sequence of ``n_rows``."""
    if lengths is None:
        return [(0, n_rows)]
    sizes = np.asarray(lengths)
    if sizes.ndim != 1 or sizes.size == 0 or sizes.dtype.kind not in "iu" or (sizes < 1).any():
        raise ValueError(f"lengths must be a non-empty sequence of positive integers, "
                         f"got {lengths!r}")
    if int(sizes.sum()) != n_rows:
        raise ValueError(f"lengths sum to {int(sizes.sum())} but x has {n_rows} rows")
    stops = np.cumsum(sizes)
    return [(int(b - s), int(b)) for s, b in zip(sizes, stops, strict=True)]


def _log_emissions(means: np.ndarray, variances: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(T, K) log N(x_t | mean_k, diag var_k).

    Element-wise operations and a reduction over the feature axis only, so row t
    depends on ``x[t]`` alone and is bit-identical whatever rows surround it (a
    matrix product could pick a different BLAS kernel for a longer ``x``).
    """
    diff = x[:, None, :] - means[None, :, :]  # (T, K, F)
    maha = (diff * diff / variances[None, :, :]).sum(axis=-1)  # (T, K)
    log_det = np.log(variances).sum(axis=-1)  # (K,)
    return -0.5 * (maha + log_det[None, :] + means.shape[1] * _LOG_2PI)


def _forward(log_b: np.ndarray, startprob: np.ndarray, transmat: np.ndarray) -> np.ndarray:
    """(T, K) normalised forward variables alpha_t = P(state_t | obs_0..t).

    Args:
        log_b: (T, K) log emission densities of one sequence.
        startprob: (K,) initial distribution.
        transmat: (K, K) transition matrix.
    """
    alpha = np.empty_like(log_b)
    prior = startprob  # (K,) P(state_t | obs_0..t-1)
    with np.errstate(divide="ignore"):  # a zero prior is log 0 = -inf: that state is ruled out
        for t in range(log_b.shape[0]):
            log_a = np.log(prior) + log_b[t]  # (K,) unnormalised, in log space
            a = np.exp(log_a - log_a.max())  # the max is finite: prior sums to 1, log_b finite
            alpha[t] = a / a.sum()
            prior = alpha[t] @ transmat
    return alpha


def filter_proba(params: HMMParams, x: np.ndarray, *,
                 lengths: Sequence[int] | None = None) -> np.ndarray:
    """(T, K) filtered state probabilities: row t conditions on ``x[: t + 1]`` only.

    Never smoothed and never Viterbi (hmmlearn's ``predict_proba`` / ``predict``
    are; see the module docstring): appending or changing rows after t leaves
    rows <= t bit-identical.

    Args:
        params: a fitted model.
        x: (T, F) features in time order.
        lengths: sizes of consecutive independent sequences in ``x`` (each restarts
            from ``startprob``), e.g. around gaps; None: one sequence.

    Returns:
        (T, K) float64, rows sum to 1.

    Example:
        >>> p = HMMParams(startprob=np.array([0.5, 0.5]), transmat=np.array([[0.9, 0.1],
        ...               [0.1, 0.9]]), means=np.array([[-1.0], [1.0]]),
        ...               variances=np.ones((2, 1)), state_to_class=np.eye(2))
        >>> filter_proba(p, np.array([[1.0], [1.0], [-1.0]])).round(3).tolist()
        [[0.119, 0.881], [0.032, 0.968], [0.515, 0.485]]
    """
    x = check_features(x, "x", params.n_features)
    log_b = _log_emissions(params.means, params.variances, x)  # (T, K)
    alpha = np.empty_like(log_b)
    for start, stop in segments(lengths, x.shape[0]):
        alpha[start:stop] = _forward(log_b[start:stop], params.startprob, params.transmat)
    return alpha


def predict_proba(params: HMMParams, x: np.ndarray, *,
                  lengths: Sequence[int] | None = None) -> np.ndarray:
    """(T, C) causal class probabilities ``filter_proba(x) @ state_to_class``; rows sum to 1.

    Args:
        params: a fitted model.
        x: (T, F) features in time order.
        lengths: as for :func:`filter_proba`.
    """
    alpha = filter_proba(params, x, lengths=lengths)  # (T, K)
    # broadcast-and-sum, not ``@``: BLAS may pick another kernel for another T, and a
    # 1-ulp change in a past row would break the bit-exact causality guarantee
    proba = (alpha[:, None, :] * params.state_to_class.T[None, :, :]).sum(axis=-1)  # (T, C)
    return proba / proba.sum(axis=1, keepdims=True)

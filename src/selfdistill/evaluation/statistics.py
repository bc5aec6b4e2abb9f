"""The verdict engine: paired tests on per-bar evidence, with a proven error rate.

What a comparison tests. Two outputs (a candidate and a reference) were scored on the
same test bars, in ``S`` seeds. Per bar ``t`` and seed ``s`` a *differential*
``d[s, t]`` is the candidate's per-bar score minus the reference's (0-1 correctness,
log-likelihood, Brier score, or a Sharpe ratio's per-bar influence). The estimate is
the mean of ``d``; its variance has two parts:

* **bars** (the evidence): the seed-averaged series ``mean_s d[s, t]`` is
  autocorrelated (overlapping label windows, persistent regimes), so its variance
  is a long-run variance. It is estimated with the equal-weighted cosine (EWC)
  estimator and referred to Student t with ``nu`` degrees of freedom, the
  fixed-b recommendation of Lazarus, Lewis, Stock & Watson (2018) for the
  Diebold-Mariano (1995) test; ``nu`` is the smaller of their rule
  ``0.4 T^(2/3)`` and an AR(1) plug-in, so strongly persistent series get fewer
  degrees of freedom (wider intervals) instead of a wrong error rate.
* **training** (seeds): how much each (fold, seed) cell's mean difference moves
  around its fold's mean, pooled over folds. Seeds share the test bars, so they are
  never counted as independent bars; they only tell how much the *training* moves
  the difference. With one seed the verdict is conditional on the trained models.

The two variances add; Satterthwaite's formula gives the degrees of freedom of the
sum. Where no valid test exists the result is :data:`NOT_TESTABLE` with the reason.
Many comparisons are adjusted as one family (Holm 1979, or Benjamini-Hochberg
1995). The false-positive rate and coverage of every test here are checked by
simulating the null (:mod:`.nullsim`) in the test suite.

References:
    Diebold & Mariano (1995); Harvey, Leybourne & Newbold (1997);
    Lazarus, Lewis, Stock & Watson (2018), "HAR inference: recommendations for
    practice", JBES 36(4); Ledoit & Wolf (2008) for the Sharpe ratio's delta method;
    Politis & Romano (1994) and Politis & White (2004) for block bootstraps.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

__all__ = [
    "BETTER",
    "MIN_BARS",
    "NOT_TESTABLE",
    "NO_DIFFERENCE",
    "WORSE",
    "TestResult",
    "adjust_pvalues",
    "ewc_degrees_of_freedom",
    "ewc_variance_of_mean",
    "fold_interval",
    "mean_difference_batch",
    "mean_difference_test",
    "not_testable",
    "sharpe_difference_test",
    "sharpe_pseudo_values",
    "verdict_of",
]

BETTER, WORSE = "better", "worse"
NO_DIFFERENCE, NOT_TESTABLE = "no significant difference", "not testable"
#: Fewest test bars for a per-bar test.
MIN_BARS = 30
_LLSW_C = 0.4  # nu = 0.4 T^(2/3) (Lazarus et al. 2018)
_OMEGA_REF = 2 * 0.7 / (1 - 0.7) ** 2  # the AR(1) curvature their rule was tuned for
#: Halves the plug-in's degrees of freedom: with the full plug-in, differentials as
#: persistent as AR(1) rho = 0.9 were called significant 8.8% of the time over 250
#: bars (6.9% with the half; nullsim, 2000 draws); iid power is unchanged.
_PLUGIN_SHRINK = 0.5
#: Sharpe tests cap the degrees of freedom at this times sqrt(T).
_SHARPE_DF = 0.4


@dataclass(frozen=True)
class TestResult:
    """A paired test of candidate minus reference.

    Attributes:
        estimate: the mean difference (candidate - reference), in the metric's units.
        ci_low / ci_high: its ``level`` interval (None when not testable).
        p_value: two-sided p-value of "no difference" (None when not testable).
        df: degrees of freedom of the Student-t reference.
        n_bars / n_seeds / n_folds: the evidence used.
        method: how it was tested (``ewc-dm``, ``fold-t``, ``identical``).
        reason: why it is not testable (None when it is).
    """

    estimate: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    df: float | None
    n_bars: int
    n_seeds: int
    n_folds: int
    method: str
    reason: str | None = None

    @property
    def testable(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)

    def rescaled(self, factor: float = 1.0, offset: float = 0.0) -> TestResult:
        """The same test in other units: ``factor * value + offset`` (factor > 0), e.g. an
        annualised Sharpe ratio, or an AUROC tested as its distance from 0.5."""
        def s(v: float | None) -> float | None:
            return None if v is None else v * factor + offset
        return replace(self, estimate=self.estimate * factor + offset, ci_low=s(self.ci_low),
                       ci_high=s(self.ci_high))


def not_testable(estimate: float, reason: str, *, n_bars: int = 0, n_seeds: int = 0,
                 n_folds: int = 0) -> TestResult:
    """A result that makes no claim, with the reason shown to the user."""
    return TestResult(estimate, None, None, None, None, n_bars, n_seeds, n_folds,
                      "none", reason)


# ------------------------------------------------------------------ long-run variance


def _autocovariances(xc: np.ndarray, lags: int) -> np.ndarray:
    """(lags + 1, ...) sums ``sum_t xc[t + k] xc[t]`` for k = 0..lags of demeaned (..., T).

    Through the FFT (zero-padded, so the circular products are the linear ones): O(T log T)
    instead of O(T * lags), which is what lets a 2M-bar test split be tested at all.
    """
    from scipy import fft

    n = xc.shape[-1]
    size = fft.next_fast_len(n + lags + 1, real=True)
    spectrum = fft.rfft(xc, size, axis=-1)
    sums = fft.irfft(spectrum.real**2 + spectrum.imag**2, size, axis=-1)[..., :lags + 1]
    return np.moveaxis(sums, -1, 0)


def _persistence(x: np.ndarray) -> np.ndarray:
    """(...,) the AR(1) coefficient with the same long-run / short-run variance ratio.

    A preliminary Bartlett estimate over ``2 sqrt(T)`` lags gives the ratio R of the
    long-run variance to the variance; an AR(1) with rho = (R - 1) / (R + 1) has the
    same ratio. Unlike the lag-1 autocorrelation this is not fooled by persistent
    differentials buried in bar-to-bar noise (an ARMA(1, 1)).
    """
    n = x.shape[-1]
    xc = x - x.mean(axis=-1, keepdims=True)
    lags = max(1, int(2 * np.sqrt(n)))
    used = min(lags, n - 1)
    sums = _autocovariances(xc, used) / n  # (used + 1, ...)
    g0 = (xc**2).mean(axis=-1)
    weights = 2 * (1 - np.arange(1, used + 1) / (lags + 1))  # Bartlett
    long_run = np.tensordot(weights, sums[1:], axes=1)
    ratio = 1 + np.divide(long_run, g0, out=np.zeros_like(g0), where=g0 > 0)
    ratio = np.maximum(ratio, 1.0)
    return np.clip((ratio - 1) / (ratio + 1), 0.0, 0.97)


def ewc_degrees_of_freedom(x: np.ndarray) -> np.ndarray:
    """(...,) EWC degrees of freedom nu for series (..., T).

    ``min(0.4 T^(2/3), plug-in)``: the plug-in scales Lazarus et al.'s rule by the
    AR(1) curvature ``2 rho / (1 - rho)^2`` relative to rho = 0.7, to the power -2/3
    (their optimal-nu formula), halved, so persistent series get fewer degrees of
    freedom; rho is the persistence of :func:`_persistence`.
    """
    n = x.shape[-1]
    rho = _persistence(x)
    base = _LLSW_C * n ** (2.0 / 3.0)
    omega = np.maximum(2 * rho / (1 - rho) ** 2, 1e-12)
    plug_in = _PLUGIN_SHRINK * base * (omega / _OMEGA_REF) ** (-2.0 / 3.0)
    nu = np.floor(np.minimum(base, plug_in))
    return np.clip(nu, 2, max(2, n // 2)).astype(np.int64)


def _cosine_projections(x: np.ndarray, nu_max: int) -> np.ndarray:
    """(nu_max, ...) projections of demeaned (..., T) on sqrt(2/T) cos(pi j (t+1/2)/T).

    These are the DCT-II coefficients 1..nu_max, scaled: O(T log T) through the FFT
    instead of a (nu_max, T) basis (at 2M bars nu is ~6000: 100 GB).
    """
    from scipy import fft

    n = x.shape[-1]
    xc = x - x.mean(axis=-1, keepdims=True)
    coef = fft.dct(xc, type=2, axis=-1)[..., 1:nu_max + 1]  # 2 sum_t x_t cos(pi j (2t+1) / 2T)
    return np.moveaxis(coef * np.sqrt(0.5 / n), -1, 0)


def ewc_variance_of_mean(x: np.ndarray, max_df: float | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Variance of the mean of (..., T) and its degrees of freedom, both (...,)."""
    n = x.shape[-1]
    nu = ewc_degrees_of_freedom(x)
    if max_df is not None:
        nu = np.minimum(nu, max(2, int(max_df)))
    lam2 = _cosine_projections(x, int(nu.max())) ** 2  # (nu_max, ...)
    csum = np.cumsum(lam2, axis=0)
    omega = np.take_along_axis(csum, (nu - 1)[None, ...], axis=0)[0] / nu
    return omega / n, nu.astype(np.float64)


# ------------------------------------------------------------------ the tests


def _combine(v_bars: np.ndarray, df_bars: np.ndarray, v_seeds: np.ndarray,
             df_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of two variance estimates and its Satterthwaite degrees of freedom."""
    total = v_bars + v_seeds
    if df_seeds < 1:
        return total, df_bars
    den = v_bars**2 / df_bars + v_seeds**2 / df_seeds
    df = np.divide(total**2, den, out=df_bars.copy(), where=den > 0)
    return total, df


def _t_results(mean: np.ndarray, var: np.ndarray, df: np.ndarray, level: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    se = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = np.where(se > 0, mean / np.where(se > 0, se, 1.0), 0.0)
    from scipy import stats  # here, not at the top: readers of aggregates (the report) skip it

    p = 2 * stats.t.sf(np.abs(tstat), df)
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return p, mean - half, mean + half


def _training_variance(d: np.ndarray, fold_sizes: Sequence[int]) -> tuple[np.ndarray, int]:
    """Variance of the mean from training randomness, and its degrees of freedom.

    Each (fold, seed) cell's mean differential moves with its training; within a fold
    the seeds share the bars, so the spread of cell means around their fold's mean,
    pooled over folds (``K (S - 1)`` degrees of freedom), estimates it. The grand mean
    weighs fold k by its share of bars w_k: variance ``sigma^2 sum(w_k^2) / S``.
    """
    n_seeds = d.shape[1]
    bounds = np.cumsum([0, *fold_sizes])
    cells = np.stack([d[..., a:b].mean(axis=-1) for a, b in itertools.pairwise(bounds)], axis=-1)
    within = cells - cells.mean(axis=1, keepdims=True)  # (B, S, K)
    df = len(fold_sizes) * (n_seeds - 1)
    sigma2 = (within**2).sum(axis=(1, 2)) / df
    weights = np.asarray(fold_sizes, dtype=np.float64) / bounds[-1]
    return sigma2 * float((weights**2).sum()) / n_seeds, df


def mean_difference_batch(d: np.ndarray, *, fold_sizes: Sequence[int] | None = None,
                          level: float = 0.95, max_df: float | None = None
                          ) -> dict[str, np.ndarray]:
    """The test of :func:`mean_difference_test` on a batch (B, S, T) of differentials.

    Returns arrays of shape (B,): ``estimate``, ``p_value``, ``ci_low``, ``ci_high``,
    ``df``. Used by the null simulations; no input checks.
    """
    n_seeds = d.shape[1]
    sizes = list(fold_sizes) if fold_sizes is not None else [d.shape[-1]]
    bar_series = d.mean(axis=1)  # (B, T): seeds averaged per bar
    estimate = bar_series.mean(axis=-1)
    v_bars, df_bars = ewc_variance_of_mean(bar_series, max_df)
    if n_seeds > 1:
        v_seeds, df_seeds = _training_variance(d, sizes)
    else:
        v_seeds, df_seeds = np.zeros_like(v_bars), 0
    var, df = _combine(v_bars, df_bars, v_seeds, df_seeds)
    p, low, high = _t_results(estimate, var, df, level)
    return {"estimate": estimate, "p_value": p, "ci_low": low, "ci_high": high, "df": df}


def _fold_sizes(fold_sizes: Sequence[int] | None, n_bars: int) -> list[int]:
    sizes = [n_bars] if fold_sizes is None else [int(n) for n in fold_sizes]
    if sum(sizes) != n_bars or min(sizes) < 1:
        raise ValueError(f"fold sizes {sizes} must be positive and add up to {n_bars} bars")
    return sizes


def _as_seeds_by_bars(d: np.ndarray | Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(d, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected (seeds, bars) differentials, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: differentials must be finite")
    return arr


def mean_difference_test(d: np.ndarray | Sequence[float], *,
                         fold_sizes: Sequence[int] | None = None, level: float = 0.95,
                         max_df: float | None = None) -> TestResult:
    """Test whether per-bar differentials ``d`` (seeds, bars) have mean zero.

    Args:
        d: (S, T) or (T,) candidate-minus-reference score per seed and test bar, bars
            in time order (folds' test blocks concatenated).
        fold_sizes: bars of each fold, in order (sum T); None: one fold. Seeds of a
            fold share its bars; their spread within folds measures training noise.
        level: interval coverage.
        max_df: a cap on the bars' degrees of freedom (fewer = more conservative).
    """
    arr = _as_seeds_by_bars(d, "mean_difference_test")
    n_seeds, n_bars = arr.shape
    sizes = _fold_sizes(fold_sizes, n_bars)
    n_folds = len(sizes)
    estimate = float(arr.mean())
    if not np.any(arr != arr.flat[0]):
        if estimate == 0.0:
            return TestResult(0.0, 0.0, 0.0, 1.0, None, n_bars, n_seeds, n_folds, "identical")
        return not_testable(estimate, "the difference is the same on every bar",
                            n_bars=n_bars, n_seeds=n_seeds, n_folds=n_folds)
    if n_bars < MIN_BARS:
        return not_testable(estimate, f"{n_bars} test bars; a per-bar test needs at least "
                            f"{MIN_BARS}", n_bars=n_bars, n_seeds=n_seeds, n_folds=n_folds)
    out = mean_difference_batch(arr[None], fold_sizes=sizes, level=level, max_df=max_df)
    return TestResult(estimate, float(out["ci_low"][0]), float(out["ci_high"][0]),
                      float(out["p_value"][0]), float(out["df"][0]), n_bars, n_seeds,
                      n_folds, "ewc-dm")


def sharpe_pseudo_values(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar Sharpe ratio plus its delta-method influence, and the Sharpe, per series.

    For returns r (..., T) with mean m and second moment q, SR = m / sqrt(q - m^2);
    the influence of bar t is dSR/dm (r_t - m) + dSR/dq (r_t^2 - q), with
    dSR/dm = q / sigma^3 and dSR/dq = -m / (2 sigma^3) (Ledoit & Wolf 2008). The mean
    of the pseudo-values SR + influence is SR, and their long-run variance over T is
    the delta method's variance of SR.
    """
    m = returns.mean(axis=-1, keepdims=True)
    q = (returns**2).mean(axis=-1, keepdims=True)
    sigma = np.sqrt(np.maximum(q - m**2, 0.0))
    safe = np.where(sigma > 0, sigma, 1.0)
    sr = np.where(sigma > 0, m / safe, 0.0)
    influence = (q / safe**3) * (returns - m) - (m / (2 * safe**3)) * (returns**2 - q)
    influence = np.where(sigma > 0, influence, 0.0)
    return sr + influence, sr[..., 0]


def sharpe_difference_test(candidate: np.ndarray, reference: np.ndarray, *,
                           periods_per_year: float = 1.0,
                           fold_sizes: Sequence[int] | None = None,
                           level: float = 0.95) -> TestResult:
    """Test equal Sharpe ratios of two strategies' per-bar net returns (seeds, bars).

    The estimate is the mean over seeds of each seed's Sharpe difference over the
    pooled test bars, annualised by ``sqrt(periods_per_year)``. A strategy that is
    never in the market (all returns 0) has Sharpe ratio 0, so comparing with
    ``always_flat`` tests the other's Sharpe ratio against 0. Strategy returns hide
    a small, very persistent part (a held position times the asset's drift) that a
    long-run variance over many cosines misses: with ``0.4 T^(2/3)`` degrees of
    freedom, equal-Sharpe strategies holding positions ~20 bars were called different
    10% of the time; the cap ``0.4 sqrt(T)`` brings it to about 5% (nullsim).
    """
    a = _as_seeds_by_bars(candidate, "sharpe_difference_test candidate")
    b = _as_seeds_by_bars(reference, "sharpe_difference_test reference")
    if a.shape != b.shape:
        raise ValueError(f"sharpe_difference_test: shapes {a.shape} and {b.shape} differ")
    scale = math.sqrt(periods_per_year)
    if np.array_equal(a, b):
        return TestResult(0.0, 0.0, 0.0, 1.0, None, a.shape[1], a.shape[0],
                          len(_fold_sizes(fold_sizes, a.shape[1])), "identical")
    pa, sra = sharpe_pseudo_values(a)
    pb, srb = sharpe_pseudo_values(b)
    if not b.any():  # never in the market (always flat): its Sharpe ratio is 0
        pb = np.zeros_like(pa)
    elif not a.any():
        pa = np.zeros_like(pb)
    still = [name for name, r in (("candidate", a), ("reference", b))
             if r.any() and np.any(np.ptp(r, axis=-1) == 0)]
    if still:
        return not_testable(float((sra - srb).mean()) * scale,
                            f"the {' and '.join(still)} returns do not vary (no Sharpe ratio)",
                            n_bars=a.shape[1], n_seeds=a.shape[0],
                            n_folds=len(_fold_sizes(fold_sizes, a.shape[1])))
    result = mean_difference_test(pa - pb, fold_sizes=fold_sizes, level=level,
                                  max_df=_SHARPE_DF * math.sqrt(a.shape[1]))
    return result.rescaled(scale)


def fold_interval(values: Sequence[float] | np.ndarray, *, level: float = 0.95
                  ) -> TestResult:
    """Mean of per-fold values (seeds already averaged) with a Student-t interval.

    Folds are the independent unit here; one fold gives no interval.
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError("fold_interval: needs finite per-fold values")
    mean = float(arr.mean())
    if arr.size < 2:
        return not_testable(mean, "1 fold: use evaluation.scheme walk_forward with folds >= 2",
                            n_folds=1)
    var = np.array(arr.var(ddof=1) / arr.size)
    p, low, high = _t_results(np.array(mean), var, np.array(arr.size - 1.0), level)
    return TestResult(mean, float(low), float(high), float(p), float(arr.size - 1), 0, 0,
                      int(arr.size), "fold-t")


# ------------------------------------------------------------------ families and words


def adjust_pvalues(p_values: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Holm (family-wise error) or Benjamini-Hochberg (false discovery rate) adjustment."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate((m - np.arange(m)) * ranked)
    elif method == "bh":
        adj = np.minimum.accumulate((m / np.arange(1, m + 1) * ranked)[::-1])[::-1]
    else:
        raise ValueError(f"p-value adjustment '{method}' is not one of holm, bh")
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def verdict_of(result: TestResult, p_adjusted: float | None, *, higher_better: bool,
               alpha: float = 0.05) -> str:
    """``better`` / ``worse`` / ``no significant difference`` / ``not testable``."""
    if not result.testable or p_adjusted is None:
        return NOT_TESTABLE
    if p_adjusted >= alpha or result.estimate == 0:
        return NO_DIFFERENCE
    return BETTER if (result.estimate > 0) == higher_better else WORSE

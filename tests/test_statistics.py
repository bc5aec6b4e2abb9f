"""The verdict engine: reference values, edge cases, and simulations of the null.

The simulations are the proof that a verdict means what a 95% claim means: under
the null (no real difference) the engine says "better" or "worse" at most 5% of the
time plus Monte-Carlo error, its intervals cover the truth at least 93% of the time,
and a real difference of a stated size is found with a stated probability.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from selfdistill.evaluation import nullsim
from selfdistill.evaluation.ranking import auroc, auroc_comparison, auroc_pseudo_values
from selfdistill.evaluation.statistics import (
    BETTER,
    MIN_BARS,
    NO_DIFFERENCE,
    NOT_TESTABLE,
    WORSE,
    adjust_pvalues,
    ewc_degrees_of_freedom,
    ewc_variance_of_mean,
    fold_interval,
    mean_difference_test,
    sharpe_difference_test,
    sharpe_pseudo_values,
    verdict_of,
)

FOLDS = (1, 2, 3, 4, 5, 10, 20)


# ------------------------------------------------------------------ reference values


def test_ewc_variance_matches_its_formula() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(400)
    var, df = ewc_variance_of_mean(x)
    nu = int(df)
    t = (np.arange(400) + 0.5) / 400
    lam = [np.sqrt(2 / 400) * np.sum(np.cos(np.pi * j * t) * (x - x.mean()))
           for j in range(1, nu + 1)]
    assert float(var) == pytest.approx(np.mean(np.square(lam)) / 400, rel=1e-12)


def test_ewc_degrees_of_freedom_follow_the_rule_and_shrink_with_persistence() -> None:
    rng = np.random.default_rng(1)
    white = rng.standard_normal(1000)
    assert int(ewc_degrees_of_freedom(white)) == math.floor(0.4 * 1000 ** (2 / 3))
    persistent = nullsim.ar1(rng, (1000,), 0.9)
    assert int(ewc_degrees_of_freedom(persistent)) < 10


def test_mean_difference_test_on_iid_data_is_close_to_the_t_test() -> None:
    rng = np.random.default_rng(2)
    d = rng.standard_normal(2000) + 0.05
    res = mean_difference_test(d)
    t = stats.ttest_1samp(d, 0.0)
    assert res.estimate == pytest.approx(d.mean())
    assert res.p_value == pytest.approx(t.pvalue, rel=0.35)
    assert res.ci_low < d.mean() < res.ci_high
    assert res.method == "ewc-dm"


def test_seeds_share_bars_and_add_only_their_training_spread() -> None:
    rng = np.random.default_rng(3)
    bars = rng.standard_normal(500)
    same = np.stack([bars] * 5)  # 5 seeds, identical differentials
    one = mean_difference_test(bars)
    five = mean_difference_test(same)
    # copies of the same bars are no new evidence: the interval does not shrink
    assert five.ci_high - five.ci_low == pytest.approx(one.ci_high - one.ci_low)
    shifted = same + rng.normal(0, 0.3, size=(5, 1))  # each seed's training shift
    assert (mean_difference_test(shifted).ci_high - mean_difference_test(shifted).ci_low
            > one.ci_high - one.ci_low)


def test_identical_outputs_differ_by_exactly_zero() -> None:
    res = mean_difference_test(np.zeros((3, 400)))
    assert (res.estimate, res.ci_low, res.ci_high, res.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert res.method == "identical"
    r = np.random.default_rng(4).standard_normal((2, 300))
    assert sharpe_difference_test(r, r.copy()).method == "identical"


@pytest.mark.parametrize(("d", "reason"), [
    (np.full(100, 0.2), "the same on every bar"),
    (np.arange(MIN_BARS - 1, dtype=float), f"at least {MIN_BARS}"),
])
def test_not_testable_says_why(d: np.ndarray, reason: str) -> None:
    res = mean_difference_test(d)
    assert not res.testable
    assert reason in (res.reason or "")
    assert verdict_of(res, None, higher_better=True) == NOT_TESTABLE


def test_sharpe_pseudo_values_average_to_the_sharpe_ratio() -> None:
    r = np.random.default_rng(5).normal(0.001, 0.01, size=(2, 5000))
    pseudo, sr = sharpe_pseudo_values(r)
    assert np.allclose(pseudo.mean(axis=1), sr)
    assert np.allclose(sr, r.mean(axis=1) / r.std(axis=1))


def test_sharpe_variance_matches_the_iid_normal_formula() -> None:
    # Var(SR) = (1 + SR^2 / 2) / T for iid normal returns (Lo 2002)
    r = np.random.default_rng(6).normal(0.05, 1.0, size=20000)
    pseudo, sr = sharpe_pseudo_values(r[None])
    var = pseudo[0].var() / r.size
    assert var == pytest.approx((1 + sr[0] ** 2 / 2) / r.size, rel=0.05)


def test_sharpe_test_refuses_returns_that_never_vary() -> None:
    constant = np.full((1, 200), 1e-3)
    res = sharpe_difference_test(np.random.default_rng(7).normal(size=(1, 200)), constant)
    assert not res.testable
    assert "reference returns do not vary" in (res.reason or "")


def test_always_flat_means_testing_the_sharpe_ratio_against_zero() -> None:
    r = np.random.default_rng(12).normal(0.002, 0.01, size=(1, 3000))
    res = sharpe_difference_test(r, np.zeros_like(r))
    _pseudo, sr = sharpe_pseudo_values(r)
    assert res.estimate == pytest.approx(sr[0])
    assert res.p_value < 0.01
    assert sharpe_difference_test(np.zeros_like(r), r).estimate == pytest.approx(-sr[0])


def test_sharpe_test_is_annualised() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(0.002, 0.01, (1, 3000)), rng.normal(0.0, 0.01, (1, 3000))
    daily = sharpe_difference_test(a, b)
    yearly = sharpe_difference_test(a, b, periods_per_year=365)
    assert yearly.estimate == pytest.approx(daily.estimate * math.sqrt(365))
    assert yearly.p_value == pytest.approx(daily.p_value)


def test_fold_interval_is_the_student_t_interval() -> None:
    values = [0.51, 0.53, 0.49, 0.55]
    res = fold_interval(values)
    low, high = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert (res.ci_low, res.ci_high) == pytest.approx((low, high))
    one = fold_interval([0.5])
    assert not one.testable
    assert "1 fold" in (one.reason or "")


def test_holm_and_bh_match_textbook_values() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> monotone 0.02, 0.03, 0.06, 0.06
    assert adjust_pvalues(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted p*4/rank: 0.02, 0.02, 0.04, 0.04 (step-up minima)
    assert adjust_pvalues(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    with pytest.raises(ValueError, match="holm, bh"):
        adjust_pvalues(p, "bonferroni")


def test_verdict_words_follow_the_direction_of_the_metric() -> None:
    res = mean_difference_test(np.random.default_rng(9).normal(0.5, 1, 500))
    assert verdict_of(res, 0.001, higher_better=True) == BETTER
    assert verdict_of(res, 0.001, higher_better=False) == WORSE
    assert verdict_of(res, 0.2, higher_better=True) == NO_DIFFERENCE


def test_auroc_matches_scikit_learn_and_its_pseudo_values() -> None:
    rng = np.random.default_rng(10)
    score = rng.integers(0, 5, 600).astype(float)  # many ties
    err = rng.random(600) < 0.3 + 0.05 * score
    assert auroc(score, err) == pytest.approx(roc_auc_score(err, score))
    assert auroc_pseudo_values(score, err).mean() == pytest.approx(auroc(score, err))


def test_auroc_comparison_finds_an_informative_score() -> None:
    rng = np.random.default_rng(11)
    err = rng.random(2000) < 0.4
    good = err + rng.normal(0, 0.8, 2000)
    noise = rng.normal(size=2000)
    out = auroc_comparison({"good": good, "noise": noise}, err, reference="noise")
    assert out["good"]["auroc"]["ci_low"] > 0.6
    assert out["good"]["vs_reference"]["p_value"] < 1e-6
    few = auroc_comparison({"a": noise[:10]}, err[:10], reference="a")
    assert few["a"]["auroc"]["reason"] is not None


# ------------------------------------------------------------------ the null, simulated


def _mc_bound(p: float, n: int) -> float:
    return p + 3 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("scenario", list(nullsim.SCENARIOS))
def test_false_positive_rate_and_coverage_under_the_null(scenario: str) -> None:
    """1000 draws per fold count; <= 0.07 calls under the null, coverage >= 0.93."""
    for k, n_folds in enumerate(FOLDS):
        rates = nullsim.error_rates(nullsim.SCENARIOS[scenario], n_sims=1000,
                                    n_folds=n_folds, seed=100 + k)
        assert rates["rejections"] <= 0.07, (scenario, n_folds, rates)
        assert rates["coverage"] >= 0.93, (scenario, n_folds, rates)


def test_coverage_holds_away_from_zero() -> None:
    rates = nullsim.error_rates(nullsim.SCENARIOS["ar1(0.5)"], n_sims=1000, n_folds=4,
                                effect=0.3, seed=7)
    assert rates["coverage"] >= 0.93


def test_power_finds_a_real_difference() -> None:
    """0.12 (about 0.11 per-bar SD) over 1000 iid bars is found >= 85% of the time."""
    rates = nullsim.error_rates(nullsim.SCENARIOS["iid"], n_sims=1000, n_folds=4,
                                effect=0.12, seed=8)
    assert rates["rejections"] >= 0.85


def test_holm_controls_the_family_wise_error() -> None:
    d = nullsim.draw(nullsim.SCENARIOS["ar1(0.5)"], n_sims=2000, n_folds=2,
                     bars_per_fold=250, seed=9)
    p = np.array([mean_difference_test(d[i]).p_value for i in range(2000)])
    family = p.reshape(100, 20)  # 100 runs of 20 null comparisons each
    for method in ("holm", "bh"):  # under the complete null BH controls it too
        any_call = (np.array([adjust_pvalues(f, method) for f in family]) < 0.05).any(axis=1)
        assert any_call.mean() <= _mc_bound(0.05, 100), method
    assert (family < 0.05).any(axis=1).mean() > 0.4  # unadjusted, it would not be


def test_sharpe_test_false_positive_rate() -> None:
    rates = nullsim.sharpe_error_rates(n_sims=300, n_bars=1000, seed=10)
    assert rates["rejections"] <= _mc_bound(0.05, 300)


def test_auroc_interval_coverage_with_persistent_errors() -> None:
    rates = nullsim.auroc_error_rates(n_sims=300, n_bars=500, rho=0.9, seed=11)
    assert rates["coverage"] >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / 300)
    assert rates["rejections"] <= _mc_bound(0.05, 300)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(nullsim.SCENARIOS))
def test_false_positive_rate_with_4000_draws(scenario: str) -> None:
    for k, n_folds in enumerate(FOLDS):
        rates = nullsim.error_rates(nullsim.SCENARIOS[scenario], n_sims=4000,
                                    n_folds=n_folds, seed=200 + k)
        assert rates["rejections"] <= _mc_bound(0.05, 4000) + 0.01, (n_folds, rates)
        assert rates["coverage"] >= 0.93, (n_folds, rates)


def test_fast_long_run_variance_pieces_equal_their_definitions() -> None:
    # the FFT forms must equal the sums they replace (an O(T^2) basis / O(T^1.5) loop)
    from selfdistill.evaluation.statistics import _cosine_projections, _persistence

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 400)).cumsum(axis=-1) * 0.05 + rng.normal(size=(2, 3, 400))
    n, nu = x.shape[-1], 37
    t = (np.arange(n) + 0.5) / n
    basis = np.sqrt(2.0 / n) * np.cos(np.pi * np.outer(np.arange(1, nu + 1), t))
    xc = x - x.mean(axis=-1, keepdims=True)
    direct = np.tensordot(basis, xc, axes=([1], [-1]))
    assert np.allclose(_cosine_projections(x, nu), direct, rtol=0, atol=1e-12)
    lags = int(2 * np.sqrt(n))
    g0 = (xc**2).mean(axis=-1)
    ratio = 1 + sum(2 * (1 - k / (lags + 1)) * (xc[..., k:] * xc[..., :-k]).sum(axis=-1) / n
                    / g0 for k in range(1, lags + 1))
    rho = np.clip((np.maximum(ratio, 1) - 1) / (np.maximum(ratio, 1) + 1), 0, 0.97)
    assert np.allclose(_persistence(x), rho, rtol=0, atol=1e-12)
    assert (rho > 0.1).all()  # persistent series: the check is not vacuous

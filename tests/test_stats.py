"""Bootstrap intervals, paired comparisons and the direction of verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from selfdistill.errors import ConfigError, DataError
from selfdistill.evaluation.statistics import (
    BETTER,
    NO_DIFFERENCE,
    WORSE,
    bootstrap_interval,
    higher_is_better,
    paired_comparison,
    verdict,
)


def test_interval_brackets_the_mean_and_is_reproducible() -> None:
    values = np.random.default_rng(0).normal(0.55, 0.02, 25)
    a = bootstrap_interval(values, n_boot=1000, seed=3)
    b = bootstrap_interval(values, n_boot=1000, seed=3)
    assert a == b
    assert a.ci_low is not None
    assert a.ci_high is not None
    assert a.ci_low < a.mean < a.ci_high
    assert a.mean == pytest.approx(values.mean())
    assert a.n == 25


def test_interval_width_matches_the_standard_error() -> None:
    values = np.random.default_rng(1).normal(0.0, 1.0, 400)
    iv = bootstrap_interval(values, n_boot=4000)
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert iv.ci_high - iv.ci_low == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_coverage_of_the_95_interval_is_close_to_95_percent() -> None:
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(200):
        iv = bootstrap_interval(rng.normal(1.0, 1.0, 30), n_boot=400, seed=int(rng.integers(1e9)))
        hits += iv.ci_low <= 1.0 <= iv.ci_high  # type: ignore[operator]
    assert 0.85 <= hits / 200 <= 0.99


def test_one_value_has_no_interval() -> None:
    iv = bootstrap_interval([0.7])
    assert (iv.mean, iv.ci_low, iv.ci_high, iv.n) == (0.7, None, None, 1)
    assert iv.to_dict() == {"mean": 0.7, "ci_low": None, "ci_high": None, "n": 1}


def test_bad_inputs_raise_with_the_value() -> None:
    with pytest.raises(DataError, match="no values"):
        bootstrap_interval([])
    with pytest.raises(DataError, match="finite"):
        bootstrap_interval([1.0, float("nan")])
    with pytest.raises(ConfigError, match=r"1\.5"):
        bootstrap_interval([1.0, 2.0], level=1.5)
    with pytest.raises(DataError, match="cell by cell"):
        paired_comparison([1.0, 2.0], [1.0], metric="accuracy")


@pytest.mark.parametrize(
    ("metric", "shift", "expected"),
    [
        ("accuracy", +0.05, BETTER),
        ("accuracy", -0.05, WORSE),
        ("macro_f1", +0.05, BETTER),
        ("sharpe", -0.5, WORSE),
        ("nll", -0.05, BETTER),  # lower NLL is better
        ("nll", +0.05, WORSE),
        ("ece", -0.02, BETTER),
        ("ece", +0.02, WORSE),
    ],
)
def test_verdict_direction_per_metric(metric: str, shift: float, expected: str) -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(0.5, 0.05, 20)
    candidate = reference + shift + rng.normal(0, 0.005, 20)  # paired: cell noise cancels
    cmp = paired_comparison(candidate, reference, metric=metric, n_boot=1000)
    assert cmp.verdict == expected
    assert cmp.mean_diff == pytest.approx(shift, abs=0.01)


def test_pairing_finds_a_difference_an_unpaired_view_would_miss() -> None:
    rng = np.random.default_rng(5)
    fold_difficulty = rng.normal(0.5, 0.1, 15)  # dominates both methods
    reference = fold_difficulty + rng.normal(0, 0.002, 15)
    candidate = fold_difficulty + 0.01 + rng.normal(0, 0.002, 15)
    a = bootstrap_interval(candidate)
    b = bootstrap_interval(reference)
    assert a.ci_low < b.ci_high  # type: ignore[operator]  # the marginal intervals overlap
    assert paired_comparison(candidate, reference, metric="accuracy").verdict == BETTER


def test_no_difference_when_the_interval_contains_zero() -> None:
    rng = np.random.default_rng(6)
    reference = rng.normal(0.5, 0.05, 20)
    candidate = reference + rng.normal(0, 0.05, 20)
    cmp = paired_comparison(candidate, reference, metric="accuracy", seed=1)
    assert cmp.ci_low < 0 < cmp.ci_high  # type: ignore[operator]
    assert cmp.verdict == NO_DIFFERENCE


def test_identical_models_are_no_different_and_tiny_samples_claim_nothing() -> None:
    same = np.array([0.5, 0.6, 0.7])
    cmp = paired_comparison(same, same, metric="accuracy")
    assert (cmp.mean_diff, cmp.ci_low, cmp.ci_high, cmp.verdict) == (0.0, 0.0, 0.0, NO_DIFFERENCE)
    assert paired_comparison([0.9, 0.9], [0.1, 0.1], metric="accuracy").verdict == NO_DIFFERENCE


def test_verdict_function_and_directions() -> None:
    assert verdict(0.1, 0.2, higher_better=True) == BETTER
    assert verdict(0.1, 0.2, higher_better=False) == WORSE
    assert verdict(-0.2, -0.1, higher_better=False) == BETTER
    assert verdict(None, None, higher_better=True) == NO_DIFFERENCE
    assert not higher_is_better("nll")
    assert not higher_is_better("ece")
    assert higher_is_better("accuracy")
    assert higher_is_better("sharpe")

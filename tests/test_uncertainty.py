"""Tests for selfdistill.evaluation.uncertainty: disagreement measures and error by quantile."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from selfdistill.errors import DataError
from selfdistill.evaluation.uncertainty import disagreement, entropy, error_by_quantile


def random_probs(m: int, n: int, c: int = 3, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(0.0, 2.0, (m, n, c))
    return np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)


def test_identical_members_do_not_disagree() -> None:
    member = random_probs(1, 50)[0]
    d = disagreement(np.stack([member] * 4))
    np.testing.assert_allclose(d["variance"], 0.0, atol=1e-15)
    np.testing.assert_allclose(d["mutual_information"], 0.0, atol=1e-12)
    np.testing.assert_array_equal(d["flip_rate"], 0.0)
    np.testing.assert_allclose(d["entropy"], entropy(member))


def test_two_opposite_confident_members() -> None:
    probs = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # (M=2, N=1, C=2)
    d = disagreement(probs)
    assert d["variance"][0] == pytest.approx(0.25)  # var of {1, 0} is 1/4 for both classes
    assert d["entropy"][0] == pytest.approx(np.log(2))
    assert d["mutual_information"][0] == pytest.approx(np.log(2))  # members are certain
    assert d["flip_rate"][0] == 1.0


def test_hand_computed_three_members() -> None:
    probs = np.array([
        [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]],
        [[0.2, 0.7, 0.1], [0.2, 0.2, 0.6]],
        [[0.1, 0.8, 0.1], [0.3, 0.1, 0.6]],
    ])  # (M=3, N=2, C=3); sample 0 argmax 0, 1, 1; sample 1 argmax 2, 2, 2
    d = disagreement(probs)
    np.testing.assert_allclose(d["flip_rate"], [0.5, 0.0])
    var0 = np.mean([np.var([0.6, 0.2, 0.1]), np.var([0.3, 0.7, 0.8]), 0.0])
    assert d["variance"][0] == pytest.approx(var0)
    mean0 = np.array([0.3, 0.6, 0.1])
    h_mean = -np.sum(mean0 * np.log(mean0))
    h_members = np.mean([-np.sum(p * np.log(p)) for p in probs[:, 0]])
    assert d["entropy"][0] == pytest.approx(h_mean)
    assert d["mutual_information"][0] == pytest.approx(h_mean - h_members)


def test_mutual_information_is_between_zero_and_total_entropy() -> None:
    d = disagreement(random_probs(5, 200, seed=3))
    assert (d["mutual_information"] >= 0).all()
    assert (d["mutual_information"] <= d["entropy"] + 1e-12).all()
    assert (d["entropy"] <= np.log(3) + 1e-12).all()
    assert {k: v.shape for k, v in d.items()} == {k: (200,) for k in d}


def test_single_member_has_no_flips() -> None:
    d = disagreement(random_probs(1, 10))
    np.testing.assert_array_equal(d["flip_rate"], 0.0)
    np.testing.assert_allclose(d["mutual_information"], 0.0, atol=1e-12)


def test_disagreement_rejects_wrong_shapes() -> None:
    with pytest.raises(DataError, match="members, samples, classes"):
        disagreement(np.ones((4, 3)))


def test_error_by_quantile_on_a_constructed_case() -> None:
    u = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0])
    correct = u < 0.55  # every prediction above 0.55 uncertainty is wrong
    rows = error_by_quantile(u, correct, n_quantiles=5)
    assert [r["n"] for r in rows] == [2, 2, 2, 2, 2]
    assert [r["low"] for r in rows] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert [r["high"] for r in rows] == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert [r["error_rate"] for r in rows] == [0.0, 0.0, 0.0, 1.0, 1.0]


def test_error_by_quantile_never_splits_ties() -> None:
    u = np.zeros(6)
    correct = np.array([True, True, True, False, False, False])
    rows = error_by_quantile(u, correct, n_quantiles=2)
    assert rows == [{"low": 0.0, "high": 0.0, "error_rate": 0.5, "n": 6}]
    uneven = error_by_quantile(np.arange(7.0), np.ones(7, dtype=bool), n_quantiles=3)
    assert sum(r["n"] for r in uneven) == 7
    assert all(a["high"] < b["low"] for a, b in itertools.pairwise(uneven))


def test_permuting_tied_rows_changes_nothing() -> None:
    """A mostly-zero measure (flip_rate) must not turn time order into 'quantiles'."""
    rng = np.random.default_rng(0)
    u = np.where(rng.random(1000) < 0.8, 0.0, rng.choice([0.2, 0.4, 0.6], 1000))
    correct = rng.random(1000) < 0.5 + 0.3 * (u == 0)
    rows = error_by_quantile(u, correct)
    for _ in range(5):
        order = np.lexsort((rng.random(u.size), u))  # shuffle within each tie group
        assert error_by_quantile(u[order], correct[order]) == rows
    assert rows[0]["low"] == rows[0]["high"] == 0.0
    assert rows[0]["n"] == int((u == 0).sum())


def test_error_by_quantile_rejects_too_few_samples() -> None:
    with pytest.raises(DataError, match="quantiles"):
        error_by_quantile(np.arange(3.0), np.ones(3, dtype=bool), n_quantiles=5)
    with pytest.raises(DataError, match="equal length"):
        error_by_quantile(np.arange(3.0), np.ones(4, dtype=bool))

"""Tests for selfdistill.evaluation.metrics against scikit-learn and hand-computed examples."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
)
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from selfdistill.errors import DataError
from selfdistill.evaluation.metrics import (
    classification_metrics,
    expected_calibration_error,
    reliability_curve,
)

# four rows, three classes; confidences 0.9, 0.55, 0.7, 0.7 fall in bins 13, 8, 10, 10
HAND_Y = np.array([0, 1, 1, 2])
HAND_P = np.array([
    [0.9, 0.05, 0.05],  # right, conf 0.9
    [0.55, 0.35, 0.1],  # wrong, conf 0.55
    [0.2, 0.7, 0.1],  # right, conf 0.7
    [0.1, 0.2, 0.7],  # right, conf 0.7
])


def random_case(seed: int, n: int = 500, c: int = 3,
                present: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, (n, c))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.choice(present or tuple(range(c)), size=n)
    return y, p


def test_hand_computed_ece_brier_and_nll() -> None:
    m = classification_metrics(HAND_Y, HAND_P)
    # ECE = 1/4 |1 - .9| + 1/4 |0 - .55| + 2/4 |1 - .7| = .025 + .1375 + .15
    assert m["ece"] == pytest.approx(0.3125)
    # Brier rows: .015, .735, .14, .14
    assert m["brier"] == pytest.approx((0.015 + 0.735 + 0.14 + 0.14) / 4)
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.35, 0.7, 0.7])))
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert m["n"] == 4


def test_reliability_curve_of_the_hand_example() -> None:
    curve = reliability_curve(HAND_Y, HAND_P)
    assert curve["count"] == [1.0, 2.0, 1.0]
    assert curve["confidence"] == pytest.approx([0.55, 0.7, 0.9])
    assert curve["accuracy"] == pytest.approx([0.0, 1.0, 1.0])
    assert curve["bin_lower"] == pytest.approx([8 / 15, 10 / 15, 13 / 15])
    assert curve["bin_upper"] == pytest.approx([9 / 15, 11 / 15, 14 / 15])


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn(seed: int) -> None:
    y, p = random_case(seed)
    m = classification_metrics(y, p)
    pred = p.argmax(axis=1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["nll"] == pytest.approx(log_loss(y, p, labels=[0, 1, 2]))
    assert m["confusion_matrix"] == sk_confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()
    onehot = np.eye(3)[y]
    assert m["brier"] == pytest.approx(np.mean(np.sum((p - onehot) ** 2, axis=1)))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_absent_class_follows_scikit_learn_conventions() -> None:
    y, p = random_case(7, present=(0, 2))  # no true bears, but some predicted
    pred = p.argmax(axis=1)
    assert (pred == 1).any()
    m = classification_metrics(y, p)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(
        f1_score(y, pred, average="macro", zero_division=0.0))


def loop_ece(y: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    """Guo et al.'s loop over bins (lower < conf <= upper)."""
    conf, right = p.max(axis=1), p.argmax(axis=1) == y
    total = 0.0
    for b in range(n_bins):
        inside = (conf > b / n_bins) & (conf <= (b + 1) / n_bins)
        if inside.any():
            total += inside.mean() * abs(right[inside].mean() - conf[inside].mean())
    return total


@pytest.mark.parametrize(("seed", "n_bins"), [(0, 15), (1, 10), (2, 1), (3, 40)])
def test_ece_matches_a_loop_reference_and_the_curve(seed: int, n_bins: int) -> None:
    y, p = random_case(seed)
    ece = expected_calibration_error(y, p, n_bins=n_bins)
    assert ece == pytest.approx(loop_ece(y, p, n_bins))
    curve = reliability_curve(y, p, n_bins=n_bins)
    assert sum(curve["count"]) == len(y)
    from_curve = sum(c / len(y) * abs(a - f) for c, a, f in
                     zip(curve["count"], curve["accuracy"], curve["confidence"], strict=True))
    assert ece == pytest.approx(from_curve)


def test_perfect_confident_predictions() -> None:
    y = np.array([0, 1, 2, 2, 1])
    m = classification_metrics(y, np.eye(3)[y])
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0
    assert m["brier"] == 0.0
    assert m["ece"] == 0.0
    assert m["nll"] == pytest.approx(0.0, abs=1e-12)


def test_zero_probability_on_the_truth_is_floored_not_infinite() -> None:
    m = classification_metrics(np.array([1]), np.array([[1.0, 0.0, 0.0]]))
    assert m["nll"] == pytest.approx(-np.log(1e-12))
    assert m["brier"] == pytest.approx(2.0)


def test_result_is_json_serialisable() -> None:
    y, p = random_case(0, n=50)
    m = classification_metrics(y, p.astype(np.float32))
    assert json.loads(json.dumps(m)) == m


@pytest.mark.parametrize(("y", "p", "match"), [
    (np.array([0, 1]), np.full((3, 3), 1 / 3), "shapes"),
    (np.array([0, 3]), np.full((2, 3), 1 / 3), "class ids"),
    (np.array([0.0, 1.0]), np.full((2, 3), 1 / 3), "class ids"),
    (np.array([0, 1]), np.full((2, 3), 0.5), "sum to 1"),
    (np.array([0, 1]), np.full((2, 2), 0.5), "n_classes=3"),
    (np.array([], dtype=int), np.empty((0, 3)), "N > 0"),
])
def test_bad_inputs_raise_data_error(y: np.ndarray, p: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        classification_metrics(y, p)


def test_metric_totals_in_pieces_equal_the_whole() -> None:
    from selfdistill.evaluation.metrics import MetricTotals

    rng = np.random.default_rng(5)
    logits = rng.normal(size=(1000, 3)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 3, 1000)
    whole = classification_metrics(y, p)
    assert MetricTotals(3).add(y, p).result() == whole  # one piece: exactly the same
    pieces = MetricTotals(3)
    for a in range(0, 1000, 137):
        pieces.add(y[a:a + 137], p[a:a + 137])
    got = pieces.result()
    assert got["confusion_matrix"] == whole["confusion_matrix"]
    assert got["n"] == 1000
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "nll", "brier", "ece"):
        assert got[key] == pytest.approx(whole[key], rel=1e-12, abs=1e-15), key

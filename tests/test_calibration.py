"""Temperature scaling: fitted on validation only, recovers a known temperature."""

from __future__ import annotations

import numpy as np
import pytest

from selfdistill.errors import DataError
from selfdistill.evaluation.calibration import (
    TEMPERATURE_BOUNDS,
    apply_temperature,
    fit_temperature,
    logits_from_proba,
)
from selfdistill.evaluation.metrics import classification_metrics


def _sample(n: int, true_temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / true_temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(n, 3))
    p = apply_temperature(logits, true_temperature)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return logits, y


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_recovers_the_temperature_that_generated_the_labels(true_t: float) -> None:
    logits, y = _sample(20_000, true_t)
    assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.08)


def test_overconfident_model_gets_softer_and_better_calibrated() -> None:
    logits, y = _sample(5000, 3.0, seed=1)  # the model is 3x too confident
    val, test = slice(0, 2500), slice(2500, None)
    t = fit_temperature(logits[val], y[val])
    assert t > 1.5
    before = classification_metrics(y[test], apply_temperature(logits[test], 1.0))
    after = classification_metrics(y[test], apply_temperature(logits[test], t))
    assert after["nll"] < before["nll"]
    assert after["ece"] < before["ece"]
    assert after["accuracy"] == before["accuracy"]  # argmax is unchanged


def test_probabilities_work_as_logits() -> None:
    logits, y = _sample(4000, 2.0, seed=2)
    proba = apply_temperature(logits, 1.0)
    assert fit_temperature(logits_from_proba(proba), y) == pytest.approx(
        fit_temperature(logits, y), rel=1e-3)


def test_fit_reads_only_the_rows_it_is_given() -> None:
    logits, y = _sample(3000, 2.0, seed=3)
    t = fit_temperature(logits[:1000], y[:1000])
    scrambled = logits.copy()
    scrambled[1000:] *= -5  # "test" rows changed: the validation fit cannot move
    assert fit_temperature(scrambled[:1000], y[:1000]) == t


def test_temperature_stays_in_bounds_for_degenerate_inputs() -> None:
    logits = np.array([[5.0, 0.0, 0.0]] * 50)
    t = fit_temperature(logits, np.zeros(50, dtype=int))  # always right: wants T -> 0
    assert TEMPERATURE_BOUNDS[0] <= t < 0.5  # sharpened hard, but bounded and finite


def test_bad_inputs_raise_data_errors_naming_the_problem() -> None:
    with pytest.raises(DataError, match="logits"):
        fit_temperature(np.zeros((3, 3)), np.zeros(2, dtype=int))
    with pytest.raises(DataError, match=r"\[0, 3\)"):
        fit_temperature(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(DataError, match="> 0"):
        apply_temperature(np.zeros((2, 3)), 0.0)

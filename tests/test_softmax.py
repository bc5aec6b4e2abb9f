"""The one NumPy softmax / log-softmax / NLL, against SciPy and the formulas it replaced."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import special

import selfdistill
from selfdistill.evaluation.calibration import apply_temperature, logits_from_proba
from selfdistill.evaluation.metrics import classification_metrics
from selfdistill.methods.common import val_nll
from selfdistill.softmax import (
    PROB_FLOOR,
    log_probabilities,
    log_softmax,
    nll,
    nll_of_logits,
    softmax,
)
from selfdistill.training.loop import probabilities

SRC = Path(selfdistill.__file__).parent


def _logits(n: int = 500, c: int = 3, scale: float = 3.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=scale, size=(n, c))


@pytest.mark.parametrize("scale", [0.01, 1.0, 30.0])
@pytest.mark.parametrize("temperature", [0.05, 1.0, 3.0])
@pytest.mark.parametrize("c", [2, 3, 7])
def test_matches_scipy(scale: float, temperature: float, c: int) -> None:
    z = _logits(c=c, scale=scale)
    np.testing.assert_allclose(log_softmax(z, temperature=temperature),
                               special.log_softmax(z / temperature, axis=-1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(softmax(z, temperature=temperature),
                               special.softmax(z / temperature, axis=-1), rtol=0, atol=1e-12)


def test_bit_identical_to_the_formulas_it_replaced() -> None:
    # calibration's former _log_softmax and apply_temperature, and metrics' former nll
    z, y = _logits(), np.random.default_rng(1).integers(0, 3, 500)
    zt = z / 1.7
    shifted = zt - zt.max(axis=1, keepdims=True)
    old_log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert np.array_equal(log_softmax(z, temperature=1.7), old_log_softmax)
    assert np.array_equal(apply_temperature(z, 1.7), np.exp(old_log_softmax))
    assert nll_of_logits(z, y, temperature=1.7) == float(-old_log_softmax[np.arange(500), y].mean())
    p = softmax(z)
    old_nll = float(-np.mean(np.log(np.maximum(p[np.arange(500), y], 1e-12))))
    assert nll(p, y) == old_nll == classification_metrics(y, p, n_classes=3)["nll"] == val_nll(p, y)


def test_shapes_rows_and_extreme_logits() -> None:
    assert softmax(np.array([1000.0, 0.0, -1000.0])).tolist() == [1.0, 0.0, 0.0]  # no overflow
    p = softmax(_logits(scale=50.0))
    assert p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert softmax(np.zeros((2, 4, 5))).shape == (2, 4, 5)  # the last axis is the class axis


def test_log_probabilities_floor_and_round_trip() -> None:
    p = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    logp = log_probabilities(p)
    assert logp[0, 1] == np.log(PROB_FLOOR)
    assert np.array_equal(logits_from_proba(p), logp)
    np.testing.assert_allclose(softmax(logp)[1], p[1], rtol=0, atol=1e-12)


def test_nll_floors_a_confident_mistake() -> None:
    p, y = np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([1, 0])
    assert nll(p, y) == pytest.approx((-np.log(PROB_FLOOR) - np.log(0.5)) / 2, rel=1e-15)
    assert nll_of_logits(np.zeros((4, 3)), np.array([0, 1, 2, 0])) == pytest.approx(np.log(3))


def test_torch_logits_become_float64_probabilities_as_torch_computes_them() -> None:
    z = torch.randn(50, 3, generator=torch.Generator().manual_seed(0)) * 4
    got = probabilities(z, temperature=2.0)
    assert got.dtype == np.float64
    assert np.array_equal(got, torch.softmax(z.double() / 2.0, dim=-1).numpy())
    np.testing.assert_allclose(got, softmax(z.numpy(), temperature=2.0), rtol=0, atol=1e-12)


def test_no_other_module_defines_a_softmax() -> None:
    pattern = re.compile(r"^\s*def _?(log_)?softmax\b", re.MULTILINE)
    owners = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                    if pattern.search(p.read_text(encoding="utf-8")))
    assert owners == ["softmax.py"]

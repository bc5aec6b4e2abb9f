"""Logistic regression (nn.classic.logistic, methods.logistic.fit): agreement with scikit-learn,
selection on validation, absent classes, storage. The method path: test_methods_logistic.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from safetensors.numpy import load, save
from sklearn.linear_model import LogisticRegression

from selfdistill.methods import logistic as logistic_method
from selfdistill.nn.classic import logistic


def make_data(seed: int, n: int, f: int = 4, n_classes: int = 3,
              ) -> tuple[np.ndarray, np.ndarray]:
    """(n, f) Gaussian features and (n,) labels from a noisy linear softmax model."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f))
    w = np.random.default_rng(99).normal(size=(n_classes, f))  # same truth for every split
    logits = x @ w.T + rng.gumbel(size=(n, n_classes)) * 2.0
    return x, logits.argmax(axis=1)


@pytest.fixture(scope="module")
def splits() -> tuple[np.ndarray, ...]:
    x_tr, y_tr = make_data(0, 300)
    x_va, y_va = make_data(1, 200)
    return x_tr, y_tr, x_va, y_va


@pytest.fixture(scope="module")
def fitted(splits: tuple[np.ndarray, ...]) -> logistic.LogisticParams:
    return logistic_method.fit(*splits, n_classes=3, seed=0)


@pytest.mark.parametrize("c", [0.01, 1.0, 100.0])
def test_predict_proba_equals_sklearn(c: float, splits: tuple[np.ndarray, ...]) -> None:
    x_tr, y_tr, x_va, y_va = splits
    params = logistic_method.fit(x_tr, y_tr, x_va, y_va, n_classes=3, seed=0, grid=(c,))
    reference = LogisticRegression(C=c, max_iter=1000).fit(x_tr, y_tr)
    np.testing.assert_allclose(logistic.predict_proba(params, x_va),
                               reference.predict_proba(x_va), rtol=0, atol=1e-10)


def test_softmax_is_stable_for_huge_logits(fitted: logistic.LogisticParams) -> None:
    proba = logistic.predict_proba(fitted, np.full((2, 4), 1e6) * [[1], [-1]])
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_chosen_c_is_the_argmin_of_validation_nll(fitted: logistic.LogisticParams,
                                                  splits: tuple[np.ndarray, ...]) -> None:
    x_tr, y_tr, x_va, y_va = splits
    assert fitted.chosen_c == fitted.grid[np.argmin(fitted.val_nll)]
    assert np.unique(fitted.val_nll).size == fitted.grid.size  # the grid really matters here
    for c, score in zip(fitted.grid, fitted.val_nll, strict=True):  # the reported NLLs are real
        one = logistic_method.fit(x_tr, y_tr, x_va, y_va, n_classes=3, seed=0, grid=(c,))
        assert score == pytest.approx(logistic.nll(logistic.predict_proba(one, x_va), y_va),
                                      rel=1e-12)


def test_selection_follows_the_validation_rows(splits: tuple[np.ndarray, ...]) -> None:
    """Labels of validation rows alone move the choice: scrambling them picks the strongest L2."""
    x_tr, y_tr, x_va, _ = splits
    noise = np.random.default_rng(5).integers(0, 3, len(x_va))
    params = logistic_method.fit(x_tr, y_tr, x_va, noise, n_classes=3, seed=0)
    assert params.chosen_c == 0.01


def test_ties_go_to_the_stronger_regularisation(splits: tuple[np.ndarray, ...]) -> None:
    x_tr, _, x_va, y_va = splits
    one_class = np.zeros(len(x_tr), dtype=np.int64)  # every C gives the same model
    params = logistic_method.fit(x_tr, one_class, x_va, y_va, n_classes=3, seed=0,
                                 grid=(10.0, 0.1, 1.0))
    assert np.unique(params.val_nll).size == 1
    assert params.chosen_c == 0.1


def test_class_absent_from_training(splits: tuple[np.ndarray, ...]) -> None:
    x_tr, y_tr, x_va, y_va = splits
    keep = y_tr != 1
    params = logistic_method.fit(x_tr[keep], y_tr[keep], x_va, y_va, n_classes=3, seed=0,
                                 grid=(1.0,))
    proba = logistic.predict_proba(params, x_va)
    floor = 1.0 / (keep.sum() + 3)
    assert proba.shape == (len(x_va), 3)
    np.testing.assert_allclose(proba[:, 1], floor, rtol=0, atol=0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    reference = LogisticRegression(C=1.0, max_iter=1000).fit(x_tr[keep], y_tr[keep])
    np.testing.assert_allclose(proba[:, [0, 2]], reference.predict_proba(x_va) * (1 - floor),
                               rtol=0, atol=1e-10)
    assert np.isfinite(params.val_nll).all()


def test_two_absent_classes_and_labels_as_floats(splits: tuple[np.ndarray, ...]) -> None:
    x_tr, _, x_va, y_va = splits
    y = np.full(len(x_tr), 2.0)
    params = logistic_method.fit(x_tr, y, x_va, y_va, n_classes=3, seed=0, grid=(1.0,))
    floor = 1.0 / (len(x_tr) + 3)
    np.testing.assert_allclose(logistic.predict_proba(params, x_va[:3]),
                               [[floor, floor, 1 - 2 * floor]] * 3, rtol=0, atol=1e-15)


def test_fit_is_deterministic(fitted: logistic.LogisticParams,
                              splits: tuple[np.ndarray, ...]) -> None:
    again = logistic_method.fit(*splits, n_classes=3, seed=0)
    for name, value in logistic.to_arrays(fitted).items():
        np.testing.assert_array_equal(value, getattr(again, name), err_msg=name)


def test_safetensors_round_trip(fitted: logistic.LogisticParams,
                                splits: tuple[np.ndarray, ...]) -> None:
    loaded = logistic.from_arrays(load(save(logistic.to_arrays(fitted))))
    np.testing.assert_array_equal(logistic.predict_proba(loaded, splits[2]),
                                  logistic.predict_proba(fitted, splits[2]))
    assert loaded.present.dtype == np.bool_
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.coef = np.zeros((3, 4))  # type: ignore[misc]


@pytest.mark.parametrize(("change", "match"), [
    (lambda d: d.pop("coef"), "missing \\['coef'\\]"),
    (lambda d: d.update(intercept=np.zeros(4)), "dimension 'C' should be 3"),
    (lambda d: d.update(coef=np.full((3, 4), np.inf)), "coef holds NaN or inf"),
    (lambda d: d.update(present=np.zeros(3, dtype=bool)), "at least one True"),
    (lambda d: d.update(present=np.ones(3)), "present must be a bool array"),
    (lambda d: d.update(floor=np.array(0.0)), "floor must lie in"),
])
def test_from_arrays_rejects_bad_arrays(change: object, match: str,
                                        fitted: logistic.LogisticParams) -> None:
    arrays = logistic.to_arrays(fitted)
    change(arrays)  # type: ignore[operator]
    with pytest.raises(ValueError, match=match):
        logistic.from_arrays(arrays)


X = np.zeros((6, 2))
Y = np.array([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"x_train": np.full((6, 2), np.nan)}, "x_train holds 12 NaN/inf"),
    ({"x_val": np.zeros((6, 3))}, "x_val has 3 features, the model expects 2"),
    ({"y_train": Y[:5]}, "y_train must have shape \\(6,\\)"),
    ({"y_val": Y - 1}, "y_val holds class id -1; valid ids are 0..2"),
    ({"y_train": Y + 0.5}, "integer class ids"),
    ({"n_classes": 1}, "n_classes must be an integer >= 2, got 1"),
    ({"seed": 1.5}, "seed must be an integer >= 0, got 1.5"),
    ({"grid": ()}, "grid must be a non-empty sequence of finite C > 0"),
    ({"grid": (1.0, -1.0)}, "finite C > 0, got \\(1.0, -1.0\\)"),
])
def test_fit_rejects_bad_inputs(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"x_train": X, "y_train": Y, "x_val": X, "y_val": Y,
                               "n_classes": 3, "seed": 0}
    with pytest.raises(ValueError, match=match):
        logistic_method.fit(**(args | kwargs))  # type: ignore[arg-type]


def test_predict_rejects_bad_inputs(fitted: logistic.LogisticParams) -> None:
    with pytest.raises(ValueError, match="x has 2 features, the model expects 4"):
        logistic.predict_proba(fitted, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN/inf"):
        logistic.predict_proba(fitted, np.full((1, 4), np.nan))

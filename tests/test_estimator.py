"""SelfDistillClassifier: scikit-learn's own checks, the contract, time order, save / load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import selfdistill
from selfdistill import estimator as estimator_module
from selfdistill.config import RunConfig
from selfdistill.errors import ConfigError
from selfdistill.estimator import SelfDistillClassifier
from selfdistill.methods import Lineage, TrainData
from selfdistill.serving.numpy_runtime import NumpyModel

#: small and quick, yet enough optimizer steps to pass check_classifiers_train
FAST: dict[str, Any] = {"n_generations": 1, "epochs": 10, "hidden_sizes": (8,),
                        "batch_size": 32, "learning_rate": 2e-2, "random_state": 0}


def _expected_failed_checks(estimator: Any) -> dict[str, str]:
    """Checks that cannot apply to this estimator, with the reason.

    None today: with FAST settings every applicable check passes. Checks that do
    not apply are skipped by scikit-learn itself through the estimator's tags
    (no ``sample_weight`` argument, no ``decision_function``, no sparse input).
    ``check_array_api_input`` skips itself unless SCIPY_ARRAY_API=1 was set before
    scipy was imported; :func:`test_array_api_check_in_a_fresh_interpreter` runs
    it for real (slow). A default-constructed
    estimator (30 epochs of 256-row batches) takes too few optimizer steps on the
    checks' 100-300-row datasets to reach ``check_classifiers_train``'s 0.83
    accuracy, which is why the suite runs on FAST settings.
    """
    return {}


@parametrize_with_checks([SelfDistillClassifier(**FAST)],
                         expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator: Any, check: Any) -> None:
    check(estimator)


@pytest.mark.slow
def test_array_api_check_in_a_fresh_interpreter() -> None:
    code = ("from sklearn.utils.estimator_checks import check_array_api_input\n"
            "from selfdistill.estimator import SelfDistillClassifier\n"
            f"est = SelfDistillClassifier(**{FAST!r})\n"
            "check_array_api_input('SelfDistillClassifier', est, array_namespace='numpy',\n"
            "                      expect_only_array_outputs=False)\n")
    env = {**os.environ, "SCIPY_ARRAY_API": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def _data(n: int = 240, f: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    y = np.select([X[:, 0] > 0.5, X[:, 0] < -0.5], [0, 1], 2)
    return X, y


# ------------------------------------------------------------------ contract


def test_is_exported_lazily_from_the_package() -> None:
    assert selfdistill.SelfDistillClassifier is SelfDistillClassifier
    assert "SelfDistillClassifier" in dir(selfdistill)


def test_init_stores_parameters_unchanged_and_clone_round_trips() -> None:
    est = SelfDistillClassifier("baseline", hidden_sizes=(3, 2), alpha=0.9, method_params={})
    assert est.hidden_sizes == (3, 2)
    assert est.method == "baseline"
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    twin.set_params(epochs=2, temperature=1.5)
    assert (twin.epochs, twin.temperature, est.epochs) == (2, 1.5, 30)
    assert clone(twin).get_params() == twin.get_params()


def test_clone_of_a_fitted_estimator_is_unfitted() -> None:
    X, y = _data()
    est = SelfDistillClassifier(**FAST).fit(X, y)
    twin = clone(est)
    assert not hasattr(twin, "models_")
    assert not hasattr(twin, "classes_")


@pytest.mark.parametrize("labels", [
    np.array(["sideways", "bear", "bull"]),
    np.array([-5, 10, 42]),
])
def test_arbitrary_label_values_round_trip_through_classes(labels: np.ndarray) -> None:
    X, y = _data()
    y_any = labels[y]
    est = SelfDistillClassifier(**FAST).fit(X, y_any)
    assert est.classes_.tolist() == sorted(labels.tolist())
    pred = est.predict(X)
    assert set(pred.tolist()) <= set(labels.tolist())
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_array_equal(est.classes_[proba.argmax(axis=1)], pred)
    assert est.score(X, y_any) > 0.6


def test_second_fit_forgets_the_first() -> None:
    X, y = _data()
    frame = pd.DataFrame(X, columns=list("abcd"))
    est = SelfDistillClassifier(**FAST).fit(frame, np.array(["u", "d", "s"])[y])
    first_models = est.models_
    X2 = np.random.default_rng(5).normal(size=(200, 2))
    y2 = np.where(X2[:, 1] > 0, 7, 3)
    est.fit(X2, y2)
    assert est.classes_.tolist() == [3, 7]
    assert est.n_features_in_ == 2
    assert not hasattr(est, "feature_names_in_")
    assert est.models_ is not first_models
    assert est.predict_proba(X2).shape == (200, 2)


def test_fixed_random_state_gives_identical_predictions() -> None:
    X, y = _data()
    p1 = SelfDistillClassifier(**FAST).fit(X, y).predict_proba(X)
    p2 = SelfDistillClassifier(**FAST).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)


def test_bad_hyperparameters_name_the_parameter() -> None:
    X, y = _data()
    with pytest.raises(ConfigError, match="n_generations"):
        SelfDistillClassifier(n_generations=0).fit(X, y)
    with pytest.raises(ConfigError, match="activation"):
        SelfDistillClassifier(activation="sigmoid").fit(X, y)
    with pytest.raises(ConfigError, match=r"'nope' is not available; available: .*born_again"):
        SelfDistillClassifier("nope", **FAST).fit(X, y)
    with pytest.raises(ConfigError, match="validation_fraction"):
        SelfDistillClassifier(validation_fraction=1.0).fit(X, y)
    # a parameter taking a number or a list reads as one plain message
    with pytest.raises(ConfigError) as info:
        SelfDistillClassifier(alpha=3).fit(X, y)
    assert str(info.value) == ("invalid SelfDistillClassifier parameter: "
                               "alpha: must be less than or equal to 1 (got 3)")


# ------------------------------------------------------------------ time order


def test_validation_is_the_last_rows_and_the_scaler_sees_train_rows_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, TrainData] = {}
    real = estimator_module.get_method

    def spy(name: str) -> Any:
        def fit(data: TrainData, cfg: RunConfig, **kw: Any) -> Lineage:
            seen["data"] = data
            return real(name)(data, cfg, **kw)
        return fit

    monkeypatch.setattr(estimator_module, "get_method", spy)
    X, y = _data(n=200)
    X[150:] += 100.0  # a level shift late in time: must not reach the scaler
    est = SelfDistillClassifier(**{**FAST, "validation_fraction": 0.25, "validation_gap": 10})
    est.fit(X, y)
    data = seen["data"]
    assert data.val_rows.tolist() == list(range(150, 200))
    assert data.train_rows.tolist() == list(range(0, 140))
    np.testing.assert_allclose(est.scaler_.center_, X[:140].mean(axis=0))


def test_grid_search_with_time_series_split_and_pipeline() -> None:
    X, y = _data(n=300)
    pipe = make_pipeline(StandardScaler(), SelfDistillClassifier(**{**FAST, "epochs": 4}))
    grid = GridSearchCV(pipe, {"selfdistillclassifier__alpha": [0.3, 1.0]},
                        cv=TimeSeriesSplit(n_splits=2), error_score="raise")
    grid.fit(X, y)
    assert grid.best_params_["selfdistillclassifier__alpha"] in (0.3, 1.0)
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    assert grid.predict(X[:5]).shape == (5,)


# --------------------------------------------------------- methods / uncertainty


@pytest.mark.parametrize("method", ["baseline", "label_smoothing", "byot", "snapshot"])
def test_other_methods_train_and_predict(method: str) -> None:
    X, y = _data()
    params = {**FAST, "hidden_sizes": (8, 8),  # byot puts an exit after each block
              "method_params": {"snapshot": {"cycles": 2, "epochs_per_cycle": 3}}}
    est = SelfDistillClassifier(method, **params).fit(X, y)
    assert est.method_ == method
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert len(est.models_) == len(est.history_) == len(est.generations_)


def test_predict_uncertainty_measures_generation_disagreement() -> None:
    X, y = _data()
    frame = pd.DataFrame(X, index=pd.RangeIndex(100, 100 + len(X)))
    est = SelfDistillClassifier(**{**FAST, "n_generations": 2}).fit(frame, y)
    unc = est.predict_uncertainty(frame)
    assert list(unc.columns) == ["variance", "mutual_information", "flip_rate", "entropy"]
    assert unc.index.equals(frame.index)
    assert (unc[["variance", "mutual_information", "flip_rate"]] >= 0).all().all()
    assert unc["variance"].max() > 0  # three generations do not agree everywhere
    single = SelfDistillClassifier("baseline", **FAST).fit(X, y).predict_uncertainty(X)
    assert (single["variance"] == 0).all()
    assert (single["entropy"] > 0).all()


def test_calibration_temperature_keeps_the_argmax() -> None:
    X, y = _data()
    plain = SelfDistillClassifier(**FAST).fit(X, y)
    calibrated = SelfDistillClassifier(**FAST, calibrate=True).fit(X, y)
    assert plain.temperature_ == 1.0
    assert calibrated.temperature_ != 1.0
    np.testing.assert_array_equal(plain.predict(X), calibrated.predict(X))


# ------------------------------------------------------------------ save / load


def test_save_load_gives_identical_probabilities(tmp_path: Path) -> None:
    X, y = _data()
    frame = pd.DataFrame(X, columns=["ret_1", "vol_12", "range", "skew_48"])
    est = SelfDistillClassifier(**{**FAST, "n_generations": 2}, calibrate=True)
    est.fit(frame, np.array(["bull", "bear", "sideways"])[y])
    est.save(tmp_path / "model")
    loaded = SelfDistillClassifier.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(frame), est.predict_proba(frame))
    np.testing.assert_array_equal(loaded.predict(frame), est.predict(frame))
    pd.testing.assert_frame_equal(loaded.predict_uncertainty(frame),
                                  est.predict_uncertainty(frame))
    assert loaded.get_params() == est.get_params()
    assert loaded.best_generation_ == est.best_generation_
    assert loaded.history_ == est.history_
    assert list(loaded.feature_names_in_) == list(frame.columns)
    # the same directory serves the torch-free path
    numpy_proba = NumpyModel.from_dir(tmp_path / "model").predict_proba(frame)
    np.testing.assert_allclose(numpy_proba, est.predict_proba(frame), atol=1e-5)


def test_loaded_estimator_refits_like_a_fresh_one(tmp_path: Path) -> None:
    X, y = _data()
    SelfDistillClassifier(**FAST).fit(X, y).save(tmp_path / "m")
    loaded = SelfDistillClassifier.load(tmp_path / "m")
    assert loaded.get_params()["hidden_sizes"] == (8,)
    refit = loaded.fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(refit, SelfDistillClassifier(**FAST).fit(X, y).predict_proba(X))


def test_predict_before_fit_raises_not_fitted() -> None:
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        SelfDistillClassifier().predict_uncertainty(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        SelfDistillClassifier().save("never-written")

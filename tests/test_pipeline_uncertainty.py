"""Uncertainty through a scikit-learn Pipeline, and the stored feature config as it is
(issue 13, first use: `Pipeline(...).predict_uncertainty` does not exist)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from selfdistill.config import FeaturesConfig
from selfdistill.estimator import SelfDistillClassifier, predict_uncertainty
from selfdistill.features import compute_features
from selfdistill.modelio.bundle import read_bundle

FAST = {"n_generations": 2, "epochs": 8, "hidden_sizes": (8,), "batch_size": 32,
        "learning_rate": 2e-2, "random_state": 0}


def _data(n: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(n, 4)) * [1.0, 50.0, 0.1, 3.0],
                     columns=["a", "b", "c", "d"], index=pd.RangeIndex(100, 100 + n))
    y = np.where(X["a"] + 0.02 * X["b"] > 0, "up", "down")
    return X, y


def test_uncertainty_through_a_pipeline_equals_the_steps_by_hand() -> None:
    X, y = _data()
    pipe = make_pipeline(StandardScaler(), SelfDistillClassifier(**FAST)).fit(X, y)
    assert not hasattr(pipe, "predict_uncertainty")  # why the function exists
    got = predict_uncertainty(pipe, X)
    by_hand = pipe[-1].predict_uncertainty(pipe[:-1].transform(X))
    np.testing.assert_allclose(got.to_numpy(), by_hand.to_numpy())
    assert list(got.columns) == ["variance", "mutual_information", "flip_rate", "entropy"]
    pd.testing.assert_index_equal(got.index, X.index)  # the caller's rows, not 0..N-1
    assert (got["variance"] > 0).any()  # two generations disagree somewhere


def test_uncertainty_of_a_bare_classifier_and_a_wrong_model() -> None:
    X, y = _data()
    clf = SelfDistillClassifier(**FAST).fit(X, y)
    pd.testing.assert_frame_equal(predict_uncertainty(clf, X), clf.predict_uncertainty(X))
    with pytest.raises(TypeError, match="StandardScaler has no predict_uncertainty"):
        predict_uncertainty(StandardScaler().fit(X), X)


def test_the_stored_feature_config_feeds_compute_features(tmp_path: Path,
                                                          candles: pd.DataFrame) -> None:
    cfg = FeaturesConfig(return_windows=[1, 4], volatility_windows=[8], ma_windows=[8],
                         volume_window=8, range_window=8, skew_window=8)
    feats = compute_features(candles, cfg).dropna()
    y = np.where(feats["ret_4"].shift(-1).fillna(0) > 0, "bull", "bear")
    SelfDistillClassifier(**FAST).fit(feats, y).save(tmp_path / "m", feature_config=cfg)
    bundle = read_bundle(tmp_path / "m")
    assert isinstance(bundle.feature_config, dict)
    assert bundle.features == cfg.model_copy(update={"volume": "on"})  # typed, volume pinned
    for stored in (bundle.feature_config, bundle.features):
        pd.testing.assert_frame_equal(compute_features(candles, stored).dropna(), feats)

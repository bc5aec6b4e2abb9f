"""logistic and hmm end to end: `selfdistill run` on every scheme, predict, the estimator.

One tiny holdout run on a Parquet candle file serves the predict and estimator tests;
walk-forward and purged k-fold run on the synthetic source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from selfdistill.cli import main
from selfdistill.config import FeaturesConfig
from selfdistill.data.files import save_candles
from selfdistill.data.synthetic import generate_market
from selfdistill.errors import ModelFileError
from selfdistill.estimator import SelfDistillClassifier
from selfdistill.features import compute_features
from selfdistill.modelio.bundle import read_bundle
from selfdistill.serving.numpy_runtime import NumpyModel
from selfdistill.serving.onnx import export_onnx

METHODS = ("logistic", "hmm")
CLASSES = ("bull", "bear", "sideways")
FEATURES = {"return_windows": [1, 6], "volatility_windows": [12], "ma_windows": [12],
            "skew_window": 12, "volume_window": 12, "range_window": 12}
CONFIG: dict[str, Any] = {
    "name": "classic", "device": "cpu", "features": FEATURES,
    "labels": {"horizon": 4, "vol_span": 30},
    "split": {"train": 0.5, "val": 0.2, "test": 0.3},
    "methods": ["majority", *METHODS], "hmm": {"n_init": 2},
    "report": {"enabled": False},
}


def _run(tmp: Path, config: dict[str, Any], name: str) -> Path:
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp / f"{name}.yaml"), "--out", str(tmp / name)]) == 0
    return tmp / name


@pytest.fixture(scope="module")
def holdout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run directory, candles file) of one tiny holdout run on a Parquet file."""
    tmp = tmp_path_factory.mktemp("classic")
    candles, _ = generate_market(1200, seed=5, persistence=0.98)
    save_candles(candles, tmp / "candles.parquet")
    config = {**CONFIG, "data": {"source": "parquet", "path": str(tmp / "candles.parquet")}}
    return _run(tmp, config, "run"), tmp / "candles.parquet"


def _test_records(run: Path) -> list[dict[str, Any]]:
    records = json.loads((run / "metrics.json").read_text())["records"]
    return [r for r in records if r["split"] == "test" and r["method"] in METHODS
            and not r.get("aggregate")]


@pytest.mark.parametrize(("scheme", "cells"), [("walk_forward", 4), ("purged_kfold", 4)])
def test_every_scheme_runs_both_methods(tmp_path: Path, scheme: str, cells: int) -> None:
    config = {**CONFIG, "data": {"synthetic": {"n_bars": 1000, "persistence": 0.98}},
              "evaluation": {"scheme": scheme, "folds": 2, "seeds": 2}}
    run = _run(tmp_path, config, scheme)
    records = _test_records(run)
    assert sorted({(r["method"], r["fold"], r["seed"]) for r in records}) == sorted(
        (m, f, s) for m in METHODS for f in (0, 1) for s in (0, 1))
    assert len(records) == len(METHODS) * cells
    for rec in records:
        for key in ("accuracy", "nll", "nll_calibrated", "temperature", "sharpe"):
            assert np.isfinite(rec[key]), (rec["method"], key)
    for method in METHODS:
        assert read_bundle(run / "models" / method).method == method


def test_holdout_records_and_models(holdout: tuple[Path, Path]) -> None:
    run, _ = holdout
    by_method = {r["method"]: r for r in _test_records(run)}
    assert set(by_method) == set(METHODS)
    timings = json.loads((run / "timings.json").read_text())["cells"][0]["methods"]
    assert timings["logistic"]["C"] in (0.01, 0.1, 1.0, 10.0)
    assert timings["hmm"]["n_states"] == 3
    spec = json.loads((run / "models" / "hmm" / "member_0.json").read_text())["spec"]
    assert spec == {"kind": "hmm", "n_states": 3, "n_features": 9, "n_classes": 3,
                    "covariance": "diag"}
    assert not list((run / "models").rglob("*.pkl"))


def _predict(model: Path, candles: Path, out: Path) -> pd.DataFrame:
    assert main(["predict", "--model", str(model), "--candles", str(candles),
                 "--out", str(out)]) == 0
    return pd.read_parquet(out)


def _calibrated(ref: pd.DataFrame) -> np.ndarray:
    """The run's probabilities scaled by each row's validation temperature, (N, C)."""
    logits = np.log(ref[[f"p_{c}_run" for c in CLASSES]].to_numpy())
    logits = logits / ref[["temperature"]].to_numpy()
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("method", METHODS)
def test_predict_equals_the_runs_predictions(holdout: tuple[Path, Path], tmp_path: Path,
                                             method: str) -> None:
    run, candles = holdout
    got = _predict(run / "models" / method, candles, tmp_path / "p.parquet")
    runs = pd.read_parquet(run / "predictions.parquet")
    ref = runs[runs["method"] == method]
    merged = ref.merge(got, on="open_time", suffixes=("_run", ""))
    assert len(merged) == len(ref) > 300  # every val / test bar of the run
    assert set(merged["split"]) == {"val", "test"}
    # the filter started at the first feature-complete candle, the run's at its first
    # labelled bar: those few bars are forgotten long before the validation rows
    np.testing.assert_allclose(merged[[f"p_{c}" for c in CLASSES]].to_numpy(),
                               _calibrated(merged), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(merged["pred"].to_numpy(int), merged["pred_run"])


def _perturbed(candles: pd.DataFrame, after: int, seed: int) -> pd.DataFrame:
    """The same candles with every bar after position ``after`` redrawn (a valid market)."""
    other, _ = generate_market(len(candles), seed=seed, persistence=0.98)
    out = candles.copy()
    scale = candles["close"].iloc[after] / other["close"].iloc[after]
    for col in ("open", "high", "low", "close"):
        out.iloc[after + 1:, out.columns.get_loc(col)] = other[col].to_numpy()[after + 1:] * scale
    out.iloc[after + 1:, out.columns.get_loc("volume")] = other["volume"].to_numpy()[after + 1:]
    return out


def test_hmm_predict_never_reads_later_candles(holdout: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    """Changing or dropping candles after bar t never changes the probabilities up to t."""
    run, path = holdout
    candles = pd.read_parquet(path)
    base = _predict(run / "models" / "hmm", path, tmp_path / "base.parquet")
    cols = [f"p_{c}" for c in CLASSES]
    for t in (200, 700, 1100):
        save_candles(_perturbed(candles, t, seed=t), tmp_path / "changed.parquet")
        save_candles(candles.iloc[: t + 1], tmp_path / "cut.parquet")
        got = {name: _predict(run / "models" / "hmm", tmp_path / f"{name}.parquet",
                              tmp_path / f"{name}_p.parquet")[cols].to_numpy()
               for name in ("changed", "cut")}
        for proba in got.values():
            np.testing.assert_array_equal(proba[: t + 1], base[cols].to_numpy()[: t + 1])
        later = slice(t + 30, None)  # past the features' look-back: the change shows
        assert not np.allclose(got["changed"][later], base[cols].to_numpy()[later])


def test_hmm_predict_filters_from_the_first_candle_given(holdout: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    """Later-starting candles: the first bars know less; the filter then forgets the start."""
    run, path = holdout
    candles = pd.read_parquet(path)
    full = _predict(run / "models" / "hmm", path, tmp_path / "full.parquet")
    save_candles(candles.iloc[400:], tmp_path / "late.parquet")
    late = _predict(run / "models" / "hmm", tmp_path / "late.parquet", tmp_path / "l.parquet")
    merged = late.dropna(subset=["p_bull"]).merge(full, on="open_time", suffixes=("", "_full"))
    diff = np.abs(merged["p_bull"] - merged["p_bull_full"]).to_numpy()
    assert diff[0] > 0  # the first feature-complete bar starts from the uniform prior
    assert diff[50:].max() < 1e-12  # the filter forgets its start (here within a few bars)


def test_run_models_load_into_the_estimator(holdout: tuple[Path, Path], tmp_path: Path) -> None:
    run, path = holdout
    candles = pd.read_parquet(path)
    bundle = read_bundle(run / "models" / "hmm")
    feats = compute_features(candles, FeaturesConfig.model_validate(bundle.feature_config))
    feats = feats[list(bundle.feature_names)].dropna()
    for method in METHODS:
        est = SelfDistillClassifier.load(run / "models" / method)
        assert est.method_ == method
        got = _predict(run / "models" / method, path, tmp_path / f"{method}.parquet")
        want = got.set_index("open_time").loc[feats.index, [f"p_{c}" for c in CLASSES]]
        np.testing.assert_allclose(est.predict_proba(feats), want.to_numpy(), rtol=1e-9)


def test_numpy_and_onnx_refuse_them_by_name(holdout: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    run, _ = holdout
    for method in METHODS:
        with pytest.raises(ModelFileError, match=f"model kind '{method}'"):
            NumpyModel.from_dir(run / "models" / method)
        with pytest.raises(ModelFileError, match=f"model kind '{method}'.*cannot be exported"):
            export_onnx(run / "models" / method, tmp_path / "m.onnx")


def _xy(n: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows in time order: a sticky regime drives the features' mean."""
    rng = np.random.default_rng(seed)
    regime = np.cumsum(rng.random(n) < 0.03) % 2
    X = rng.normal(size=(n, 3)) + np.where(regime[:, None] == 1, 1.0, -1.0) * [1.0, 0.5, 0.0]
    return X, np.where(regime == 1, "up", "down")


@pytest.mark.parametrize("method", METHODS)
def test_estimator_fit_predict_save_load(method: str, tmp_path: Path) -> None:
    X, y = _xy()
    est = SelfDistillClassifier(method, random_state=0, calibrate=True).fit(X, y)
    proba = est.predict_proba(X)
    assert est.method_ == method
    assert list(est.classes_) == ["down", "up"]
    assert est.score(X, y) > 0.75
    np.testing.assert_array_equal(est.predict_proba(X[:120]), proba[:120])  # causal prefix
    back = SelfDistillClassifier.load(est.save(tmp_path / method))
    np.testing.assert_array_equal(back.predict_proba(X), proba)
    assert back.temperature_ == est.temperature_ != 1.0
    again = SelfDistillClassifier(method, random_state=0, calibrate=True).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), proba)


def test_estimator_passes_method_params() -> None:
    X, y = _xy()
    est = SelfDistillClassifier("hmm", random_state=0,
                                method_params={"hmm": {"n_states": 4, "n_init": 1}}).fit(X, y)
    assert est.models_[0].spec()["n_states"] == 4
    est = SelfDistillClassifier("logistic", method_params={"logistic": {"grid": [0.5]}}).fit(X, y)
    assert est.generations_[0]["C"] == 0.5


def test_bad_sections_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    config = {**CONFIG, "data": {"synthetic": {"n_bars": 1000}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    for item in ("hmm.n_states=1", "logistic.grid=[]", "hmm.covariance=full"):
        code = main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "x"),
                     "--set", item])
        err = capsys.readouterr().err.strip()
        assert code == 2, item
        assert err.count("\n") == 0, err
        assert item.split("=")[0] in err, err

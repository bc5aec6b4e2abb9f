"""`selfdistill predict` reproduces the run that trained the model, bar for bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from selfdistill.cli import main
from selfdistill.config import FeaturesConfig
from selfdistill.data.files import save_candles
from selfdistill.data.synthetic import generate_market
from selfdistill.estimator import SelfDistillClassifier
from selfdistill.features import compute_features
from selfdistill.modelio.bundle import read_bundle
from selfdistill.serving.numpy_runtime import NumpyModel

FEATURES = {"return_windows": [1, 4, 12], "volatility_windows": [12, 24], "ma_windows": [12, 24],
            "volume_window": 24, "range_window": 12, "skew_window": 24}
CLASSES = ("bull", "bear", "sideways")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run directory, candles file) of one small run on a Parquet candle file."""
    tmp = tmp_path_factory.mktemp("predict")
    candles, _ = generate_market(1500, seed=3, persistence=0.98)
    save_candles(candles, tmp / "candles.parquet")
    config = {
        "name": "p", "data": {"source": "parquet", "path": str(tmp / "candles.parquet")},
        "features": FEATURES, "labels": {"horizon": 6, "vol_span": 50},
        "model": {"hidden": [16, 16]},
        "training": {"epochs": 3, "batch_size": 128, "patience": 0},
        "methods": ["majority", "baseline", "born_again", "byot", "lightgbm"],
        "born_again": {"generations": 2}, "lightgbm": {"n_estimators": 20},
        "report": {"enabled": False}, "backtest": {"enabled": False},
    }
    (tmp / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp / "run.yaml"), "--out", str(tmp / "run")]) == 0
    return tmp / "run", tmp / "candles.parquet"


def _calibrated(ref: pd.DataFrame, suffix: str = "_run") -> np.ndarray:
    """The run's probabilities scaled by each row's validation temperature, (N, C)."""
    probs = ref[[f"p_{c}{suffix}" for c in CLASSES]].to_numpy()
    logits = np.log(probs) / ref[["temperature"]].to_numpy()
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _predict(model: Path, candles: Path, out: Path, *extra: str) -> pd.DataFrame:
    assert main(["predict", "--model", str(model), "--candles", str(candles),
                 "--out", str(out), *extra]) == 0
    return pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_csv(out)


def test_predict_equals_the_runs_predictions(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run, candles = trained
    got = _predict(run / "models" / "born_again", candles, tmp_path / "p.parquet")
    selected = read_bundle(run / "models" / "born_again").selected
    runs = pd.read_parquet(run / "predictions.parquet")
    ref = runs[(runs["method"] == "born_again") & (runs["generation"] == selected)]
    merged = ref.merge(got, on="open_time", suffixes=("_run", ""))
    assert len(merged) == len(ref) > 100  # every val / test bar of the run is predicted
    temperature = read_bundle(run / "models" / "born_again").temperature
    assert temperature == pytest.approx(ref["temperature"].iloc[-1])
    assert temperature != pytest.approx(1.0)  # the validation calibration travels with the model
    np.testing.assert_allclose(merged[[f"p_{c}" for c in CLASSES]].to_numpy(),
                               _calibrated(merged), rtol=1e-9)
    np.testing.assert_array_equal(merged["pred"].to_numpy(int), merged["pred_run"])
    for measure in ("variance", "mutual_information", "flip_rate"):
        np.testing.assert_allclose(merged[measure], merged[f"{measure}_run"], rtol=1e-12)
    assert set(merged["regime"]) <= set(CLASSES)
    np.testing.assert_array_equal(merged["uncertainty"], merged["mutual_information"])


@pytest.mark.parametrize("method", ["majority", "baseline", "byot", "lightgbm"])
def test_every_method_predicts_like_its_run(trained: tuple[Path, Path], tmp_path: Path,
                                            method: str) -> None:
    run, candles = trained
    got = _predict(run, candles, tmp_path / "p.parquet", "--method", method)
    bundle = read_bundle(run / "models" / method)
    keys = bundle.member_keys[bundle.selected]
    member = ",".join(f"{k}={v}" for k, v in keys.items() if v is not None) or "-"
    runs = pd.read_parquet(run / "predictions.parquet")
    ref = runs[(runs["method"] == method) & (runs["member"] == member)]
    merged = ref.merge(got, on="open_time", suffixes=("_run", ""))
    assert len(merged) == len(ref) > 100
    np.testing.assert_allclose(merged[[f"p_{c}" for c in CLASSES]].to_numpy(),
                               _calibrated(merged), rtol=1e-9, atol=1e-12)


def test_every_bar_gets_a_row_and_warmup_bars_have_no_regime(trained: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    run, candles = trained
    got = _predict(run, candles, tmp_path / "p.csv")  # a run directory: born_again by default
    assert len(got) == len(pd.read_parquet(candles))
    warm = got.iloc[:5]
    assert warm["regime"].isna().all()
    assert warm["p_bull"].isna().all()
    done = got.dropna(subset=["regime"])
    np.testing.assert_allclose(done[[f"p_{c}" for c in CLASSES]].sum(axis=1), 1.0)
    assert (done["pred"].astype(int) == done[[f"p_{c}" for c in CLASSES]]
            .to_numpy().argmax(axis=1)).all()


def test_single_member_model_reports_entropy(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run, candles = trained
    got = _predict(run, candles, tmp_path / "b.parquet", "--method", "baseline")
    assert "mutual_information" not in got.columns
    done = got.dropna(subset=["regime"])
    assert (done["entropy"] > 0).all()
    np.testing.assert_array_equal(done["uncertainty"], done["entropy"])


def test_run_model_loads_into_the_estimator_and_numpy(trained: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    run, candles = trained
    got = _predict(run, candles, tmp_path / "p.parquet").dropna(subset=["regime"])
    feats = compute_features(pd.read_parquet(candles), FeaturesConfig(**FEATURES))
    feats = feats.loc[pd.DatetimeIndex(got["open_time"])]
    est = SelfDistillClassifier.load(run / "models" / "born_again")
    probs = got[[f"p_{c}" for c in est.classes_]].to_numpy()
    np.testing.assert_allclose(est.predict_proba(feats), probs, atol=1e-12)
    assert (est.predict(feats) == got["regime"].to_numpy()).all()
    numpy_probs = NumpyModel.from_dir(run / "models" / "born_again").predict_proba(feats)
    np.testing.assert_allclose(numpy_probs, probs, atol=1e-5)
    # BYOT's exits are served by NumPy too, equal to `selfdistill predict --method byot`
    byot = _predict(run, candles, tmp_path / "b.parquet", "--method", "byot")
    byot = byot.dropna(subset=["regime"])
    numpy_byot = NumpyModel.from_dir(run / "models" / "byot")
    np.testing.assert_allclose(numpy_byot.predict_proba(feats),
                               byot[[f"p_{c}" for c in numpy_byot.classes]].to_numpy(),
                               atol=1e-5)


def test_estimator_model_serves_predict(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, candles = trained
    cfg = FeaturesConfig(**FEATURES)
    feats = compute_features(pd.read_parquet(candles), cfg).dropna()
    y = np.where(feats["ret_4"] > 0, "up", "down")
    est = SelfDistillClassifier(n_generations=1, epochs=2, hidden_sizes=(8,), random_state=0)
    est.fit(feats, y).save(tmp_path / "est", feature_config=cfg)
    got = _predict(tmp_path / "est", candles, tmp_path / "p.parquet").dropna(subset=["regime"])
    np.testing.assert_allclose(got[["p_down", "p_up"]].to_numpy(), est.predict_proba(feats),
                               atol=1e-12)


def test_errors_are_one_line_with_the_right_exit_code(trained: tuple[Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run, candles = trained
    assert main(["predict", "--model", str(tmp_path), "--candles", str(candles)]) == 1
    assert "neither a model directory" in capsys.readouterr().err
    assert main(["predict", "--model", str(run), "--candles", str(candles),
                 "--method", "snapshot"]) == 2
    err = capsys.readouterr().err
    assert "choose one of: baseline, born_again, byot, lightgbm, majority" in err
    assert main(["predict", "--model", str(run), "--candles", str(candles),
                 "--out", str(tmp_path / "p.xlsx")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    assert main(["predict", "--model", str(tmp_path / "model.pkl"), "--candles",
                 str(candles)]) == 1
    assert "never unpickles" in capsys.readouterr().err
    short = tmp_path / "short.parquet"  # fewer bars than the slowest feature's look-back
    save_candles(pd.read_parquet(candles).iloc[:20], short)
    assert main(["predict", "--model", str(run), "--candles", str(short)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: none of the 20 candles has complete features")
    assert "pass at least 25 candles" in err  # warm-up 24 bars (volume / skew windows)


def test_window_models_predict_like_their_run(tmp_path: Path) -> None:
    """cnn models see strided windows of the last W feature-complete bars in both places."""
    candles, _ = generate_market(1500, seed=4, persistence=0.98)
    save_candles(candles, tmp_path / "c.parquet")
    config = {
        "name": "w", "data": {"source": "parquet", "path": str(tmp_path / "c.parquet")},
        "features": FEATURES, "labels": {"horizon": 6, "vol_span": 50},
        "model": {"kind": "cnn", "hidden": [8, 8], "window": 8},
        "training": {"epochs": 2, "batch_size": 128, "patience": 0},
        "methods": ["born_again"], "born_again": {"generations": 1},
        "report": {"enabled": False}, "backtest": {"enabled": False},
    }
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "w.yaml"), "--out", str(tmp_path / "run")]) == 0
    got = _predict(tmp_path / "run" / "models" / "born_again", tmp_path / "c.parquet",
                   tmp_path / "p.parquet")
    runs = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    selected = read_bundle(tmp_path / "run" / "models" / "born_again").selected
    ref = runs[(runs["method"] == "born_again") & (runs["generation"] == selected)
               & (runs["split"] == "test")]
    merged = ref.merge(got, on="open_time", suffixes=("_run", ""))
    assert len(merged) == len(ref) > 100
    np.testing.assert_allclose(merged[[f"p_{c}" for c in CLASSES]].to_numpy(),
                               _calibrated(merged), rtol=1e-6, atol=1e-7)

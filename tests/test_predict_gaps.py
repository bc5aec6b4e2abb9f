"""`predict` treats new candles as training did: the resolved gap policy travels with the
model (issue 13 item 1), with `--gaps` to override it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from selfdistill.cli import main
from selfdistill.data.synthetic import generate_market
from selfdistill.modelio.bundle import read_bundle

FEATURES = {"return_windows": [1, 4, 12], "volatility_windows": [12, 24], "ma_windows": [12, 24],
            "volume_window": 24, "range_window": 12, "skew_window": 24}


def stock_hours(n_hours: int = 9000, seed: int = 3) -> pd.DataFrame:
    """Hourly bars of a market open 14:00-21:00 UTC on weekdays only (a stock exchange)."""
    candles, _ = generate_market(n_hours, seed=seed, persistence=0.98)
    idx = candles.index
    keep = (idx.dayofweek < 5) & (idx.hour >= 14) & (idx.hour < 21)
    return candles[keep].drop(columns=["gap_before"])


@pytest.fixture(scope="module")
def stock_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run directory, candle file) of a run on stock-hours data with data.gaps: auto."""
    tmp = tmp_path_factory.mktemp("stock")
    data = stock_hours()
    data.index.name = "Date"
    data.to_csv(tmp / "stock.csv")
    config = {
        "name": "stock", "data": {"source": "csv", "path": str(tmp / "stock.csv")},
        "features": FEATURES, "labels": {"horizon": 6, "vol_span": 50},
        "model": {"hidden": [16]}, "training": {"epochs": 2, "batch_size": 128, "patience": 0},
        "methods": ["baseline"], "report": {"enabled": False}, "backtest": {"enabled": False},
    }
    (tmp / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp / "run.yaml"), "--out", str(tmp / "run")]) == 0
    return tmp / "run", tmp / "stock.csv"


def test_the_model_stores_the_resolved_gap_policy(stock_run: tuple[Path, Path]) -> None:
    run, _ = stock_run
    bundle = read_bundle(run / "models" / "baseline")
    assert bundle.gap_policy == "sessions"  # auto, resolved on the training data
    assert bundle.extra["gaps"] == "sessions"
    stored = json.loads((run / "models" / "baseline" / "model.json").read_text())
    assert stored["feature_config"]["volume"] == "on"  # auto resolved too, never stored


def test_predict_on_the_training_file_reproduces_the_run(stock_run: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    # was: "none of the 4000 candles has complete features"
    run, candles = stock_run
    out = tmp_path / "p.parquet"
    assert main(["predict", "--model", str(run), "--candles", str(candles),
                 "--out", str(out)]) == 0
    got = pd.read_parquet(out)
    runs = pd.read_parquet(run / "predictions.parquet")
    ref = runs[runs["method"] == "baseline"]
    merged = ref.merge(got, on="open_time", suffixes=("_run", ""))
    assert len(merged) == len(ref) > 300
    np.testing.assert_array_equal(merged["pred"].to_numpy(int), merged["pred_run"])
    assert got["regime"].notna().mean() > 0.9


def test_the_gap_policy_can_be_overridden(stock_run: tuple[Path, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    run, candles = stock_run
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(run), "--candles", str(candles), "--out", str(out),
                 "--gaps", "mark"]) == 1
    err = capsys.readouterr().err.strip()
    assert "gap policy 'mark'" in err
    assert "--gaps sessions" in err
    assert "\n" not in err
    assert not out.exists()
    assert main(["predict", "--model", str(run), "--candles", str(candles), "--out", str(out),
                 "--gaps", "error"]) == 1
    assert "gap" in capsys.readouterr().err
    assert main(["predict", "--model", str(run), "--candles", str(candles),
                 "--gaps", "nights"]) == 2
    assert "--gaps 'nights' is not one of" in capsys.readouterr().err


def test_a_model_without_a_stored_policy_decides_on_the_new_candles(
        stock_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, candles = stock_run
    model = tmp_path / "model"
    shutil.copytree(run / "models" / "baseline", model)
    manifest = json.loads((model / "model.json").read_text())
    del manifest["extra"]["gaps"]  # a model saved before the policy was stored
    (model / "model.json").write_text(json.dumps(manifest))
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(model), "--candles", str(candles),
                 "--out", str(out)]) == 0
    assert pd.read_csv(out)["regime"].notna().mean() > 0.9

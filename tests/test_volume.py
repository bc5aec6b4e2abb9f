"""Zero- and constant-volume data (FX, index exports): features.volume auto | on | off
(issue 13 item 6)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml

from selfdistill.cli import main
from selfdistill.config import FeaturesConfig
from selfdistill.data.synthetic import generate_market
from selfdistill.errors import DataError
from selfdistill.features import compute_features, feature_names, feature_warmup
from selfdistill.modelio.bundle import read_bundle

SMALL = {"return_windows": [1, 4], "volatility_windows": [8], "ma_windows": [8],
         "volume_window": 30, "range_window": 8, "skew_window": 8}


def _no_volume(candles: pd.DataFrame, value: float = 0.0) -> pd.DataFrame:
    out = candles.copy()
    out["volume"] = value
    return out


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_auto_drops_volume_features_when_volume_is_constant(
        candles: pd.DataFrame, caplog: pytest.LogCaptureFixture, value: float) -> None:
    cfg = FeaturesConfig(**SMALL)
    with caplog.at_level(logging.WARNING, logger="selfdistill.features.causal"):
        feats = compute_features(_no_volume(candles, value), cfg)
    assert "volume_rel_30" not in feats.columns
    assert list(feats.columns) == feature_names(cfg.model_copy(update={"volume": "off"}))
    assert feats.iloc[8:].notna().all().all()  # complete rows after the 8-bar warm-up
    assert f"volume is constant ({value:g})" in caplog.text


def test_auto_keeps_volume_features_when_volume_varies(candles: pd.DataFrame) -> None:
    feats = compute_features(candles, FeaturesConfig(**SMALL))
    assert "volume_rel_30" in feats.columns


def test_on_refuses_all_zero_volume_by_name(candles: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"volume is 0 on every one of the 600 candles .*"
                                        r"features.volume: off"):
        compute_features(_no_volume(candles), FeaturesConfig(**SMALL, volume="on"))


def test_off_drops_volume_and_its_warm_up(candles: pd.DataFrame) -> None:
    cfg = FeaturesConfig(**SMALL, volume="off")
    assert "volume_rel_30" not in compute_features(candles, cfg).columns
    assert feature_warmup(cfg) == 8
    assert feature_warmup(FeaturesConfig(**SMALL)) == 30


def test_a_stored_feature_config_mapping_is_accepted(candles: pd.DataFrame) -> None:
    # issue 13 first use: model.bundle.feature_config is a dict that compute_features rejected
    cfg = FeaturesConfig(**SMALL)
    as_stored = cfg.model_dump(mode="json")
    pd.testing.assert_frame_equal(compute_features(candles, as_stored),
                                  compute_features(candles, cfg))
    with pytest.raises(DataError, match="invalid feature config"):
        compute_features(candles, {"volume_window": -3})


def test_a_zero_volume_fx_file_runs_and_predicts(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    # was: "only 0 of 2000 bars have both features and labels; use more candles"
    fx, _ = generate_market(2000, seed=11, persistence=0.98)
    fx = _no_volume(fx.drop(columns=["gap_before"]))
    fx.to_csv(tmp_path / "eurusd.csv")
    config = {"name": "fx", "data": {"source": "csv", "path": str(tmp_path / "eurusd.csv")},
              "features": SMALL, "labels": {"horizon": 6, "vol_span": 50},
              "model": {"hidden": [8]}, "training": {"epochs": 1, "patience": 0},
              "methods": ["baseline"], "report": {"enabled": False},
              "backtest": {"enabled": False}}
    (tmp_path / "fx.yaml").write_text(yaml.safe_dump(config))
    with caplog.at_level(logging.WARNING, logger="selfdistill.features.causal"):
        assert main(["run", str(tmp_path / "fx.yaml"), "--out", str(tmp_path / "run")]) == 0
    assert "volume is constant (0)" in caplog.text  # the log says what was dropped
    bundle = read_bundle(tmp_path / "run" / "models" / "baseline")
    assert bundle.feature_config is not None
    assert bundle.feature_config["volume"] == "off"  # what training resolved, stored
    assert not any(n.startswith("volume") for n in bundle.feature_names)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(tmp_path / "run"), "--candles",
                 str(tmp_path / "eurusd.csv"), "--out", str(out)]) == 0
    assert pd.read_csv(out)["regime"].notna().sum() > 1900
    manifest = json.loads((tmp_path / "run" / "models" / "baseline" / "model.json").read_text())
    assert manifest["feature_config"]["volume"] == "off"

"""The fold pipeline: train-only scaling, validation-only selection, purged rows."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from candle_helpers import make_candles, scale_prices
from selfdistill.config import parse_config
from selfdistill.evaluation.cell import run_fold
from selfdistill.evaluation.experiment import plan_splits
from selfdistill.evaluation.fold import (
    build_dataset,
    holdout_split,
    load_candles,
    make_train_data,
    scaled_inputs,
)
from selfdistill.features import Scaler, compute_features, feature_names
from selfdistill.labels import make_labels

CFG = {"data": {"synthetic": {"n_bars": 2000}}, "model": {"hidden": [16]},
       "features": {"return_windows": [1, 4, 12], "volatility_windows": [12, 24],
                    "ma_windows": [12, 24], "volume_window": 24, "range_window": 12,
                    "skew_window": 24},
       "labels": {"horizon": 6, "vol_span": 50},
       "training": {"epochs": 3, "patience": 0}, "born_again": {"generations": 2},
       "methods": ["baseline", "born_again"]}


@pytest.fixture(scope="module")
def setup():
    cfg = parse_config(CFG)
    candles, truth, interval = load_candles(cfg)
    ds = build_dataset(cfg, candles, truth, interval)
    return cfg, ds, holdout_split(ds, cfg)


def test_split_is_purged_by_the_label_horizon(setup) -> None:
    _, ds, split = setup
    start, end = ds.labels.start, ds.labels.end
    assert end[split.train].max() < start[split.val].min()
    assert end[split.val].max() < start[split.test].min()


def _moved_from(candles: pd.DataFrame, first: int, seed: int) -> pd.DataFrame:
    """``candles`` with every bar from ``first`` on rescaled and its volume redrawn."""
    rng = np.random.default_rng(seed)
    factor = np.ones(len(candles))
    factor[first:] = np.exp(np.cumsum(rng.normal(0.0, 0.02, len(candles) - first)))
    out = scale_prices(candles, factor)
    volume = out["volume"].to_numpy().copy()
    volume[first:] = rng.gamma(2.0, 500.0, len(candles) - first)
    out["volume"] = volume
    return out


def test_scaler_statistics_come_from_training_rows_only(setup) -> None:
    cfg, ds, split = setup
    x, scaler = scaled_inputs(ds, split.train, cfg.features.scaler)
    # every bar from the first validation row on moves: validation and test features change
    moved = dataclasses.replace(ds, candles=_moved_from(ds.candles, ds.labels.start[split.val[0]],
                                                        seed=1))
    x2, scaler2 = scaled_inputs(moved, split.train, cfg.features.scaler)
    assert scaler.to_dict() == scaler2.to_dict()
    np.testing.assert_array_equal(x[split.train], x2[split.train])
    assert not np.allclose(x[split.val], x2[split.val])  # the change reached the features


def test_changing_test_bars_changes_no_fitted_or_validation_number(setup) -> None:
    cfg, ds, split = setup
    result = run_fold(ds, split, cfg, seed=0)
    moved = dataclasses.replace(ds, candles=_moved_from(ds.candles,
                                                        ds.labels.start[split.test[0]], seed=2))
    result2 = run_fold(moved, split, cfg, seed=0)
    assert result.scaler.to_dict() == result2.scaler.to_dict()
    val = [r for r in result.records if r["split"] == "val"]
    val2 = [r for r in result2.records if r["split"] == "val"]
    assert [r["nll"] for r in val] == [r["nll"] for r in val2]
    test = [r["nll"] for r in result.records if r["split"] == "test" and "nll" in r]
    assert test
    assert test != [r["nll"] for r in result2.records if r["split"] == "test" and "nll" in r]


@pytest.mark.parametrize("kind", ["standard", "robust", "none"])
def test_cell_inputs_are_the_float64_pipelines_numbers(kind: str) -> None:
    """x of a cell == Scaler().fit(raw64[train]).transform(raw64), computed column by column."""
    candles = make_candles(3000, seed=2, gaps=(400, 1500, 1501))
    cfg = parse_config({**CFG, "features": {**CFG["features"], "scaler": kind},
                        "evaluation": {"scheme": "purged_kfold", "folds": 3}})
    ds = build_dataset(cfg, candles, None, "60")
    split = plan_splits(ds, cfg)[1]  # training rows on both sides of the test block
    _, x, scaler = make_train_data(ds, split, cfg, torch.device("cpu"))
    raw = compute_features(candles, cfg.features).to_numpy()[ds.labels.start]  # (R, F) float64
    expected = Scaler(kind).fit(raw[split.train])
    assert x.dtype == torch.float32
    assert x.is_contiguous()
    assert tuple(x.shape) == raw.shape
    assert ds.feature_names == tuple(feature_names(cfg.features))
    np.testing.assert_array_equal(x.numpy(), expected.transform(raw))
    assert scaler.to_dict() == expected.to_dict()


@pytest.mark.parametrize("gaps", [(), (400, 1500, 1501)])
def test_build_dataset_keeps_the_labelled_rows_with_every_feature_finite(gaps) -> None:
    candles = make_candles(3000, seed=2, gaps=gaps)
    cfg = parse_config({**CFG, "labels": {"horizon": 6, "vol_span": 10}})  # features warm longer
    ds = build_dataset(cfg, candles, None, "60")
    labels = make_labels(candles, cfg.labels)
    raw = compute_features(candles, cfg.features).to_numpy()[labels.start]
    finite = np.isfinite(raw).all(axis=1)
    assert not finite.all()  # warm-up (and gaps) really drop rows
    np.testing.assert_array_equal(ds.labels.start, labels.start[finite])
    np.testing.assert_array_equal(ds.labels.end, labels.end[finite])
    pd.testing.assert_series_equal(ds.labels.y, labels.y[finite])
    assert ds.times.equals(candles.index[ds.labels.start])
    head = ds.head(100)
    assert head.n_rows == 100
    assert head.times.equals(ds.times[:100])


def test_dataset_rows_of_consecutive_bars_are_views(setup) -> None:
    _, ds, _ = setup  # synthetic bars, no gaps: the labelled rows are one run of bars
    times = ds.times
    shipped = pickle.loads(pickle.dumps(ds))  # as a worker process receives it
    assert "times" not in shipped.__dict__  # the cached view does not travel ...
    assert shipped.times.equals(times)  # ... it is rebuilt where it is used
    assert np.shares_memory(ds.times.asi8, ds.candles.index.asi8)
    assert np.shares_memory(ds.labels.y.index.asi8, ds.candles.index.asi8)
    assert ds.truth is not None
    assert ds.truth.dtype == np.int8


def test_test_labels_never_influence_selection(setup) -> None:
    cfg, ds, split = setup
    y = ds.labels.y.copy()
    rng = np.random.default_rng(0)
    y.iloc[split.test] = rng.integers(0, 3, len(split.test), dtype=np.int8)
    ds_shuffled = build_dataset(cfg, ds.candles, None, ds.interval)
    ds_shuffled.labels.y = y
    a = run_fold(ds, split, cfg, seed=0)
    b = run_fold(ds_shuffled, split, cfg, seed=0)
    assert a.lineages[1].selected == b.lineages[1].selected
    va = [r["accuracy"] for r in a.records if r["split"] == "val"]
    vb = [r["accuracy"] for r in b.records if r["split"] == "val"]
    assert va == vb


def test_uncertainty_summaries_for_generations(setup) -> None:
    cfg, ds, split = setup
    result = run_fold(ds, split, cfg, seed=0)
    measures = {(u["split"], u["measure"]) for u in result.uncertainty}
    assert ("test", "mutual_information") in measures
    q = next(u for u in result.uncertainty if u["measure"] == "mutual_information"
             and u["split"] == "test")["quantiles"]
    assert len(q) == 5
    assert sum(b["n"] for b in q) == len(split.test)


def _stock_candles(tmp_path, n_days: int = 2400):
    """Daily candles on business days only (weekends closed), written as CSV."""
    from selfdistill.data.synthetic import generate_market

    candles, _ = generate_market(n_days, seed=3, interval="D", start="2010-01-01")
    business = candles[candles.index.dayofweek < 5].drop(columns=["gap_before"])
    path = tmp_path / "stock.csv"
    business.reset_index().rename(columns={"open_time": "Date"}).to_csv(path, index=False)
    return path


def test_weekend_closures_are_sessions_not_missing_candles(tmp_path) -> None:
    path = _stock_candles(tmp_path)
    cfg = parse_config({"data": {"source": "csv", "path": str(path)}})
    candles, _, interval = load_candles(cfg)
    assert interval == "D"
    assert not candles["gap_before"].any()
    ds = build_dataset(cfg, candles, None, interval)
    assert ds.n_rows > 1500  # labels span weekends instead of being dropped

    marked = parse_config({"data": {"source": "csv", "path": str(path), "gaps": "mark"}})
    assert load_candles(marked)[0]["gap_before"].sum() > 300


def test_rare_gaps_stay_marked_under_auto(tmp_path) -> None:
    from selfdistill.data.synthetic import generate_market

    candles, _ = generate_market(1000, seed=1)
    holes = candles.drop(index=candles.index[[100, 101, 500]]).drop(columns=["gap_before"])
    path = tmp_path / "crypto.parquet"
    holes.to_parquet(path)
    loaded, _, _ = load_candles(parse_config({"data": {"source": "parquet", "path": str(path)}}))
    assert int(loaded["gap_before"].sum()) == 2


def test_shipped_walk_forward_config_runs_on_a_stock_csv(tmp_path) -> None:
    """Acceptance: only the data path and periods per year change (plus size knobs)."""
    import json

    from selfdistill.cli import main

    path = _stock_candles(tmp_path)
    out = tmp_path / "run"
    config = Path(__file__).resolve().parents[1] / "configs" / "walk_forward.yaml"
    code = main(["run", str(config), "--out", str(out), "--no-report",
                 "--set", "data.source=csv", "--set", f"data.path={path}",
                 "--set", "backtest.periods_per_year=252",
                 # keep the test fast: fewer seeds / epochs, one lightweight method set
                 "--set", "evaluation.seeds=1", "--set", "evaluation.workers=1",
                 "--set", "training.epochs=2", "--set", "born_again.generations=1",
                 "--set", "methods=[baseline,born_again]"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interval"] == "D"
    assert {r["fold"] for r in metrics["records"] if r.get("fold") is not None} == {0, 1, 2, 3}


def test_session_policy_applies_to_store_data_too(tmp_path, monkeypatch) -> None:
    """data.gaps is one policy whatever the source: Bybit store data follows it too."""
    from selfdistill.data import store
    from selfdistill.data.candles import validate_candles

    business = pd.read_csv(_stock_candles(tmp_path), index_col="Date", parse_dates=True)
    business.index = business.index.rename("open_time")
    marked = validate_candles(business, interval="D", gaps="mark")
    assert marked["gap_before"].any()
    monkeypatch.setattr(store, "load_or_fetch", lambda cfg, gaps="mark": marked)
    cfg = parse_config({"data": {"source": "bybit", "gaps": "sessions"}})
    loaded, _, _ = load_candles(cfg)
    assert not loaded["gap_before"].any()

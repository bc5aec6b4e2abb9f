"""The fold pipeline: train-only scaling, validation-only selection, purged rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from selfdistill.config import parse_config
from selfdistill.evaluation.fold import build_dataset, holdout_split, load_candles, run_fold

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


def test_scaler_statistics_come_from_training_rows_only(setup) -> None:
    cfg, ds, split = setup
    result = run_fold(ds, split, cfg, seed=0)
    ds2 = build_dataset(cfg, ds.candles, None, ds.interval)
    ds2.features.iloc[split.test] = ds2.features.iloc[split.test] * 50 + 3  # change test rows
    result2 = run_fold(ds2, split, cfg, seed=0)
    assert result.scaler.to_dict() == result2.scaler.to_dict()
    val = [r for r in result.records if r["split"] == "val"]
    val2 = [r for r in result2.records if r["split"] == "val"]
    assert [r["nll"] for r in val] == [r["nll"] for r in val2]


def test_test_labels_never_influence_selection(setup) -> None:
    cfg, ds, split = setup
    y = ds.labels.y.copy()
    rng = np.random.default_rng(0)
    y.iloc[split.test] = rng.integers(0, 3, len(split.test))
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

"""The fold pipeline: train-only scaling, validation-only selection, purged rows."""

from __future__ import annotations

import numpy as np
import pytest

from selfdistill.config import parse_config
from selfdistill.pipeline import build_dataset, holdout_split, load_candles, run_fold

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

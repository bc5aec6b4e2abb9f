"""selfdistill tune: the space, the leakage guarantee, the study end to end and resumed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from selfdistill.cli import main
from selfdistill.config import RunConfig
from selfdistill.errors import ConfigError
from selfdistill.evaluation.experiment import plan_splits
from selfdistill.evaluation.fold import Dataset, build_dataset, load_candles
from selfdistill.labels import LabelSet
from selfdistill.tuning.space import apply_params, check_space, is_int_field
from tiny_experiment import tiny_config

optuna = pytest.importorskip("optuna")

SPACE = {"born_again.temperature": {"low": 1, "high": 10, "log": True},
         "born_again.generations": {"low": 1, "high": 2},
         "model.hidden": [[8], [16, 16]]}


def _config(**tune: Any) -> RunConfig:
    return tiny_config(methods=["majority", "baseline", "born_again"],
                       training={"epochs": 1}, evaluation={"folds": 2, "seeds": 1},
                       backtest={"uncertainty_gate": None},
                       tune={"space": SPACE, "startup_trials": 1, **tune})


# ------------------------------------------------------------------ the space


def test_the_space_follows_the_field_types() -> None:
    assert is_int_field("born_again.generations")
    assert not is_int_field("born_again.temperature")
    tuned = apply_params(_config(), {"model.hidden": [16, 16], "born_again.alpha": 0.7})
    assert tuned.model.hidden == [16, 16]
    assert tuned.born_again.alpha == 0.7


@pytest.mark.parametrize(("space", "message"), [
    ({"born_again.temprature": {"low": 1, "high": 2}}, "born_again.temprature: no such"),
    ({"labels.horizon": {"low": 2, "high": 8}}, "labels.horizon: cannot be searched"),
    ({"born_again.generations": {"low": 1.5, "high": 3}}, "whole-number low and high"),
    ({"model.hidden": [[8], [-4]]}, "tune.space.model.hidden:"),
    ({}, "tune.space is empty"),
])
def test_a_bad_space_is_one_config_error(space: dict[str, Any], message: str) -> None:
    cfg = tiny_config(tune={"space": space})
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        check_space(cfg)


# ------------------------------------------------------------------ no test rows


def _dataset(cfg: RunConfig) -> Dataset:
    candles, truth, interval = load_candles(cfg)
    return build_dataset(cfg, candles, truth, interval)


def _with_labels(ds: Dataset, rows: np.ndarray, seed: int) -> Dataset:
    """``ds`` with the labels of ``rows`` shuffled among themselves."""
    y = ds.labels.y.to_numpy().copy()
    y[rows] = np.random.default_rng(seed).permutation(y[rows])
    labels = LabelSet(y=pd.Series(y, index=ds.labels.y.index), start=ds.labels.start,
                      end=ds.labels.end, class_names=ds.labels.class_names,
                      method=ds.labels.method, horizon=ds.labels.horizon)
    return dataclasses.replace(ds, labels=labels)


def _trial_values(cfg: RunConfig, ds: Dataset) -> list[float | None]:
    from selfdistill.tuning.objective import search_data
    from selfdistill.tuning.study import open_study, optimize

    study = open_study(cfg, None, "leak")
    optimize(cfg, search_data(ds, cfg), study, trials=4)
    return [t.value for t in study.get_trials()]


def test_the_objective_never_reads_test_rows() -> None:
    cfg = _config()
    ds = _dataset(cfg)
    test_rows = np.concatenate([s.test for s in plan_splits(ds, cfg)])
    before = _trial_values(cfg, ds)
    assert len(before) == 4
    assert all(v is not None and np.isfinite(v) for v in before)
    assert _trial_values(cfg, _with_labels(ds, test_rows, seed=1)) == before
    # ... while the development rows it does read move every value
    dev_rows = np.arange(int(test_rows.min()) // 2)
    assert _trial_values(cfg, _with_labels(ds, dev_rows, seed=1)) != before


def test_the_search_rows_end_before_the_first_test_bar() -> None:
    from selfdistill.tuning.objective import search_data

    cfg = _config()
    ds = _dataset(cfg)
    first_test = min(int(s.test[0]) for s in plan_splits(ds, cfg))
    data = search_data(ds, cfg)
    assert data.ds.n_rows <= first_test
    assert int(data.ds.labels.end.max()) < int(ds.labels.start[first_test])
    assert len(data.splits) == 2
    with pytest.raises(ConfigError, match="purged_kfold tests on every bar"):
        search_data(ds, tiny_config(evaluation={"scheme": "purged_kfold", "folds": 3}))


# ------------------------------------------------------------------ end to end


def _write_config(path: Path) -> Path:
    cfg = _config().model_dump(mode="json")
    cfg["report"] = {"enabled": True}
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _assert_tracked(uri: str, n_trials: int) -> None:
    """The final run is the parent MLflow run, each trial a child run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert [p.info.run_name for p in parents] == ["first"]
    assert len(children) == n_trials
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all("validation_nll_fold" in c.data.metrics for c in children)


def test_tune_end_to_end_then_resumed_from_its_storage(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "tune.yaml")
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    args = ["tune", str(config), "--storage", storage, "--study-name", "s"]
    mlruns = tmp_path / "mlruns"
    assert main([*args, "--trials", "3", "--out", str(tmp_path / "first"), "--track", "mlflow",
                 "--set", f"tracking.mlflow.uri={mlruns}"]) == 0
    first = json.loads((tmp_path / "first" / "tune.json").read_text())
    assert len(first["trials"]) == 3
    assert first["best"]["params"]["model.hidden"] in ([8], [16, 16])
    assert "test rows were read once" in first["warning"]
    assert first["study"]["development"]["folds"] == 2
    report = (tmp_path / "first" / "report.html").read_text()
    assert "Hyperparameter search" in report
    assert (tmp_path / "first" / "metrics.json").is_file()
    _assert_tracked(str(mlruns), n_trials=3)
    # resumed: the study keeps its 3 trials and runs only the fourth
    assert main([*args, "--trials", "4", "--out", str(tmp_path / "second")]) == 0
    second = json.loads((tmp_path / "second" / "tune.json").read_text())
    assert [t["number"] for t in second["trials"]] == [0, 1, 2, 3]
    assert [t["value"] for t in second["trials"][:3]] == [t["value"] for t in first["trials"]]


def test_tune_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write_config(tmp_path / "tune.yaml")
    assert main(["tune", str(config), "--trials", "2", "--workers", "2",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--workers 2 runs trial loops in 2 processes" in capsys.readouterr().err
    assert main(["tune", str(config), "--trials", "2", "--set",
                 "tune.space={labels.k: {low: 0.1, high: 1}}"]) == 2
    assert "labels.k: cannot be searched" in capsys.readouterr().err


@pytest.mark.slow
def test_parallel_trial_loops_share_the_storage(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "tune.yaml")
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    assert main(["tune", str(config), "--trials", "4", "--workers", "2", "--storage", storage,
                 "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "tune.json").read_text())
    assert sorted(t["number"] for t in summary["trials"]) == [0, 1, 2, 3]
    assert summary["counts"]["running"] == 0

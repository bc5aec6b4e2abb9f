"""MLflow tracking, read back with MlflowClient from a local store."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from selfdistill.cli import main
from selfdistill.config.scaleout import MlflowConfig
from selfdistill.errors import TrackingError
from selfdistill.tracking import MlflowTracker, flatten, metric_items, tag_items
from tiny_experiment import tiny_config

mlflow_tracking = pytest.importorskip("mlflow.tracking")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny complete run directory (holdout, one seed) with a report."""
    from selfdistill.evaluation.experiment import run_experiment
    from selfdistill.report import write_report

    cfg = tiny_config(methods=["majority", "baseline", "born_again"], training={"epochs": 1},
                      evaluation={"scheme": "holdout", "folds": 1, "seeds": 1})
    out = tmp_path_factory.mktemp("tracked") / "tiny-run"
    run_experiment(cfg, out_dir=out)
    write_report(out)
    return out


def _client(uri: str) -> Any:
    return mlflow_tracking.MlflowClient(tracking_uri=uri)


def test_a_run_directory_becomes_an_mlflow_run(run_dir: Path, tmp_path: Path) -> None:
    uri = str(tmp_path / "mlruns")  # a folder: MLflow's file store
    run_id = MlflowTracker(MlflowConfig(enabled=True, uri=uri), "tiny").log_run(run_dir)
    client = _client(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "tiny-run"
    assert run.data.params["born_again.generations"] == "1"
    assert run.data.params["evaluation.scheme"] == "holdout"
    metrics = run.data.metrics
    assert 0.0 <= metrics["test/baseline/accuracy"] <= 1.0
    assert metrics["test/born_again_selected/nll"] > 0
    assert "val/born_again_generation_0_/accuracy" in metrics  # [generation=0], sanitised
    tags = run.data.tags
    assert tags["finding.own_baseline"] in ("yes", "no", "not significant", "not testable")
    assert any(k.startswith("verdict.born_again_selected.vs_baseline.") for k in tags)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.json", "config.yaml", "report.html", "summary.md", "models"} <= artifacts
    models = {a.path for a in client.list_artifacts(run_id, "models")}
    assert "models/born_again" in models


def test_tune_trials_are_child_runs(run_dir: Path, tmp_path: Path) -> None:
    uri = str(tmp_path / "mlruns")
    tracker = MlflowTracker(MlflowConfig(enabled=True, uri=uri), "tiny")
    parent = tracker.log_run(run_dir)
    trials = [{"number": 0, "state": "complete", "value": 1.05, "fold_values": [1.0, 1.1],
               "params": {"born_again.temperature": 2.5, "model.hidden": [8]}},
              {"number": 1, "state": "pruned", "value": 1.3, "fold_values": [1.3],
               "params": {"born_again.temperature": 7.0, "model.hidden": [16, 16]}}]
    children = tracker.log_trials(parent, trials, metric="nll")
    client = _client(uri)
    first, second = (client.get_run(c) for c in children)
    assert first.data.tags["mlflow.parentRunId"] == parent
    assert first.data.params["born_again.temperature"] == "2.5"
    assert second.data.params["model.hidden"] == "[16, 16]"
    assert first.data.metrics["validation_nll"] == pytest.approx(1.05)
    history = client.get_metric_history(children[0], "validation_nll_fold")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, pytest.approx(1.1))]
    assert (first.info.status, second.info.status) == ("FINISHED", "KILLED")


def test_run_track_mlflow_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("name: cli-tracked\ndevice: cpu\nmethods: [majority, baseline]\n"
                      "data: {synthetic: {n_bars: 800}}\ntraining: {epochs: 1}\n"
                      "report: {enabled: false}\n")
    uri = str(tmp_path / "store")
    code = main(["run", str(config), "--out", str(tmp_path / "run"), "--track", "mlflow",
                 "--set", f"tracking.mlflow.uri={uri}", "--no-report"])
    assert code == 0
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name("cli-tracked").experiment_id])
    assert [r.info.run_name for r in runs] == ["run"]
    said = capsys.readouterr()
    assert runs[0].info.run_id in (said.out + said.err).replace("\n", "")


def test_a_wrong_tracker_is_a_usage_error(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "nothing.yaml", "--track", "wandb"]) == 2
    assert "--track 'wandb' is not a tracker" in capsys.readouterr().err


def test_an_unusable_store_is_a_tracking_error(run_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a database")
    bad = MlflowTracker(MlflowConfig(enabled=True, uri=f"sqlite:///{blocker}/x.db"), "t")
    with pytest.raises(TrackingError, match="cannot use the MLflow tracking URI"):
        bad.log_run(run_dir)


@pytest.mark.slow
def test_the_default_sqlite_store(run_dir: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_id = MlflowTracker(MlflowConfig(enabled=True), "tiny").log_run(run_dir)
    assert sqlite3.connect(tmp_path / "mlruns.db").execute(
        "select count(*) from runs").fetchone() == (1,)
    client = _client("sqlite:///mlruns.db")
    assert client.get_run(run_id).info.artifact_uri.startswith(
        (tmp_path / "mlartifacts").as_uri())
    assert (tmp_path / "mlartifacts").is_dir()


def test_flatten_metric_and_tag_names() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == \
        {"a.b": "1", "a.c": "[1, 2]", "d": "None"}
    metrics = {"records": [{"method": "x+gate", "split": "test", "aggregate": True,
                            "generation": None, "sharpe": {"mean": 1.0, "ci_low": 0.5,
                                                           "ci_high": 1.5}}],
               "comparisons": [{"method": "x", "candidate": "generation=1", "kind": "k",
                                "metric": "nll", "verdict": "better"}]}
    assert metric_items(metrics) == {"test/x_gate/sharpe": 1.0,
                                     "test/x_gate/sharpe_ci_low": 0.5,
                                     "test/x_gate/sharpe_ci_high": 1.5}
    assert tag_items(metrics)["verdict.x_generation_1_.k.nll"] == "better"

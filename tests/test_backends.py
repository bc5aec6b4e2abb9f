"""The Ray backend: same metrics.json as the local pool, retries, failures by name.

One local Ray instance (2 CPUs, a small object store) serves the whole module: Ray
takes seconds to start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from selfdistill.config import RunConfig
from selfdistill.errors import TrainingError
from selfdistill.evaluation import backends
from selfdistill.evaluation.experiment import (
    backtest_settings,
    experiment_seeds,
    plan_cells,
    plan_splits,
    run_experiment,
)
from selfdistill.evaluation.fold import build_dataset, load_candles
from tiny_experiment import tiny_config

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    ray.init(num_cpus=2, object_store_memory=80 * 1024**2, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _config() -> RunConfig:
    return tiny_config(methods=["majority", "baseline", "born_again"],
                       training={"epochs": 1}, evaluation={"folds": 2, "seeds": 1})


def test_ray_and_local_write_the_same_metrics_json(ray_session: Any, tmp_path: Path) -> None:
    cfg = _config()
    local = run_experiment(cfg, out_dir=tmp_path / "local")
    remote = run_experiment(cfg, out_dir=tmp_path / "ray", backend="ray")
    assert (tmp_path / "ray" / "metrics.json").read_bytes() == \
        (tmp_path / "local" / "metrics.json").read_bytes()
    assert local.metrics == remote.metrics
    # the models of the last fold came back from the worker; no cell cache is left behind
    assert sorted(p.name for p in (tmp_path / "ray" / "models").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local" / "models").iterdir())
    assert (tmp_path / "ray" / "models" / "born_again" / "model.json").is_file()
    assert not (tmp_path / "ray" / "cells").exists()


def _cells(cfg: RunConfig) -> tuple[Any, list[Any], Any]:
    candles, truth, interval = load_candles(cfg)
    ds = build_dataset(cfg, candles, truth, interval)
    cells = plan_cells(plan_splits(ds, cfg), experiment_seeds(cfg))
    return ds, cells, backtest_settings(cfg, ds.interval)


def test_a_failed_cell_runs_again_once_then_is_reported_by_name(ray_session: Any,
                                                                tmp_path: Path) -> None:
    cfg = _config()
    ds, cells, settings = _cells(cfg)
    marks = tmp_path / "marks"
    marks.mkdir()
    real = backends._ray_cell

    def flaky(ds: Any, cell: Any, cfg: Any, settings: Any, threads: int) -> Any:
        """Fold 0 fails on its first try only (a lost node); fold 1 fails every time."""
        mark = marks / f"{cell.fold}-{cell.seed}"  # a file: the task runs in another process
        if cell.fold == 1 or not mark.exists():
            mark.touch()
            raise ValueError(f"bad fold {cell.fold}")
        return real(ds, cell, cfg, settings, threads)

    finished: list[tuple[int, int]] = []

    def run() -> None:
        for result in backends._schedule(ray, ds, cells, cfg, settings, tmp_path, 2, 1,
                                         cell_fn=flaky):
            finished.append((result.fold, result.seed))

    with pytest.raises(TrainingError, match=r"1 of 2 cells failed twice on Ray: fold 1 seed 0 "
                                            r"\(ValueError: bad fold 1\)"):
        run()
    assert finished == [(0, 0)]  # fold 0 succeeded on its second try

"""A killed run resumes without redoing its finished cells, and ends byte-identical."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from selfdistill.config import RunConfig
from selfdistill.errors import ConfigError
from selfdistill.evaluation import experiment
from selfdistill.evaluation.experiment import ExperimentCallback, run_experiment
from selfdistill.rundir.cellcache import cached_cells, load_cells
from selfdistill.rundir.lifecycle import incomplete_reason
from tiny_experiment import tiny_config


def _config(epochs: int = 1) -> RunConfig:
    return tiny_config(methods=["majority", "baseline", "born_again"],
                       training={"epochs": epochs}, evaluation={"folds": 2, "seeds": 1})


class _StopAfterFirstCell(ExperimentCallback):
    """Ctrl-C right after the first cell finished (as a kill would stop the run)."""

    def on_cell_end(self, done: int, total: int, info: dict[str, Any]) -> None:
        raise KeyboardInterrupt


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    run_experiment(_config(), out_dir=out)
    return out


def test_a_resumed_run_redoes_only_unfinished_cells_and_matches(
        uninterrupted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt) as stopped:
        run_experiment(_config(), out_dir=out, callbacks=[_StopAfterFirstCell()])
    assert "run it again with --resume" in str(stopped.value.__notes__)
    assert incomplete_reason(out) is not None
    assert cached_cells(out) == 1
    ran: list[tuple[int, int]] = []
    real = experiment.run_cell

    def counting(ds: Any, cell: Any, *args: Any, **kwargs: Any) -> Any:
        ran.append((cell.fold, cell.seed))
        return real(ds, cell, *args, **kwargs)

    monkeypatch.setattr(experiment, "run_cell", counting)
    run_experiment(_config(), out_dir=out, resume=True)
    assert ran == [(1, 0)]  # fold 0 came from the cache
    assert (out / "metrics.json").read_bytes() == (uninterrupted / "metrics.json").read_bytes()
    assert incomplete_reason(out) is None
    assert not (out / "cells").exists()


def test_a_cell_cut_off_mid_write_is_not_taken(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_config(), out_dir=out, callbacks=[_StopAfterFirstCell()])
    (next((out / "cells").glob("fold-*")) / "DONE").unlink()  # killed before DONE
    assert load_cells(out) == {}


def test_resume_refuses_another_config_and_a_finished_run(uninterrupted: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_config(), out_dir=out, callbacks=[_StopAfterFirstCell()])
    with pytest.raises(ConfigError, match=r"holds cells of another config \(differs in "
                                          r"training.epochs\)"):
        run_experiment(_config(epochs=2), out_dir=out, resume=True)
    with pytest.raises(ConfigError, match="is a finished run: nothing to resume"):
        run_experiment(_config(), out_dir=uninterrupted, resume=True)
    with pytest.raises(ConfigError, match="--resume needs --out"):
        run_experiment(_config(), resume=True)

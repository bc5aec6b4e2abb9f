"""Progress without a terminal (CI, nohup, a log file): periodic plain lines (issue 13)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import yaml

from selfdistill.cli.progress import PlainProgress, ProgressCallback, progress_callback

TINY = {
    "name": "tiny", "data": {"synthetic": {"n_bars": 800}},
    "features": {"return_windows": [1, 6], "volatility_windows": [12], "ma_windows": [12],
                 "skew_window": 12, "volume_window": 12, "range_window": 12},
    "labels": {"horizon": 4, "vol_span": 30}, "model": {"hidden": [8]},
    "training": {"epochs": 2, "batch_size": 256, "patience": 0},
    "methods": ["baseline"], "report": {"enabled": False}, "backtest": {"enabled": False},
    "evaluation": {"scheme": "walk_forward", "folds": 2},
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cells_always_get_a_line_training_at_most_every_few_seconds() -> None:
    clock, stream = Clock(), io.StringIO()
    plain = PlainProgress(every=10.0, stream=stream, clock=clock)
    plain.on_experiment_begin(4, 2)
    plain.on_fit_begin("born_again generation 1", 30)
    clock.now = 3.0
    plain.on_epoch_end("born_again generation 1", {"epoch": 2.0, "val_loss": 1.05})
    clock.now = 11.0
    plain.on_epoch_end("born_again generation 1", {"epoch": 3.0, "val_loss": 1.0})
    clock.now = 12.0
    plain.on_cell_end(1, 4, {"fold": 0, "seed": 7, "baseline_test_accuracy": 0.4123})
    lines = stream.getvalue().splitlines()
    assert lines == [
        "[    0.0 s] run: 4 cells (fold x seed) on 2 workers",
        "[   11.0 s] born_again generation 1: epoch 3/30, val loss 1.0000",
        "[   12.0 s] cells 1/4 done (fold 0 seed 7: baseline test acc 0.412)",
    ]


def test_the_plain_lines_are_chosen_when_stderr_is_no_terminal() -> None:
    progress = ProgressCallback.make_progress()
    assert isinstance(progress_callback(progress), PlainProgress)  # pytest captures stderr


def test_a_run_with_redirected_output_reports_progress_as_it_goes(tmp_path: Path) -> None:
    # was: nothing until the end
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    log = tmp_path / "run.log"
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-m", "selfdistill", "run", str(config),
                               "--out", str(tmp_path / "run")], stdout=subprocess.DEVNULL,
                              stderr=fh, timeout=300, check=False)
    text = log.read_text()
    assert done.returncode == 0, text
    assert "run: 2 cells (fold x seed) on 1 worker" in text
    assert "cells 1/2 done (fold 0 seed 0" in text
    assert "cells 2/2 done (fold 1 seed 0" in text

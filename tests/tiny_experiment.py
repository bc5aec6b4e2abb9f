"""A tiny experiment config shared by the evaluation and report tests (seconds to run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from selfdistill.config import RunConfig, parse_config

#: The smallest whole run, as a config file's mapping: one cell, one tiny baseline, no
#: backtest or report (the command-line tests write it to YAML).
TINY_RUN: dict[str, Any] = {
    "name": "tiny", "data": {"synthetic": {"n_bars": 800}},
    "features": {"return_windows": [1, 6], "volatility_windows": [12], "ma_windows": [12],
                 "skew_window": 12, "volume_window": 12, "range_window": 12},
    "labels": {"horizon": 4, "vol_span": 30}, "model": {"hidden": [8]},
    "training": {"epochs": 1, "batch_size": 256, "patience": 0},
    "methods": ["baseline"], "report": {"enabled": False}, "backtest": {"enabled": False},
}


def tiny_config(**sections: Any) -> RunConfig:
    """1000 synthetic bars, 2 walk-forward folds x 2 seeds, tiny models; ``sections`` override."""
    raw: dict[str, Any] = {
        "name": "tiny", "device": "cpu",
        "data": {"synthetic": {"n_bars": 1000, "persistence": 0.98}},
        "features": {"return_windows": [1, 6], "volatility_windows": [12],
                     "ma_windows": [12], "skew_window": 12, "volume_window": 12,
                     "range_window": 12},
        "labels": {"horizon": 4, "vol_span": 30},
        "split": {"train": 0.5, "val": 0.2, "test": 0.3},
        "model": {"hidden": [8], "dropout": 0.0},
        "training": {"epochs": 2, "batch_size": 128, "patience": 0},
        "methods": ["majority", "baseline", "born_again", "lightgbm"],
        "born_again": {"generations": 1},
        "lightgbm": {"n_estimators": 10},
        "evaluation": {"scheme": "walk_forward", "folds": 2, "seeds": 2},
        "backtest": {"uncertainty_gate": 0.8},
    }
    for name, value in sections.items():
        raw[name] = {**raw.get(name, {}), **value} if isinstance(value, dict) else value
    return parse_config(raw)


def tiny_run_dir(factory: pytest.TempPathFactory, name: str) -> Path:
    """A finished run directory of :func:`tiny_config` with majority, baseline, Born-Again
    and LightGBM (one process, one torch thread), for tests that read run files."""
    import torch

    from selfdistill.evaluation import run_experiment

    torch.set_num_threads(1)
    out = factory.mktemp(name) / "run"
    run_experiment(tiny_config(methods=["majority", "baseline", "born_again", "lightgbm"]),
                   out_dir=out, workers=1)
    return out

"""LightGBM comparison method: deterministic, validation-only early stopping, safe files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from selfdistill.config import RunConfig
from selfdistill.methods import TrainData, get_method
from selfdistill.methods.lightgbm import fit_lightgbm
from selfdistill.modelio.weights import save_model
from selfdistill.nn.booster import BoosterClassifier
from selfdistill.nn.registry import model_from_spec


def _data(n: int = 900, seed: int = 0) -> TrainData:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=gen)
    score = x[:, 0] + 0.5 * torch.randn(n, generator=gen)
    y = torch.where(score > 0.4, 0, torch.where(score < -0.4, 1, 2)).long()
    rows = torch.arange(n)
    return TrainData(x=x, y=y, train_rows=rows[:600], val_rows=rows[600:750],
                     feature_names=tuple(f"f{i}" for i in range(5)))


def _cfg(**lightgbm: object) -> RunConfig:
    return RunConfig.model_validate({"lightgbm": {"n_estimators": 60, **lightgbm}})


def test_learns_a_signal_and_is_registered() -> None:
    data = _data()
    lineage = get_method("lightgbm")(data, _cfg(), seed=0)
    assert lineage.method == "lightgbm"
    proba = lineage.members[0].predict_proba(data.x, torch.arange(750, 900))
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    accuracy = (proba.argmax(axis=1) == data.y[750:].numpy()).mean()
    assert accuracy > 0.6  # chance is ~0.33; x0 carries the label


def test_same_seed_same_trees_other_seed_other_trees() -> None:
    data = _data()
    a = fit_lightgbm(data, _cfg(), seed=1).members[0]
    b = fit_lightgbm(data, _cfg(), seed=1).members[0]
    c = fit_lightgbm(data, _cfg(), seed=2).members[0]
    pa, pb, pc = (m.predict_proba(data.x) for m in (a, b, c))
    np.testing.assert_array_equal(pa, pb)
    assert not np.array_equal(pa, pc)  # bagging / feature sampling follow the seed


def test_early_stopping_reads_validation_rows_only() -> None:
    data = _data()
    base = fit_lightgbm(data, _cfg(), seed=0).members[0]
    scrambled = TrainData(x=data.x.clone(), y=data.y.clone(), train_rows=data.train_rows,
                          val_rows=data.val_rows, feature_names=data.feature_names)
    scrambled.x[750:] = torch.randn(150, 5) * 100  # rows outside train / val
    scrambled.y[750:] = 0
    other = fit_lightgbm(scrambled, _cfg(), seed=0).members[0]
    assert base.info == other.info
    np.testing.assert_array_equal(base.predict_proba(data.x), other.predict_proba(data.x))


def test_window_inputs_use_the_last_bar() -> None:
    data = _data()
    lineage = fit_lightgbm(data, _cfg(), seed=0)
    windows = torch.stack([torch.zeros_like(data.x), data.x], dim=2)  # (N, F, 2)
    model = lineage.members[0].model
    torch.testing.assert_close(model(windows), model(data.x))


def test_state_dict_round_trip_needs_no_pickle() -> None:
    data = _data()
    model = fit_lightgbm(data, _cfg(), seed=0).members[0].model
    state = model.state_dict()
    assert set(state) == {"model_bytes"}
    assert state["model_bytes"].dtype == torch.uint8
    shell = model_from_spec(model.spec())
    assert isinstance(shell, BoosterClassifier)
    shell.load_state_dict(state)
    torch.testing.assert_close(shell(data.x), model(data.x))


def test_saved_booster_loads_in_a_fresh_process_without_importing_methods(
        tmp_path: Path) -> None:
    # load_model finds the lightgbm builder in nn.registry: no import of the methods
    data = _data()
    model = fit_lightgbm(data, _cfg(), seed=0).members[0].model
    save_model(model, tmp_path / "booster", {"method": "lightgbm"})
    x_file = tmp_path / "x.npy"
    np.save(x_file, data.x[:20].numpy())
    code = ("import sys, numpy as np, torch\n"
            "from selfdistill.modelio.weights import load_model\n"
            f"model, meta = load_model({str(tmp_path / 'booster')!r})\n"
            f"x = torch.from_numpy(np.load({str(x_file)!r}))\n"
            "np.save(sys.argv[1], model(x).detach().numpy())\n"
            "assert 'selfdistill.methods' not in sys.modules, 'the methods were imported'\n")
    out = tmp_path / "out.npy"
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(out), model(data.x[:20]).detach().numpy(), rtol=1e-6)


@pytest.mark.parametrize("stop", [0, 5])
def test_tree_count_follows_early_stopping(stop: int) -> None:
    lineage = fit_lightgbm(_data(), _cfg(early_stopping_rounds=stop, learning_rate=0.3),
                           seed=0)
    trees = lineage.info["trees"]
    assert trees == 60 if stop == 0 else trees < 60

"""Majority, hard-label and Born-Again core properties (the method contract)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from selfdistill.config import parse_config
from selfdistill.methods import TrainData, get_method
from selfdistill.methods import born_again as ba_module
from selfdistill.methods.born_again import teacher_targets


def _data(n: int = 1500, seed: int = 0) -> TrainData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, :3] + 0.7 * torch.randn(n, 3, generator=g)).argmax(1)
    return TrainData(x=x, y=y, train_rows=torch.arange(0, 1000), val_rows=torch.arange(1050, 1300))


def _cfg(**born_again: Any):
    return parse_config({"model": {"hidden": [16], "dropout": 0.0},
                         "training": {"epochs": 5, "batch_size": 100, "patience": 0, "lr": 0.01},
                         "born_again": {"generations": 2, **born_again}})


def test_majority_predicts_training_class_frequencies() -> None:
    data = _data()
    lineage = get_method("majority")(data, _cfg(), seed=0)
    p = lineage.members[0].predict_proba(data.x, torch.arange(5))
    freq = np.bincount(data.y[data.train_rows].numpy(), minlength=3) / 1000
    np.testing.assert_allclose(p[0], freq, atol=1e-4)
    assert np.allclose(p, p[0])


def test_baseline_is_born_again_generation_zero() -> None:
    data, cfg = _data(), _cfg()
    base = get_method("baseline")(data, cfg, seed=5).members[0]
    gen0 = get_method("born_again")(data, cfg, seed=5).members[0]
    np.testing.assert_array_equal(base.predict_proba(data.x), gen0.predict_proba(data.x))


def test_generations_start_from_fresh_weights_and_learn() -> None:
    data = _data()
    lineage = get_method("born_again")(data, _cfg(), seed=0)
    assert [m.keys["generation"] for m in lineage.members] == [0, 1, 2]
    firsts = [next(m.model.parameters()).detach().flatten()[:5] for m in lineage.members]
    assert not torch.equal(firsts[0], firsts[1])
    rows = torch.arange(1300, 1500)
    for m in lineage.members:
        acc = (m.predict_proba(data.x, rows).argmax(1) == data.y[rows].numpy()).mean()
        assert acc > 0.55


def test_members_are_frozen_teachers() -> None:
    lineage = get_method("born_again")(_data(), _cfg(), seed=0)
    for m in lineage.members:
        assert not m.model.training
        assert all(not p.requires_grad for p in m.model.parameters())


def test_soft_targets_computed_once_per_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = ba_module.teacher_targets

    def counting(teachers: Any, *args: Any, **kwargs: Any) -> Tensor:
        calls.append(len(teachers))
        return original(teachers, *args, **kwargs)

    monkeypatch.setattr(ba_module, "teacher_targets", counting)
    get_method("born_again")(_data(), _cfg(generations=3, teacher="mean"), seed=0)
    assert calls == [1, 2, 3]  # once per generation; "mean" averages all previous ones


def test_selection_uses_validation_nll_only() -> None:
    data = _data()
    lineage = get_method("born_again")(data, _cfg(), seed=0)
    scores = lineage.info["val_nll"]
    assert lineage.selected == int(np.argmin(scores))
    y_val = data.y[data.val_rows].numpy()
    for m, s in zip(lineage.members, scores, strict=True):
        p = m.predict_proba(data.x, data.val_rows)
        assert s == pytest.approx(-np.log(p[np.arange(len(y_val)), y_val]).mean(), rel=1e-6)


def test_temperature_and_alpha_schedules_reach_each_generation() -> None:
    lineage = get_method("born_again")(
        _data(), _cfg(generations=3, temperature=4.0, temperature_decay=0.5,
                      temperature_min=1.5, alpha=[0.2, 0.9]), seed=0)
    temps = [m.info["temperature"] for m in lineage.members[1:]]
    alphas = [m.info["alpha"] for m in lineage.members[1:]]
    assert temps == pytest.approx([4.0, 2.0, 1.5])
    assert alphas == pytest.approx([0.2, 0.9, 0.2])


def test_teacher_targets_fill_only_requested_rows() -> None:
    teacher = nn.Linear(5, 3)
    x = torch.randn(20, 5)
    rows = torch.tensor([1, 4, 7])
    q = teacher_targets([teacher], x, rows, temperature=2.0, n_rows=20)
    assert torch.all(q[rows].sum(1).sub(1).abs() < 1e-6)
    mask = torch.ones(20, dtype=torch.bool)
    mask[rows] = False
    assert torch.all(q[mask] == 0)


def test_ensemble_row_is_mean_of_generations() -> None:
    data = _data()
    lineage = get_method("born_again")(data, _cfg(), seed=0)
    (derived,) = lineage.derived
    probs = [m.predict_proba(data.x) for m in lineage.members]
    np.testing.assert_allclose(derived.combine(probs), np.mean(probs, axis=0))
    assert derived.method == "born_again_ensemble"

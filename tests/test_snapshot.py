"""Snapshot distillation: one run, one snapshot per cycle, teachers from earlier cycles only."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from selfdistill.config import RunConfig, parse_config
from selfdistill.errors import ConfigError
from selfdistill.methods import get_method
from selfdistill.methods import snapshot as snapshot_module
from selfdistill.methods.base import Member, TrainData
from selfdistill.methods.snapshot import fit_snapshot, teacher_snapshots
from selfdistill.training.schedules import cosine_restart_lr

N_TRAIN, BATCH = 600, 100


def blobs(n: int = 900, f: int = 6, seed: int = 0) -> TrainData:
    """A learnable three-class task: Gaussian clusters."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(3, f, generator=g)[y] * 1.5 + torch.randn(n, f, generator=g)
    return TrainData(x=x, y=y, train_rows=torch.arange(N_TRAIN), val_rows=torch.arange(N_TRAIN, n))


def small_cfg(**snapshot: Any) -> RunConfig:
    return parse_config({"model": {"hidden": [16], "dropout": 0.0},
                         "training": {"batch_size": BATCH, "lr": 0.01, "patience": 3},
                         "snapshot": {"cycles": 3, "epochs_per_cycle": 3, **snapshot}})


def _members(cycles: int) -> list[Member]:
    return [Member({"snapshot": c, "cycle": c}, nn.Linear(1, 1)) for c in range(1, cycles + 1)]


@pytest.mark.parametrize(("cycle", "kind", "expected"), [
    (1, "last", []), (1, "average", []),
    (2, "last", [1]), (2, "average", [1]),
    (4, "last", [3]), (4, "average", [1, 2, 3]),
    (3, "average", [1, 2]),
])
def test_teacher_of_cycle_c_comes_from_earlier_cycles(cycle: int, kind: str,
                                                     expected: list[int]) -> None:
    got = teacher_snapshots(_members(4), cycle, kind)
    assert [m.keys["cycle"] for m in got] == expected


def test_unknown_teacher_kind_is_named() -> None:
    with pytest.raises(ConfigError, match="'best' is not one of: last, average"):
        teacher_snapshots(_members(2), 2, "best")


@pytest.mark.parametrize("kind", ["last", "average"])
def test_one_snapshot_per_cycle_taught_by_earlier_snapshots(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[nn.Module]] = []
    real = snapshot_module.teacher_targets

    def spy(teachers: list[nn.Module], *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(list(teachers))
        assert not any(t.training or any(p.requires_grad for p in t.parameters())
                       for t in teachers)
        return real(teachers, *args, **kwargs)

    monkeypatch.setattr(snapshot_module, "teacher_targets", spy)
    lineage = fit_snapshot(blobs(), small_cfg(cycles=4, teacher=kind), seed=0)
    snaps = [m.model for m in lineage.members]
    assert len(lineage.members) == 4
    assert [m.keys for m in lineage.members] == [{"snapshot": c, "cycle": c} for c in (1, 2, 3, 4)]
    assert len(calls) == 3  # targets computed once per taught cycle; cycle 1 has no teacher
    for c, teachers in zip((2, 3, 4), calls, strict=True):
        expected = snaps[:c - 1] if kind == "average" else [snaps[c - 2]]
        assert [id(t) for t in teachers] == [id(t) for t in expected]
        assert lineage.members[c - 1].info["teacher_cycles"] == [
            m.keys["cycle"] for m in lineage.members[:c - 1]][-len(expected):]
    assert lineage.members[0].info["teacher_cycles"] == []


def test_snapshots_are_frozen_copies_taken_at_cycle_ends() -> None:
    data = blobs()
    lineage = fit_snapshot(data, small_cfg(), seed=0)
    weights = [next(m.model.parameters()).detach().clone() for m in lineage.members]
    assert not torch.equal(weights[0], weights[1])  # training went on after the snapshot
    assert all(not m.model.training for m in lineage.members)
    assert not any(p.requires_grad for m in lineage.members for p in m.model.parameters())
    assert all(len(m.history) == 3 for m in lineage.members)  # no early stop inside a cycle


def test_learning_rate_restarts_every_cycle() -> None:
    cfg = small_cfg(cycles=2, epochs_per_cycle=4)
    lineage = fit_snapshot(blobs(), cfg, seed=0)
    steps_per_epoch = math.ceil(N_TRAIN / BATCH)
    per_cycle = 4 * steps_per_epoch
    for c, member in enumerate(lineage.members):
        for e, record in enumerate(member.history):
            last_step = c * per_cycle + (e + 1) * steps_per_epoch - 1
            assert record["lr"] == pytest.approx(cosine_restart_lr(
                last_step, base_lr=0.01, steps_per_cycle=per_cycle))
    assert lineage.members[0].history[-1]["lr"] < 0.001  # annealed at the cycle's end


def test_lineage_contract_and_learning() -> None:
    data = blobs()
    lineage = get_method("snapshot")(data, small_cfg(teacher="average"), seed=0)
    assert lineage.method == "snapshot"
    assert lineage.disagreement
    assert lineage.selected == int(np.argmin(lineage.info["val_nll"]))
    assert lineage.info["epochs"] == 9
    assert lineage.info["cycles"] == 3
    assert lineage.info["seconds"] > 0
    (ensemble,) = lineage.derived
    assert ensemble.method == "snapshot_ensemble"
    assert ensemble.keys == {"snapshot": None, "cycle": None}
    probs = [m.predict_proba(data.x, data.val_rows) for m in lineage.members]
    np.testing.assert_allclose(ensemble.combine(probs), np.mean(probs, axis=0))
    y_val = data.y[data.val_rows].numpy()
    assert all((p.argmax(1) == y_val).mean() > 0.6 for p in probs)  # chance is 1/3


def test_same_seed_same_snapshots() -> None:
    data, cfg = blobs(), small_cfg(cycles=2, epochs_per_cycle=1)
    a, b = fit_snapshot(data, cfg, seed=4), fit_snapshot(data, cfg, seed=4)
    for ma, mb in zip(a.members, b.members, strict=True):
        np.testing.assert_array_equal(ma.predict_proba(data.x), mb.predict_proba(data.x))

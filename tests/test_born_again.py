"""Born-Again controls against saturation: teachers, target noise, alpha curriculum."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from selfdistill.config import RunConfig, parse_config
from selfdistill.errors import ConfigError
from selfdistill.methods import born_again as ba_module
from selfdistill.methods import get_method
from selfdistill.methods.base import TrainData
from selfdistill.methods.born_again import CheckpointWindow, fit_born_again, teacher_targets


def blobs(n: int = 700, f: int = 5, seed: int = 0) -> TrainData:
    """A learnable three-class task with some label noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(3, f, generator=g)[y] + torch.randn(n, f, generator=g)
    return TrainData(x=x, y=y, train_rows=torch.arange(500), val_rows=torch.arange(500, n))


def small_cfg(patience: int = 0, **born_again: Any) -> RunConfig:
    return parse_config({"model": {"hidden": [12], "dropout": 0.0},
                         "training": {"epochs": 5, "batch_size": 100, "lr": 0.02,
                                      "patience": patience},
                         "born_again": {"generations": 2, **born_again}})


def _spy_teachers(monkeypatch: pytest.MonkeyPatch) -> list[list[nn.Module]]:
    calls: list[list[nn.Module]] = []
    real = ba_module.teacher_targets

    def spy(teachers: list[nn.Module], *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(list(teachers))
        return real(teachers, *args, **kwargs)

    monkeypatch.setattr(ba_module, "teacher_targets", spy)
    return calls


def _run_window(val_losses: list[float], size: int, *, track_best: bool) -> list[float]:
    model = nn.Linear(1, 1, bias=False)
    window = CheckpointWindow(model, size, track_best=track_best)
    for epoch, loss in enumerate(val_losses):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        window.on_epoch_end("t", {"epoch": epoch + 1.0, "val_loss": loss})
    window.on_fit_end("t", [])
    return [float(s["weight"]) for s in window.states]


def test_checkpoint_window_ends_at_the_best_epoch() -> None:
    losses = [3.0, 2.0, 2.5, 1.0, 1.5, 1.6]
    assert _run_window(losses, 2, track_best=True) == [2.0, 3.0]
    assert _run_window(losses, 3, track_best=True) == [1.0, 2.0, 3.0]
    assert _run_window(losses, 2, track_best=False) == [4.0, 5.0]
    assert _run_window([float("nan")] * 4, 2, track_best=True) == [2.0, 3.0]


def test_snapshot_teacher_averages_the_previous_generations_checkpoints(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy_teachers(monkeypatch)
    data = blobs()
    lineage = fit_born_again(data, small_cfg(patience=3, teacher="snapshots",
                                             teacher_snapshots=3), seed=0)
    assert len(calls) == 2
    for k, teachers in enumerate(calls, start=1):
        assert len(teachers) == 3
        assert lineage.members[k].info["n_teachers"] == 3
        previous = lineage.members[k - 1].model
        # the window ends at the weights the previous generation kept (its best epoch)
        for a, b in zip(teachers[-1].parameters(), previous.parameters(), strict=True):
            torch.testing.assert_close(a, b)
        assert not torch.equal(next(teachers[0].parameters()), next(previous.parameters()))
        assert all(not t.training for t in teachers)
        assert not any(p.requires_grad for t in teachers for p in t.parameters())


def test_snapshot_teacher_keeps_generation_zero_equal_to_baseline() -> None:
    data, cfg = blobs(), small_cfg(patience=2, teacher="snapshots")
    base = get_method("baseline")(data, cfg, seed=1).members[0]
    gen0 = fit_born_again(data, cfg, seed=1).members[0]
    np.testing.assert_array_equal(base.predict_proba(data.x), gen0.predict_proba(data.x))


@pytest.mark.parametrize(("teacher", "expected"), [("last", [[0], [1], [2]]),
                                                    ("mean", [[0], [0, 1], [0, 1, 2]])])
def test_last_and_mean_teachers(teacher: str, expected: list[list[int]],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy_teachers(monkeypatch)
    lineage = fit_born_again(blobs(), small_cfg(teacher=teacher, generations=3), seed=0)
    models = [m.model for m in lineage.members]
    assert [[models.index(t) for t in call] for call in calls] == expected


def test_hard_label_curriculum_and_alpha_schedule_reach_each_generation() -> None:
    data = blobs()
    lineage = fit_born_again(data, small_cfg(generations=4, alpha=[0.2, 1.0]), seed=0)
    assert [m.info["alpha"] for m in lineage.members[1:]] == [0.2, 1.0, 0.2, 1.0]
    lineage = fit_born_again(data, small_cfg(generations=3, alpha=0.2, alpha_schedule="linear",
                                             alpha_final=0.8), seed=0)
    assert [m.info["alpha"] for m in lineage.members[1:]] == pytest.approx([0.2, 0.5, 0.8])


def test_temperature_schedule_reaches_each_generation() -> None:
    lineage = fit_born_again(blobs(), small_cfg(generations=3, temperature=4.0,
                                                temperature_schedule="step", temperature_step=2,
                                                temperature_decay=0.5), seed=0)
    assert [m.info["temperature"] for m in lineage.members[1:]] == [4.0, 4.0, 2.0]


def test_pure_hard_label_generation_ignores_the_teacher() -> None:
    data = blobs()
    noisy = fit_born_again(data, small_cfg(generations=1, alpha=1.0, target_noise=2.0), seed=0)
    clean = fit_born_again(data, small_cfg(generations=1, alpha=1.0, teacher="mean"), seed=0)
    np.testing.assert_allclose(noisy.members[1].predict_proba(data.x),
                               clean.members[1].predict_proba(data.x), atol=1e-6)


def test_target_noise_perturbs_but_keeps_distributions() -> None:
    torch.manual_seed(0)
    teacher = nn.Linear(5, 3).eval()
    x, rows = torch.randn(40, 5), torch.arange(10, 30)
    clean = teacher_targets([teacher], x, rows, temperature=2.0, n_rows=40)

    def noisy(seed: int) -> torch.Tensor:
        return teacher_targets([teacher], x, rows, temperature=2.0, n_rows=40, noise=0.5,
                               generator=torch.Generator().manual_seed(seed))

    a, b, c = noisy(1), noisy(1), noisy(2)
    torch.testing.assert_close(a[rows].sum(1), torch.ones(20))
    assert float(a[:10].abs().sum() + a[30:].abs().sum()) == 0.0
    torch.testing.assert_close(a, b)  # reproducible from the generation's seed
    assert not torch.allclose(a, c)
    assert float((a[rows] - clean[rows]).abs().max()) > 0.01


def test_lineage_reports_cost_for_comparison_with_snapshot() -> None:
    lineage = fit_born_again(blobs(), small_cfg(generations=2), seed=0)
    assert lineage.info["epochs"] == sum(m.info["epochs"] for m in lineage.members) == 15
    assert lineage.info["generations_run"] == 2
    assert lineage.info["seconds"] >= sum(m.info["seconds"] for m in lineage.members)
    assert all("val_nll" in m.info for m in lineage.members)
    # a distilled generation's cost includes computing and packing its teacher's targets
    assert "target_seconds" not in lineage.members[0].info
    for member in lineage.members[1:]:
        assert 0 < member.info["target_seconds"] < member.info["seconds"]


def test_config_rejects_inconsistent_controls() -> None:
    with pytest.raises(ConfigError, match="alpha_schedule must be 'constant'"):
        parse_config({"born_again": {"alpha": [0.3, 1.0], "alpha_schedule": "exponential"}})
    with pytest.raises(ConfigError, match=r"born_again\.teacher_snapshots"):
        parse_config({"born_again": {"teacher_snapshots": 1}})
    with pytest.raises(ConfigError, match=r"born_again\.teacher"):
        parse_config({"born_again": {"teacher": "best"}})

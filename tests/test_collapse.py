"""Collapse metrics on known embeddings, and the monitor's thresholds."""

from __future__ import annotations

import math

import pytest
import torch

from selfdistill.methods.ema_teacher.collapse import (
    CollapseMonitor,
    CollapseWarning,
    effective_rank,
    embedding_std,
    loss_at_uniform,
    marginal_entropy,
    teacher_entropy,
)


def _spread(b: int = 512, d: int = 16) -> torch.Tensor:
    return torch.randn(b, d, generator=torch.Generator().manual_seed(0))


def test_spread_embeddings_have_std_near_one_over_sqrt_d() -> None:
    z = _spread(d=16)
    assert embedding_std(z) == pytest.approx(1 / math.sqrt(16), rel=0.1)


def test_collapsed_embeddings_have_zero_std_and_rank_one() -> None:
    z = torch.ones(64, 8) * 3.0 + 1e-12 * _spread(64, 8)
    assert embedding_std(z) < 1e-6
    assert effective_rank(z) == pytest.approx(1.0)


def test_effective_rank_counts_directions() -> None:
    z = _spread(1024, 8)
    assert effective_rank(z) > 6.5  # isotropic: close to D = 8
    line = torch.randn(256, 1) * torch.tensor([[1.0, 2.0, -1.0, 0.5]])
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)  # one direction (two signs)
    two = torch.zeros(400, 6)
    two[:, 0] = torch.randn(400)
    two[:, 1] = torch.randn(400)
    two[:, 2] = 10.0  # keep away from the origin so normalising keeps the plane
    assert 1.5 < effective_rank(two) < 2.5


def test_entropies_of_uniform_and_one_hot_teachers() -> None:
    k = 10
    uniform = torch.full((5, k), 1 / k)
    assert teacher_entropy(uniform) == pytest.approx(math.log(k))
    one_hot = torch.zeros(5, k)
    one_hot[:, 3] = 1.0
    assert teacher_entropy(one_hot) == pytest.approx(0.0)
    assert marginal_entropy(one_hot) == pytest.approx(0.0)
    spread = torch.eye(k)  # each sample a different prototype
    assert teacher_entropy(spread) == pytest.approx(0.0)
    assert marginal_entropy(spread) == pytest.approx(math.log(k))


def test_loss_at_uniform() -> None:
    assert loss_at_uniform(math.log(64) * 1.005, 64)
    assert not loss_at_uniform(math.log(64) * 0.7, 64)


def _record(**kw: float) -> dict[str, float]:
    base = {"epoch": 3.0, "loss": 2.0, "embedding_std": 0.2, "effective_rank": 5.0,
            "teacher_entropy": 1.0, "teacher_marginal_entropy": 3.0, "loss_at_uniform": 0.0}
    return base | kw


def test_monitor_is_quiet_on_a_healthy_record(recwarn: pytest.WarningsRecorder) -> None:
    monitor = CollapseMonitor(embedding_dim=16, prototypes=64)
    assert monitor.check(_record()) == []
    assert not [w for w in recwarn.list if issubclass(w.category, CollapseWarning)]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"embedding_std": 0.001}, "embedding_std"),
        ({"effective_rank": 1.05}, "effective_rank"),
        ({"teacher_entropy": math.log(64) * 0.999}, "uniform teacher"),
        ({"teacher_marginal_entropy": 0.1}, "prototypes"),
        ({"loss_at_uniform": 1.0}, "ln K"),
    ],
)
def test_monitor_warns_on_each_signal(change: dict[str, float], needle: str,
                                      caplog: pytest.LogCaptureFixture) -> None:
    monitor = CollapseMonitor(embedding_dim=16, prototypes=64)
    with pytest.warns(CollapseWarning, match=needle):
        found = monitor.check(_record(**change))
    assert len(found) == 1
    assert needle in caplog.text


def test_byol_form_ignores_teacher_metrics() -> None:
    monitor = CollapseMonitor(embedding_dim=16, prototypes=None)
    rec = _record(teacher_entropy=math.nan, teacher_marginal_entropy=math.nan,
                  loss_at_uniform=math.nan)
    assert monitor.problems(rec) == []

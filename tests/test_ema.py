"""The EMA teacher update: formula, frozen teacher, buffer policy, warm-up schedule."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from selfdistill.training.ema import linear_warmup, make_teacher, update_ema
from selfdistill.training.schedules import cosine_tau


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def test_update_follows_the_formula_for_every_parameter() -> None:
    student = _net()
    teacher = make_teacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    before = {k: v.clone() for k, v in teacher.named_parameters()}
    update_ema(teacher, student, 0.9)
    for name, p_s in student.named_parameters():
        expected = 0.9 * before[name] + 0.1 * p_s
        assert torch.allclose(dict(teacher.named_parameters())[name], expected, atol=1e-6)


@pytest.mark.parametrize(("tau", "expect_teacher"), [(1.0, True), (0.0, False)])
def test_tau_limits_keep_or_copy(tau: float, expect_teacher: bool) -> None:
    student = _net()
    teacher = make_teacher(student)
    old = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.mul_(3.0).add_(1.0)
    update_ema(teacher, student, tau)
    for t, s, o in zip(teacher.parameters(), student.parameters(), old, strict=True):
        assert torch.equal(t, o if expect_teacher else s)


def test_teacher_is_frozen_and_in_eval_mode() -> None:
    student = _net()
    teacher = make_teacher(student)
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    assert all(t.data_ptr() != s.data_ptr()
               for t, s in zip(teacher.parameters(), student.parameters(), strict=True))


def test_update_builds_no_graph() -> None:
    student = _net()
    teacher = make_teacher(student)
    update_ema(teacher, student, 0.5)
    assert all(p.grad_fn is None and not p.requires_grad for p in teacher.parameters())


def _bn_after_training(student: nn.Module) -> None:
    student.train()
    for _ in range(5):
        student(torch.randn(32, 4) * 3 + 2)


def test_buffer_policy_ema_averages_float_buffers_and_copies_counts() -> None:
    student = _net()
    teacher = make_teacher(student)
    _bn_after_training(student)
    bn_t, bn_s = teacher[1], student[1]
    old_mean = bn_t.running_mean.clone()
    update_ema(teacher, student, 0.75, buffers="ema")
    assert torch.allclose(bn_t.running_mean, 0.75 * old_mean + 0.25 * bn_s.running_mean)
    assert int(bn_t.num_batches_tracked) == int(bn_s.num_batches_tracked) == 5


def test_buffer_policy_copy_copies_every_buffer() -> None:
    student = _net()
    teacher = make_teacher(student)
    _bn_after_training(student)
    update_ema(teacher, student, 0.75, buffers="copy")
    for (_, bt), (_, bs) in zip(teacher.named_buffers(), student.named_buffers(), strict=True):
        assert torch.equal(bt, bs)


def test_bad_arguments_name_the_problem() -> None:
    student = _net()
    teacher = make_teacher(student)
    with pytest.raises(ValueError, match="tau"):
        update_ema(teacher, student, 1.5)
    with pytest.raises(ValueError, match="ema, copy"):
        update_ema(teacher, student, 0.9, buffers="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ"):
        update_ema(nn.Linear(4, 3), student, 0.9)


def test_tau_schedule_runs_from_base_to_one() -> None:
    taus = [cosine_tau(s, total_steps=100, tau_base=0.996) for s in range(101)]
    assert taus[0] == pytest.approx(0.996)
    assert taus[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in itertools.pairwise(taus))


def test_linear_warmup_of_teacher_temperature() -> None:
    assert linear_warmup(0, start=0.04, end=0.07, warmup_steps=10) == pytest.approx(0.04)
    assert linear_warmup(5, start=0.04, end=0.07, warmup_steps=10) == pytest.approx(0.055)
    assert linear_warmup(50, start=0.04, end=0.07, warmup_steps=10) == pytest.approx(0.07)
    assert linear_warmup(0, start=0.04, end=0.07, warmup_steps=0) == pytest.approx(0.07)

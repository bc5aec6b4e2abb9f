"""Distillation losses against an independent NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfdistill.losses import (
    DistillationTargets,
    distillation_loss,
    fused_distillation_loss,
    kd_kl,
    soft_targets,
)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _reference(s: np.ndarray, y: np.ndarray, t: np.ndarray, alpha: float, temp: float) -> float:
    p1 = _softmax(s)
    ce = -np.log(p1[np.arange(len(y)), y]).mean()
    ps, pt = _softmax(s / temp), _softmax(t / temp)
    kl = (pt * (np.log(pt) - np.log(ps))).sum(axis=1).mean()
    return float(alpha * ce + (1 - alpha) * temp**2 * kl)


CASES = [(a, t) for a in (0.0, 0.3, 0.7, 1.0) for t in (0.5, 1.0, 2.0, 4.0)]


@pytest.mark.parametrize(("alpha", "temp"), CASES)
def test_value_matches_numpy_reference(alpha: float, temp: float) -> None:
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(32, 3)) * 2, rng.normal(size=(32, 3)) * 2
    y = rng.integers(0, 3, size=32)
    got = distillation_loss(torch.tensor(s), torch.tensor(y), torch.tensor(t), alpha=alpha,
                            temperature=temp)
    assert float(got) == pytest.approx(_reference(s, y, t, alpha, temp), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(("alpha", "temp"), CASES)
def test_fused_matches_reference_value_and_gradient(alpha: float, temp: float) -> None:
    torch.manual_seed(0)
    s = torch.randn(64, 3, requires_grad=True)
    t, y = torch.randn(64, 3), torch.randint(0, 3, (64,))
    ref = distillation_loss(s, y, t, alpha=alpha, temperature=temp)
    (g_ref,) = torch.autograd.grad(ref, s)
    fused = fused_distillation_loss(s, y, soft_targets(t, temperature=temp), alpha=alpha,
                                    temperature=temp)
    (g_fused,) = torch.autograd.grad(fused, s)
    assert float(fused.detach()) == pytest.approx(float(ref.detach()), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-5, atol=1e-7)


def test_kl_is_zero_for_equal_logits() -> None:
    z = torch.randn(16, 3)
    assert float(kd_kl(z, z.clone(), temperature=3.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("temp", [1.0, 2.0, 5.0])
def test_soft_term_gradient_is_t_times_probability_gap(temp: float) -> None:
    torch.manual_seed(2)
    s = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    t = torch.randn(8, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad(kd_kl(s, t, temperature=temp), s)
    expected = temp * (torch.softmax(s / temp, 1) - torch.softmax(t / temp, 1)) / s.shape[0]
    torch.testing.assert_close(grad.double(), expected.detach(), rtol=1e-4, atol=1e-6)


def test_direction_is_teacher_to_student_not_reverse() -> None:
    # KL(p_t || p_s) and KL(p_s || p_t) differ for asymmetric distributions.
    s = torch.tensor([[2.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 1.0, 0.5]])
    ps, pt = torch.softmax(s, 1), torch.softmax(t, 1)
    forward = float((pt * (pt.log() - ps.log())).sum())
    reverse = float((ps * (ps.log() - pt.log())).sum())
    assert forward != pytest.approx(reverse, rel=1e-3)
    assert float(kd_kl(s, t, temperature=1.0)) == pytest.approx(forward, rel=1e-5)


def test_teacher_receives_no_gradient() -> None:
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    distillation_loss(s, torch.zeros(4, dtype=torch.long), t, alpha=0.5,
                      temperature=2.0).backward()
    assert t.grad is None
    assert s.grad is not None


def test_batchmean_not_mean() -> None:
    # "mean" would divide by B * C; batchmean divides by B only.
    s, t = torch.randn(10, 3), torch.randn(10, 3)
    kl_sum = F.kl_div(F.log_softmax(s, 1), F.softmax(t, 1), reduction="sum")
    assert float(kd_kl(s, t, temperature=1.0)) == pytest.approx(float(kl_sum) / 10, rel=1e-5)


@pytest.mark.parametrize(("alpha", "temp"), [(-0.1, 1.0), (1.5, 1.0), (0.5, 0.0), (0.5, -2.0)])
def test_invalid_arguments_rejected(alpha: float, temp: float) -> None:
    s, y = torch.randn(2, 3), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"alpha|temperature"):
        distillation_loss(s, y, s, alpha=alpha, temperature=temp)


@pytest.mark.parametrize(("alpha", "temp"), CASES)
def test_packed_targets_match_numpy_reference_on_gathered_rows(alpha: float,
                                                                temp: float) -> None:
    # packed once for all rows, then a batch gathered by row index, as in training
    rng = np.random.default_rng(3)
    s_all, t_all = rng.normal(size=(50, 3)) * 2, rng.normal(size=(50, 3)) * 2
    y_all = rng.integers(0, 3, size=50)
    packed = DistillationTargets.build(torch.tensor(y_all),
                                       soft_targets(torch.tensor(t_all), temperature=temp),
                                       alpha=alpha, temperature=temp)
    rows = np.array([7, 3, 41, 3, 19, 0, 49])
    s = torch.tensor(s_all[rows], dtype=torch.float32, requires_grad=True)
    got = packed.loss(s, torch.tensor(rows))
    assert float(got.detach()) == pytest.approx(
        _reference(s_all[rows], y_all[rows], t_all[rows], alpha, temp), rel=1e-5, abs=1e-6)
    (grad,) = torch.autograd.grad(got, s)
    p1, pt = _softmax(s_all[rows]), _softmax(t_all[rows] / temp)
    ps = _softmax(s_all[rows] / temp)
    onehot = np.eye(3)[y_all[rows]]
    expected = (alpha * (p1 - onehot) + (1 - alpha) * temp * (ps - pt)) / len(rows)
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_packed_targets_rows_without_teacher_are_hard_label_ce() -> None:
    # rows the teacher never saw (all-zero probabilities) carry only the hard term
    y = torch.tensor([0, 2, 1, 1])
    q = torch.zeros(4, 3)
    s = torch.randn(4, 3)
    packed = DistillationTargets.build(y, q, alpha=0.25, temperature=2.0)
    assert float(packed.loss(s)) == pytest.approx(0.25 * float(F.cross_entropy(s, y)), rel=1e-6)


def test_packed_targets_accept_half_precision_logits() -> None:
    y, t = torch.randint(0, 3, (16,)), torch.randn(16, 3)
    s = torch.randn(16, 3)
    packed = DistillationTargets.build(y, soft_targets(t, temperature=2.0), alpha=0.5,
                                       temperature=2.0)
    ref = distillation_loss(s, y, t, alpha=0.5, temperature=2.0)
    got = packed.loss(s.to(torch.bfloat16))
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(ref), rel=2e-2)


@pytest.mark.parametrize(("y", "q", "match"), [
    (torch.tensor([0, 3]), torch.full((2, 3), 1 / 3), r"class indices in \[0, 3\)"),
    (torch.tensor([0, -1]), torch.full((2, 3), 1 / 3), r"class indices"),
    (torch.tensor([0, 1, 2]), torch.full((2, 3), 1 / 3), r"must be \(N,\) and \(N, C\)"),
    (torch.tensor([0, 0]), torch.ones(2, 1), r"at least 2 classes"),
])
def test_packed_targets_reject_bad_input(y: torch.Tensor, q: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DistillationTargets.build(y, q, alpha=0.5, temperature=2.0)

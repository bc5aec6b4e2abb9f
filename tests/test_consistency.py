"""Consistency losses against straightforward reference implementations."""

from __future__ import annotations

import math

import pytest
import torch

from selfdistill.losses.consistency import (
    DINOLoss,
    byol_loss,
    consistency,
    cosine_distance,
    dino_loss,
    kl_consistency,
    l2_normalised,
    uniform_loss,
)


def _pair(b: int = 8, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)


def _ref_cos(s: torch.Tensor, t: torch.Tensor) -> list[float]:
    out = []
    for sb, tb in zip(s.tolist(), t.tolist(), strict=True):
        dot = sum(a * b for a, b in zip(sb, tb, strict=True))
        ns = math.sqrt(sum(a * a for a in sb))
        nt = math.sqrt(sum(b * b for b in tb))
        out.append(dot / (ns * nt))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("d", [2, 16])
def test_l2_and_cosine_match_reference(seed: int, d: int) -> None:
    s, t = _pair(d=d, seed=seed)
    cos = _ref_cos(s, t)
    assert float(l2_normalised(s, t)) == pytest.approx(sum(2 - 2 * c for c in cos) / len(cos),
                                                       rel=1e-5)
    assert float(cosine_distance(s, t)) == pytest.approx(sum(1 - c for c in cos) / len(cos),
                                                         rel=1e-5)


@pytest.mark.parametrize(("ts", "tt"), [(0.1, 0.04), (1.0, 1.0), (2.0, 0.5)])
def test_kl_matches_reference(ts: float, tt: float) -> None:
    s, t = _pair(b=6, d=4, seed=3)
    expected = 0.0
    for sb, tb in zip(s, t, strict=True):
        p = torch.softmax(sb.double() / ts, 0)
        q = torch.softmax(tb.double() / tt, 0)
        expected += float((q * (q.log() - p.log())).sum())
    got = kl_consistency(s, t, student_temperature=ts, teacher_temperature=tt)
    assert float(got) == pytest.approx(expected / 6, rel=1e-4, abs=1e-6)


def test_identical_outputs_give_zero_and_scale_does_not_matter() -> None:
    s, _ = _pair()
    assert float(l2_normalised(s, 3.0 * s)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_distance(s, s)) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_consistency(s, s, student_temperature=1.0,
                                teacher_temperature=1.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("divergence", ["l2", "kl", "cosine"])
def test_teacher_side_gets_no_gradient(divergence: str) -> None:
    s, t = _pair()
    s.requires_grad_(True)
    t.requires_grad_(True)
    consistency(s, t, divergence=divergence).backward()
    assert s.grad is not None
    assert float(s.grad.abs().sum()) > 0
    assert t.grad is None


def test_unknown_divergence_lists_valid_ones() -> None:
    s, t = _pair()
    with pytest.raises(ValueError, match="l2, kl, cosine"):
        consistency(s, t, divergence="mse")


def test_byol_loss_is_symmetric_sum_over_view_orders() -> None:
    p1, p2 = _pair(seed=4)
    z1, z2 = _pair(seed=5)
    got = byol_loss([p1, p2], [z1, z2], divergence="l2")
    assert float(got) == pytest.approx(float(l2_normalised(p1, z2) + l2_normalised(p2, z1)))
    swapped = byol_loss([p2, p1], [z2, z1], divergence="l2")
    assert float(got) == pytest.approx(float(swapped))


def _ref_dino(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
              ts: float, tt: float) -> float:
    # the loop of facebookresearch/dino's DINOLoss.forward, in float64
    total, n = 0.0, 0
    for iq, q in enumerate(teacher):
        q = torch.softmax((q.double() - center.double()) / tt, dim=-1)
        for v, s in enumerate(student):
            if v == iq:
                continue
            total += float(torch.sum(-q * torch.log_softmax(s.double() / ts, dim=-1), -1).mean())
            n += 1
    return total / n


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("centred", [False, True])
def test_dino_loss_matches_reference(seed: int, centred: bool) -> None:
    s1, s2 = _pair(b=10, d=7, seed=seed)
    t1, t2 = _pair(b=10, d=7, seed=seed + 10)
    center = torch.randn(1, 7) if centred else torch.zeros(1, 7)
    got = dino_loss([s1, s2], [t1, t2], center, student_temperature=0.1, teacher_temperature=0.04)
    assert float(got) == pytest.approx(_ref_dino([s1, s2], [t1, t2], center, 0.1, 0.04), rel=1e-5)


def test_dino_loss_is_ln_k_for_uniform_outputs() -> None:
    k = 16
    z = torch.zeros(4, k)
    got = dino_loss([z, z], [z, z], torch.zeros(1, k))
    assert float(got) == pytest.approx(uniform_loss(k)) == pytest.approx(math.log(k))


def test_dino_center_moves_with_momentum_under_no_grad() -> None:
    loss_fn = DINOLoss(3, center_momentum=0.9)
    t1 = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], requires_grad=True)
    t2 = torch.tensor([[0.0, 0.0, 6.0], [0.0, 0.0, 6.0]])
    s = torch.randn(2, 3, requires_grad=True)
    loss_fn([s, s], [t1, t2], student_temperature=0.1, teacher_temperature=0.04).backward()
    mean = torch.cat([t1.detach(), t2]).mean(0, keepdim=True)
    assert torch.allclose(loss_fn.center, 0.1 * mean)
    assert not loss_fn.center.requires_grad
    assert t1.grad is None  # teacher detached
    assert "center" in loss_fn.state_dict()


def test_dino_without_centering_keeps_center_at_zero() -> None:
    loss_fn = DINOLoss(3, centering=False)
    t = torch.ones(2, 3)
    loss_fn([t, t], [t, t], student_temperature=0.1, teacher_temperature=0.04)
    assert torch.equal(loss_fn.center, torch.zeros(1, 3))


def test_views_must_pair_up() -> None:
    s, t = _pair()
    with pytest.raises(ValueError, match="views"):
        dino_loss([s], [t], torch.zeros(1, 5))
    with pytest.raises(ValueError, match="temperatures"):
        kl_consistency(s, t, student_temperature=0.0, teacher_temperature=1.0)

"""The BYOT loss against a NumPy reference, and where its gradients go."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfdistill.losses import ByotTerms, byot_loss, byot_terms
from selfdistill.nn.multi_exit import MultiExitMLP

B, C, H = 6, 3, 4


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _reference(logits: list[np.ndarray], y: np.ndarray, hints: list[np.ndarray], t: float,
               w: tuple[float, float, float]) -> float:
    """Zhang et al. (2019), written out independently in NumPy."""
    ce = sum(-np.log(_softmax(z)[np.arange(len(y)), y]).mean() for z in logits)
    q = _softmax(logits[-1] / t)
    kd = sum(t**2 * (q * (np.log(q) - np.log(_softmax(z / t)))).sum(axis=1).mean()
             for z in logits[:-1])
    hint = sum(((h - hints[-1]) ** 2).mean() for h in hints[:-1])
    return w[0] * ce + w[1] * kd + w[2] * hint


def _inputs(depth: int, seed: int) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    logits = [torch.randn(B, C, generator=g, dtype=torch.float64) * 2 for _ in range(depth)]
    hints = [torch.randn(B, H, generator=g, dtype=torch.float64) for _ in range(depth)]
    return logits, torch.randint(0, C, (B,), generator=g), hints


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
@pytest.mark.parametrize("weights", [(0.7, 0.3, 0.03), (1.0, 0.0, 0.0), (0.2, 1.5, 1.0)])
def test_value_matches_reference(depth: int, temperature: float,
                                 weights: tuple[float, float, float]) -> None:
    logits, y, hints = _inputs(depth, seed=depth * 10 + int(temperature))
    got = byot_loss(logits, y, hints, temperature=temperature, ce_weight=weights[0],
                    kd_weight=weights[1], hint_weight=weights[2])
    expected = _reference([z.numpy() for z in logits], y.numpy(), [h.numpy() for h in hints],
                          temperature, weights)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_kd_gradient_reaches_shallow_exits_only() -> None:
    logits, y, _ = _inputs(3, seed=1)
    logits = [z.clone().requires_grad_(True) for z in logits]
    t = 3.0
    byot_terms(logits, y, temperature=t).kd.backward()
    assert logits[-1].grad is None  # the deepest exit is detached: it teaches, never learns
    q = torch.softmax(logits[-1].detach() / t, dim=-1)
    for z in logits[:-1]:
        assert z.grad is not None
        expected = t * (torch.softmax(z.detach() / t, dim=-1) - q) / B  # T * (p_s - p_t) / B
        torch.testing.assert_close(z.grad.double(), expected, rtol=1e-5, atol=1e-7)


def test_hint_gradient_reaches_shallow_features_only() -> None:
    logits, y, hints = _inputs(3, seed=2)
    hints = [h.clone().requires_grad_(True) for h in hints]
    byot_terms(logits, y, hints).hint.backward()
    assert hints[-1].grad is None
    for h in hints[:-1]:
        assert h.grad is not None
        expected = 2 * (h.detach() - hints[-1].detach()) / (B * H)
        torch.testing.assert_close(h.grad.double(), expected)


def test_kd_on_a_network_leaves_the_deepest_exit_alone() -> None:
    torch.manual_seed(0)
    net = MultiExitMLP(5, C, hidden=(8, 8, 8), bottleneck=4)
    out = net(torch.randn(16, 5))
    loss = byot_loss(out.logits, torch.randint(0, C, (16,)), net.hint_features(out.features),
                     ce_weight=0.0, kd_weight=1.0, hint_weight=1.0)
    loss.backward()
    # only the deepest exit uses the last block and the last classifier (CE weighted 0)
    for p in [*net.blocks[-1].parameters(), *net.classifiers[-1].parameters()]:
        assert p.grad is None or not p.grad.any()
    for p in [*net.classifiers[0].parameters(), *net.bottlenecks[1].parameters(),
              *net.adapters[0].parameters(), *net.blocks[0].parameters()]:
        assert p.grad is not None
        assert p.grad.abs().sum() > 0


def test_terms_are_zero_for_a_single_exit_and_equal_logits() -> None:
    logits, y, hints = _inputs(1, seed=3)
    terms = byot_terms(logits, y, hints)
    assert isinstance(terms, ByotTerms)
    assert float(terms.kd) == 0.0
    assert float(terms.hint) == 0.0
    same = [logits[0], logits[0].clone()]
    assert float(byot_terms(same, y, [hints[0], hints[0]]).kd) == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_are_named() -> None:
    logits, y, hints = _inputs(2, seed=4)
    with pytest.raises(ValueError, match="adapter"):
        byot_terms(logits, y, [hints[0][:, :2], hints[1]])
    with pytest.raises(ValueError, match="2 exits' logits but 1 hint"):
        byot_terms(logits, y, hints[:1])
    with pytest.raises(ValueError, match="kd_weight must be >= 0"):
        byot_loss(logits, y, kd_weight=-0.1)
    with pytest.raises(ValueError, match="at least one exit"):
        byot_terms([], y)
    with pytest.raises(ValueError, match="temperature"):
        byot_terms(logits, y, temperature=0.0)

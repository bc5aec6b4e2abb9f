"""Masked, contrastive and clustering losses against reference implementations.

Each reference is written the slow, obvious way (Python loops, float64, the papers'
formulas or the original code's steps) and compared on small random tensors for the
value and for the gradient.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfdistill.losses.clustering import cluster_usage, sinkhorn_knopp, swapped_prediction
from selfdistill.losses.contrastive import KeyQueue, info_nce, moco_loss, uniform_info_nce
from selfdistill.losses.masked import masked_prediction_loss, normalised_targets


def _grad(fn, x: torch.Tensor) -> tuple[float, torch.Tensor]:  # type: ignore[no-untyped-def]
    x = x.detach().clone().requires_grad_(True)
    value = fn(x)
    value.backward()
    assert x.grad is not None
    return float(value.detach()), x.grad.detach().double()


# ------------------------------------------------------------------ masked (data2vec)


def _masked_reference(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      kind: str) -> torch.Tensor:
    total = pred.new_zeros((), dtype=torch.float64)
    b, d, w = pred.shape
    for i in range(b):
        terms = []
        for t in range(w):
            if mask[i, t]:
                diff = pred[i, :, t].double() - target[i, :, t].double()
                if kind == "l2":
                    terms.append(sum(diff[j] ** 2 for j in range(d)) / d)
                else:  # Huber with beta = 1
                    terms.append(sum(0.5 * diff[j] ** 2 if abs(diff[j]) < 1 else abs(diff[j]) - 0.5
                                     for j in range(d)) / d)
        if terms:
            total = total + sum(terms) / len(terms)
    return total / b


@pytest.mark.parametrize("kind", ["l2", "smooth_l1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_loss_matches_the_reference_in_value_and_gradient(kind: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    pred, target = torch.randn(4, 3, 6, generator=g) * 2, torch.randn(4, 3, 6, generator=g)
    mask = torch.rand(4, 6, generator=g) < 0.4
    mask[0] = False  # a window with nothing masked adds 0
    got, got_grad = _grad(lambda p: masked_prediction_loss(p, target, mask, kind=kind), pred)
    ref, ref_grad = _grad(lambda p: _masked_reference(p, target, mask, kind), pred.double())
    assert got == pytest.approx(ref, rel=1e-5)
    torch.testing.assert_close(got_grad, ref_grad, rtol=1e-5, atol=1e-7)
    assert torch.all(got_grad[~mask[:, None, :].expand_as(pred)] == 0)  # unmasked bars: no signal


def test_masked_loss_of_micro_batches_adds_up_to_the_batch_loss() -> None:
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(8, 4, 5, generator=g), torch.randn(8, 4, 5, generator=g)
    mask = torch.rand(8, 5, generator=g) < 0.5
    whole = masked_prediction_loss(pred, target, mask)
    parts = sum(masked_prediction_loss(pred[s], target[s], mask[s]) * 4 / 8
                for s in (slice(0, 4), slice(4, 8)))
    assert float(whole) == pytest.approx(float(parts), rel=1e-6)


def test_normalised_targets_are_layer_normalised_and_detached() -> None:
    h = (torch.randn(2, 5, 7) * 3 + 1).requires_grad_(True)
    t = normalised_targets(h)
    assert not t.requires_grad
    torch.testing.assert_close(t.mean(dim=1), torch.zeros(2, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(t.var(dim=1, unbiased=False), torch.ones(2, 7), atol=1e-3, rtol=0)


def test_masked_loss_refuses_bad_shapes_and_kinds() -> None:
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="mask"):
        masked_prediction_loss(x, x, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="l2, smooth_l1"):
        masked_prediction_loss(x, x, torch.zeros(2, 4, dtype=torch.bool), kind="l1")


# ------------------------------------------------------------------ contrastive (MoCo)


def _info_nce_reference(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor,
                        temperature: float) -> torch.Tensor:
    total = q.new_zeros((), dtype=torch.float64)
    negatives = [n / n.norm() for n in queue.double()]
    for i in range(len(q)):
        qi, ki = q[i].double() / q[i].double().norm(), k[i].double() / k[i].double().norm()
        pos = torch.exp(qi @ ki / temperature)
        neg = sum(torch.exp(qi @ n / temperature) for n in negatives)
        total = total - torch.log(pos / (pos + neg))
    return total / len(q)


@pytest.mark.parametrize(("temperature", "seed"), [(0.1, 0), (0.2, 1), (1.0, 2)])
def test_info_nce_matches_the_reference_in_value_and_gradient(temperature: float,
                                                              seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    q, k, queue = (torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g),
                   torch.randn(7, 4, generator=g))
    got, got_grad = _grad(lambda x: info_nce(x, k, queue, temperature=temperature), q)
    ref, ref_grad = _grad(lambda x: _info_nce_reference(x, k, queue, temperature), q.double())
    assert got == pytest.approx(ref, rel=1e-5)
    torch.testing.assert_close(got_grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_moco_loss_averages_both_directions_and_keys_get_no_gradient() -> None:
    g = torch.Generator().manual_seed(4)
    q1, q2, k1, k2 = (torch.randn(3, 4, generator=g) for _ in range(4))
    queue = torch.randn(6, 4, generator=g)
    q1.requires_grad_(True)
    k1.requires_grad_(True)
    loss = moco_loss([q1, q2], [k1, k2], queue, temperature=0.2)
    expected = (info_nce(q1, k2, queue, temperature=0.2)
                + info_nce(q2, k1, queue, temperature=0.2)) / 2
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    loss.backward()
    assert k1.grad is None  # the teacher's keys are detached
    assert q1.grad is not None


def test_collapsed_queries_give_ln_one_plus_k() -> None:
    same = torch.ones(4, 3)
    loss = info_nce(same, same, torch.ones(9, 3), temperature=0.2)
    assert float(loss) == pytest.approx(uniform_info_nce(9), rel=1e-6)


def test_key_queue_is_first_in_first_out() -> None:
    torch.manual_seed(0)
    queue = KeyQueue(5, 2)
    torch.testing.assert_close(queue.keys.norm(dim=1), torch.ones(5))
    first = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    queue.push(first)
    queue.push(torch.tensor([[0.0, -1.0], [-1.0, 0.0], [0.0, 5.0]]))
    assert int(queue.pointer) == 1  # 6 keys into 5 slots: wrapped once
    expected = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])
    torch.testing.assert_close(queue.keys, expected)  # slot 0 overwritten by the newest key


# ------------------------------------------------------------------ clustering (SwAV)


def _swav_sinkhorn(scores: np.ndarray, epsilon: float, iterations: int) -> np.ndarray:
    """The steps of SwAV's ``distributed_sinkhorn`` on one process, in NumPy."""
    q = np.exp(scores / epsilon).T  # (K, B)
    b, k = q.shape[1], q.shape[0]
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    q *= b
    return q.T


@pytest.mark.parametrize(("epsilon", "iterations", "seed"), [(0.05, 3, 0), (0.1, 1, 1),
                                                             (0.5, 10, 2)])
def test_sinkhorn_matches_swav_and_balances_the_prototypes(epsilon: float, iterations: int,
                                                           seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(12, 4, generator=g) * 2 - 1
    scores[:, 0] += 0.5  # one prototype favoured by every sample
    codes = sinkhorn_knopp(scores, epsilon=epsilon, iterations=iterations)
    ref = _swav_sinkhorn(scores.double().numpy(), epsilon, iterations)
    np.testing.assert_allclose(codes.numpy(), ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(12), rtol=1e-5, atol=1e-5)
    if iterations >= 10:  # converged: every prototype takes B / K of the batch
        torch.testing.assert_close(codes.sum(dim=0), torch.full((4,), 3.0), rtol=1e-3, atol=1e-3)
    assert float(codes[:, 0].sum()) < float(torch.softmax(scores / epsilon, 1)[:, 0].sum())


def test_sinkhorn_is_stable_for_sharp_scores() -> None:
    codes = sinkhorn_knopp(torch.tensor([[1.0, -1.0], [0.9, -1.0]]), epsilon=0.001)
    assert torch.isfinite(codes).all()


def _swapped_reference(s: list[torch.Tensor], q: list[torch.Tensor],
                       temperature: float) -> torch.Tensor:
    total, pairs = s[0].new_zeros((), dtype=torch.float64), 0
    for a in range(len(s)):
        for b in range(len(q)):
            if a != b:
                for i in range(len(s[a])):
                    logits = s[a][i].double() / temperature
                    log_p = logits - torch.log(torch.exp(logits).sum())
                    total = total - (q[b][i].double() * log_p).sum() / len(s[a])
                pairs += 1
    return total / pairs


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_swapped_prediction_matches_the_reference_and_its_gradient(temperature: float) -> None:
    g = torch.Generator().manual_seed(5)
    s2 = torch.randn(6, 4, generator=g)
    codes = [sinkhorn_knopp(torch.randn(6, 4, generator=g)) for _ in range(2)]
    s1 = torch.randn(6, 4, generator=g)
    got, got_grad = _grad(lambda x: swapped_prediction([x, s2], codes, temperature=temperature),
                          s1)
    ref, ref_grad = _grad(lambda x: _swapped_reference([x, s2.double()], codes, temperature),
                          s1.double())
    assert got == pytest.approx(ref, rel=1e-5)
    torch.testing.assert_close(got_grad, ref_grad, rtol=1e-4, atol=1e-7)
    # and the textbook form: d/ds_1 = (softmax(s_1 / T) - q_2) / (T * B * pairs)
    analytic = (torch.softmax(s1.double() / temperature, 1) - codes[1].double()) / (
        temperature * 6 * 2)
    torch.testing.assert_close(got_grad, analytic, rtol=1e-4, atol=1e-7)


def test_cluster_usage_counts_prototypes_in_use() -> None:
    assert cluster_usage(torch.eye(4).repeat(3, 1)) == pytest.approx(4.0)
    one = torch.zeros(10, 4)
    one[:, 2] = 1.0
    assert cluster_usage(one) == pytest.approx(1.0)
    assert math.isclose(cluster_usage(torch.eye(2).repeat(5, 1)), 2.0)

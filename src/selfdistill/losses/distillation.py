"""Knowledge-distillation losses (Hinton et al., 2015; Furlanello et al., 2018).

Our convention: ``alpha`` weights the hard labels,

    loss = alpha * CE(y, z_s) + (1 - alpha) * T^2 * KL(p_t^T || p_s^T)

with KL averaged over the batch (``reduction="batchmean"``) and the teacher
detached. The T^2 factor makes the soft term's gradient with respect to the
student logits ``T * (p_s^T - p_t^T) / B``, comparable with CE across temperatures.

References:
    Hinton, Vinyals, Dean. Distilling the Knowledge in a Neural Network. 2015.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FusedDistillation",
    "distillation_loss",
    "fused_distillation_loss",
    "kd_kl",
    "soft_targets",
]


def _check(temperature: float, alpha: float | None = None) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def kd_kl(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch.

    Args:
        student_logits: (B, C) or (B, T, C) logits; flattened to (N, C).
        teacher_logits: same shape; detached here.
        temperature: T > 0.

    Returns:
        Scalar tensor.
    """
    _check(temperature)
    c = student_logits.shape[-1]
    s = student_logits.reshape(-1, c).float() / temperature
    t = teacher_logits.detach().reshape(-1, c).float() / temperature
    # F.kl_div(input, target) = KL(target || exp(input)): input = student log-probs.
    kl = F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), reduction="batchmean",
                  log_target=True)
    return kl * temperature**2


def distillation_loss(student_logits: Tensor, targets: Tensor, teacher_logits: Tensor, *,
                      alpha: float, temperature: float) -> Tensor:
    """``alpha * CE(targets, student) + (1 - alpha) * kd_kl(student, teacher)``.

    Args:
        student_logits: (B, C) logits.
        targets: (B,) int64 hard labels; CE uses logits at T = 1.
        teacher_logits: (B, C) logits, detached.
        alpha: weight of the hard-label term in [0, 1].
        temperature: T > 0 for the soft term.
    """
    _check(temperature, alpha)
    hard = F.cross_entropy(student_logits.float(), targets)
    if alpha >= 1.0:
        return hard
    soft = kd_kl(student_logits, teacher_logits, temperature=temperature)
    return alpha * hard + (1.0 - alpha) * soft


def soft_targets(teacher_logits: Tensor, *, temperature: float) -> Tensor:
    """Teacher probabilities at temperature T, (N, C) float32, detached (cache them)."""
    _check(temperature)
    return torch.softmax(teacher_logits.detach().float() / temperature, dim=-1)


@functools.lru_cache(maxsize=64)
def _constant(rows: int, value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A cached, never-mutated (rows, 1) tensor of ``value`` (saves an op per step)."""
    return torch.full((rows, 1), value, dtype=dtype, device=device)


class FusedDistillation(torch.autograd.Function):
    """CE + T^2 KL in one softmax pass with the analytic gradient.

    Forward computes the same value as :func:`distillation_loss` given cached
    teacher probabilities ``q`` at T, and already the gradient
    ``(alpha * (p - y) + (1 - alpha) * T * (p_T - q)) / B``, which backward only
    scales. On a small model this brings a distillation step close to the cost of
    a plain CE step.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, teacher_probs: Tensor,
                alpha: float, temperature: float) -> Tensor:
        # Few, whole-tensor ops: at C = 3 the cost is per-op overhead, not arithmetic.
        z = logits.detach().float()
        b = z.shape[0]
        q = teacher_probs
        logp = torch.log_softmax(z, dim=-1)  # (B, C) at T = 1
        logp_t = torch.log_softmax(z / temperature, dim=-1)  # (B, C) at T
        hard = F.nll_loss(logp, targets, reduction="sum")
        # KL(q || p_T) = sum q log q - sum q log p_T; xlogy gives 0 where q == 0.
        neg_entropy_minus_cross = torch.xlogy(q, q).sum() - torch.dot(q.reshape(-1),
                                                                      logp_t.reshape(-1))
        soft_w = (1.0 - alpha) * temperature
        # d loss / d z = (alpha * (p - y) + (1 - alpha) * T * (p_T - q)) / B, built now
        grad = logp.exp_().mul_(alpha / b)  # logp is not needed after the nll above
        grad.scatter_add_(1, targets[:, None], _constant(b, -alpha / b, z.dtype, z.device))
        grad.add_(logp_t.exp_().sub_(q), alpha=soft_w / b)
        ctx.save_for_backward(grad)
        loss = hard.mul(alpha / b).add_(neg_entropy_minus_cross, alpha=soft_w * temperature / b)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None, None, None


def fused_distillation_loss(student_logits: Tensor, targets: Tensor, teacher_probs: Tensor, *,
                            alpha: float, temperature: float) -> Tensor:
    """Same value and gradient as :func:`distillation_loss`, from cached teacher probabilities.

    Args:
        student_logits: (B, C) logits.
        targets: (B,) int64 hard labels.
        teacher_probs: (B, C) teacher probabilities at ``temperature``
            (see :func:`soft_targets`).
    """
    _check(temperature, alpha)
    out: Tensor = FusedDistillation.apply(student_logits, targets, teacher_probs.float(),
                                          float(alpha), float(temperature))
    return out

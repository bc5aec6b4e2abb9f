"""Consistency losses between a student and an EMA teacher on two views.

Pure functions; the teacher side is always detached (stop-gradient). The only
state is DINO's running center, kept by the thin :class:`DINOLoss` module as a
buffer updated under ``no_grad``.

- :func:`l2_normalised`: ``||s/|s| - t/|t|||^2 = 2 - 2 cos(s, t)`` (BYOL's loss).
- :func:`cosine_distance`: ``1 - cos(s, t)``.
- :func:`kl_consistency`: ``KL(softmax(t / T_t) || softmax(s / T_s))``.
- :func:`byol_loss`: symmetric BYOL loss over both view orders.
- :func:`dino_loss`: cross-entropy from the centred, sharpened teacher
  distribution of one view to the student distribution of the other.

References:
    Grill et al. Bootstrap Your Own Latent. NeurIPS 2020.
    Caron et al. Emerging Properties in Self-Supervised Vision Transformers (DINO). ICCV 2021.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DIVERGENCES",
    "DINOLoss",
    "byol_loss",
    "consistency",
    "cosine_distance",
    "dino_loss",
    "kl_consistency",
    "l2_normalised",
    "teacher_probabilities",
    "uniform_loss",
]

DIVERGENCES = ("l2", "kl", "cosine")


def l2_normalised(student: Tensor, teacher: Tensor) -> Tensor:
    """Squared L2 distance of the L2-normalised outputs, averaged over the batch.

    Args:
        student: (B, D) student predictions.
        teacher: (B, D) teacher targets; detached here.

    Returns:
        Scalar ``mean_b(2 - 2 cos(s_b, t_b))``, in [0, 4].
    """
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.detach().float(), dim=-1)
    return (s - t).pow(2).sum(dim=-1).mean()


def cosine_distance(student: Tensor, teacher: Tensor) -> Tensor:
    """``mean_b(1 - cos(s_b, t_b))`` for (B, D) inputs; teacher detached. In [0, 2]."""
    return (1.0 - F.cosine_similarity(student.float(), teacher.detach().float(), dim=-1)).mean()


def kl_consistency(student: Tensor, teacher: Tensor, *, student_temperature: float,
                   teacher_temperature: float) -> Tensor:
    """``KL(softmax(t / T_t) || softmax(s / T_s))`` averaged over the batch.

    Args:
        student: (B, K) student logits.
        teacher: (B, K) teacher logits; detached here.
        student_temperature: T_s > 0.
        teacher_temperature: T_t > 0 (lower than T_s sharpens the target).
    """
    _check_temperatures(student_temperature, teacher_temperature)
    log_p = F.log_softmax(student.float() / student_temperature, dim=-1)
    log_q = F.log_softmax(teacher.detach().float() / teacher_temperature, dim=-1)
    # F.kl_div(input, target) = KL(target || exp(input)): input = student log-probs.
    return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)


def _check_temperatures(*temperatures: float) -> None:
    for t in temperatures:
        if not t > 0:
            raise ValueError(f"temperatures must be > 0, got {t}")


def consistency(student: Tensor, teacher: Tensor, *, divergence: str,
                student_temperature: float = 0.1, teacher_temperature: float = 0.04) -> Tensor:
    """The divergence named ``divergence`` (``l2``, ``kl`` or ``cosine``) between (B, D) outputs.

    Temperatures are used by ``kl`` only.
    """
    if divergence == "l2":
        return l2_normalised(student, teacher)
    if divergence == "cosine":
        return cosine_distance(student, teacher)
    if divergence == "kl":
        return kl_consistency(student, teacher, student_temperature=student_temperature,
                              teacher_temperature=teacher_temperature)
    raise ValueError(f"divergence '{divergence}' is not one of: {', '.join(DIVERGENCES)}")


def byol_loss(predictions: Sequence[Tensor], targets: Sequence[Tensor], *,
              divergence: str = "l2", student_temperature: float = 0.1,
              teacher_temperature: float = 0.04) -> Tensor:
    """Symmetric BYOL loss: the student's prediction for view a matches the teacher on view b.

    Args:
        predictions: V tensors (B, D), the student's predictor outputs per view.
        targets: V tensors (B, D), the teacher's projections per view (detached).
        divergence: ``l2`` (BYOL's ``2 - 2 cos``), ``cosine`` or ``kl``.

    Returns:
        Scalar: sum over ordered pairs of distinct views (a, b) of
        ``D(predictions[a], targets[b])``; for two views, BYOL's symmetrised loss.
    """
    _check_views(predictions, targets)
    total = predictions[0].new_zeros((), dtype=torch.float32)
    for a, p in enumerate(predictions):
        for b, t in enumerate(targets):
            if a != b:
                total = total + consistency(p, t, divergence=divergence,
                                            student_temperature=student_temperature,
                                            teacher_temperature=teacher_temperature)
    return total


def _check_views(student: Sequence[Tensor], teacher: Sequence[Tensor]) -> None:
    if len(student) != len(teacher) or len(student) < 2:
        raise ValueError(f"need the same number (>= 2) of student and teacher views, "
                         f"got {len(student)} and {len(teacher)}")


def teacher_probabilities(teacher_logits: Tensor, center: Tensor, *,
                          temperature: float) -> Tensor:
    """Centred, sharpened teacher distribution ``softmax((t - c) / T_t)``, detached.

    Args:
        teacher_logits: (B, K).
        center: (1, K) or (K,) running mean of teacher logits (zeros: no centering).
        temperature: T_t > 0.
    """
    _check_temperatures(temperature)
    return torch.softmax((teacher_logits.detach().float() - center) / temperature, dim=-1)


def dino_loss(student_logits: Sequence[Tensor], teacher_logits: Sequence[Tensor],
              center: Tensor, *, student_temperature: float = 0.1,
              teacher_temperature: float = 0.04) -> Tensor:
    """DINO cross-entropy ``H(q_b, p_a)`` averaged over ordered pairs of distinct views.

    ``q_b = softmax((t_b - center) / T_t)`` (detached), ``p_a = softmax(s_a / T_s)``.
    With a uniform teacher and student the loss is ln K.

    Args:
        student_logits: V tensors (B, K), prototype scores of the student per view.
        teacher_logits: V tensors (B, K), of the teacher (detached).
        center: (1, K) running center (zeros: no centering).
        student_temperature: T_s, 0.1 by default.
        teacher_temperature: T_t, lower than T_s (sharpening), 0.04 -> 0.07 by default.

    Returns:
        Scalar cross-entropy in nats (the soft-CE, i.e. KL plus the teacher entropy).
    """
    _check_views(student_logits, teacher_logits)
    _check_temperatures(student_temperature)
    targets = [teacher_probabilities(t, center, temperature=teacher_temperature)
               for t in teacher_logits]
    total, pairs = student_logits[0].new_zeros((), dtype=torch.float32), 0
    for a, s in enumerate(student_logits):
        log_p = F.log_softmax(s.float() / student_temperature, dim=-1)  # (B, K)
        for b, q in enumerate(targets):
            if a != b:
                total = total - (q * log_p).sum(dim=-1).mean()
                pairs += 1
    return total / pairs


def uniform_loss(k: int) -> float:
    """ln K: the DINO loss when teacher and student are both uniform over K prototypes."""
    return math.log(k)


class DINOLoss(nn.Module):
    """:func:`dino_loss` plus the running center of the teacher outputs.

    After each call the center moves towards the batch mean of the teacher
    logits, ``c <- m * c + (1 - m) * mean(t)``, under ``no_grad``. With
    ``centering=False`` the center stays at zero (a collapse-prone setup).

    Args:
        prototypes: K, the width of the logits.
        center_momentum: m, 0.9 by default.
        centering: subtract the center from the teacher logits.
    """

    center: Tensor

    def __init__(self, prototypes: int, *, center_momentum: float = 0.9,
                 centering: bool = True) -> None:
        super().__init__()
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum}")
        self.center_momentum, self.centering = center_momentum, centering
        self.register_buffer("center", torch.zeros(1, prototypes))

    def forward(self, student_logits: Sequence[Tensor], teacher_logits: Sequence[Tensor], *,
                student_temperature: float, teacher_temperature: float) -> Tensor:
        """Loss over views (see :func:`dino_loss`), then one center update."""
        loss = dino_loss(student_logits, teacher_logits, self.center,
                         student_temperature=student_temperature,
                         teacher_temperature=teacher_temperature)
        self.update_center(teacher_logits)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_logits: Sequence[Tensor]) -> None:
        """Move the center towards the mean teacher logits of this batch (all views)."""
        if not self.centering:
            return
        batch_mean = torch.cat([t.detach().float() for t in teacher_logits]).mean(0, keepdim=True)
        self.center.mul_(self.center_momentum).add_(batch_mean, alpha=1.0 - self.center_momentum)

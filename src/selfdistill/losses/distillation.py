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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DistillationTargets",
    "distillation_loss",
    "fused_distillation_loss",
    "kd_kl",
    "soft_targets",
]

#: Rows packed at a time by :meth:`DistillationTargets.build`.
_PACK_ROWS = 1 << 18


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


@dataclass(frozen=True)
class DistillationTargets:
    """Hard labels and teacher probabilities packed once, so a step needs few ops.

    ``alpha * CE + (1 - alpha) * T^2 * KL`` is linear in the targets, so it is a
    single soft-target cross-entropy over three "positions" of the student's
    logits, weighted per row:

    * position 0: logits ``z`` against ``alpha * onehot(y)`` (the hard term);
    * position 1: logits ``z / T`` against ``(1 - alpha) T^2 q`` (the soft
      term's cross part);
    * position 2: logits ``0 * z``, whose log-softmax is the constant
      ``-log C``, against ``c / (C log C)`` with ``c = (1 - alpha) T^2 sum q log q``:
      it adds the teacher's negative entropy, so the value is the KL form
      exactly, and its gradient is exactly zero.

    ``packed`` holds the three weight columns per row, negated, so the loss of a
    batch is ``dot(log_softmax(logits * [1, 1/T, 0]), packed[rows]) / B``. All of
    it is built once per generation; a training step then costs one gather, one
    multiply, one log-softmax and one dot product, each with PyTorch's own
    backward, which keeps a distillation step close to a plain CE step (at C = 3
    the cost is per-op overhead, not arithmetic).

    Attributes:
        packed: (N, C, 3) float32 negated weights, rows as in the data.
        scale: (1, 1, 3) multipliers ``[1, 1/T, 0]`` of the logits.
        alpha / temperature: what the weights were built with.
    """

    packed: Tensor
    scale: Tensor
    alpha: float
    temperature: float

    @classmethod
    def build(cls, targets: Tensor, teacher_probs: Tensor, *, alpha: float,
              temperature: float) -> DistillationTargets:
        """Pack (N,) int64 labels and (N, C) teacher probabilities at ``temperature``.

        Rows whose teacher probabilities are all zero (rows no step uses) get a
        zero soft term.
        """
        _check(temperature, alpha)
        if teacher_probs.ndim != 2 or targets.shape != teacher_probs.shape[:1]:
            raise ValueError(f"targets {tuple(targets.shape)} and teacher_probs "
                             f"{tuple(teacher_probs.shape)} must be (N,) and (N, C)")
        c = teacher_probs.shape[1]
        if c < 2:
            raise ValueError(f"distillation needs at least 2 classes, got {c}")
        if len(targets) and not (int(targets.min()) >= 0 and int(targets.max()) < c):
            raise ValueError(f"targets must be class indices in [0, {c}), "
                             f"got {int(targets.min())}..{int(targets.max())}")
        soft_w = (1.0 - alpha) * temperature**2
        n = teacher_probs.shape[0]
        packed = torch.empty(n, c, 3, dtype=torch.float32, device=teacher_probs.device)
        for a in range(0, n, _PACK_ROWS):  # row by row: no (N, C) temporaries at 10M rows
            q = teacher_probs[a:a + _PACK_ROWS].detach().float()
            hard = F.one_hot(targets[a:a + _PACK_ROWS], c).to(q.dtype) * alpha
            neg_entropy = torch.xlogy(q, q).sum(dim=1, keepdim=True) * soft_w  # (n, 1)
            const = (neg_entropy / (c * math.log(c))).expand(-1, c)
            torch.stack([hard, q * soft_w, const], dim=2, out=packed[a:a + _PACK_ROWS])
        packed.neg_()
        scale = torch.tensor([1.0, 1.0 / temperature, 0.0], device=packed.device).view(1, 1, 3)
        return cls(packed=packed, scale=scale, alpha=float(alpha), temperature=float(temperature))

    def loss(self, student_logits: Tensor, rows: Tensor | None = None) -> Tensor:
        """The distillation loss of (B, C) logits for ``packed[rows]`` (all rows when None)."""
        target = self.packed if rows is None else self.packed.index_select(0, rows)
        logp = torch.log_softmax(student_logits.float().unsqueeze(2) * self.scale, dim=1)
        return torch.dot(logp.view(-1), target.view(-1)) / target.shape[0]


def fused_distillation_loss(student_logits: Tensor, targets: Tensor, teacher_probs: Tensor, *,
                            alpha: float, temperature: float) -> Tensor:
    """Same value and gradient as :func:`distillation_loss`, from cached teacher probabilities.

    Packs the targets on every call; a training loop builds
    :class:`DistillationTargets` once and calls its ``loss`` instead.

    Args:
        student_logits: (B, C) logits.
        targets: (B,) int64 hard labels.
        teacher_probs: (B, C) teacher probabilities at ``temperature``
            (see :func:`soft_targets`).
    """
    return DistillationTargets.build(targets, teacher_probs, alpha=alpha,
                                     temperature=temperature).loss(student_logits)

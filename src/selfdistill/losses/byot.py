"""Be Your Own Teacher: the deepest exit of a network teaches its shallower exits.

For exits ``1 .. D`` (shallowest first) with logits ``z_i`` and hint features
``h_i`` (shallow features already mapped to the deepest width by the model's
adapters)::

    loss = ce_weight   * sum_{i=1..D}   CE(y, z_i)
         + kd_weight   * sum_{i=1..D-1} T^2 * KL(softmax(z_D / T) || softmax(z_i / T))
         + hint_weight * sum_{i=1..D-1} mean((h_i - h_D)^2)

``z_D`` and ``h_D`` are detached: the deepest exit teaches and is never pulled
towards a shallow one. KL uses ``reduction="batchmean"``; the hint is the mean
squared difference per feature element, so its scale does not grow with width.

References:
    Zhang et al. Be Your Own Teacher: Improve the Performance of Convolutional
    Neural Networks via Self Distillation. ICCV 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from selfdistill.losses.distillation import kd_kl

__all__ = ["ByotTerms", "byot_loss", "byot_terms"]


class ByotTerms(NamedTuple):
    """The three unweighted BYOT terms, each a scalar tensor (summed over exits)."""

    ce: Tensor
    kd: Tensor
    hint: Tensor


def _check(logits: Sequence[Tensor], hints: Sequence[Tensor] | None) -> None:
    if not logits:
        raise ValueError("byot loss needs at least one exit's logits")
    if hints is None:
        return
    if len(hints) != len(logits):
        raise ValueError(f"got {len(logits)} exits' logits but {len(hints)} hint features")
    deep = tuple(hints[-1].shape)
    for i, h in enumerate(hints[:-1]):
        if tuple(h.shape) != deep:
            raise ValueError(f"hint of exit {i + 1} has shape {tuple(h.shape)}, the deepest "
                             f"exit's is {deep}; map it with the model's adapter first")


def byot_terms(logits: Sequence[Tensor], targets: Tensor, hints: Sequence[Tensor] | None = None,
               *, temperature: float = 3.0) -> ByotTerms:
    """Unweighted CE, KL and hint terms of Be Your Own Teacher.

    Args:
        logits: D tensors (B, C), shallowest exit first; the last one teaches.
        targets: (B,) int64 hard labels.
        hints: optional D tensors (B, H): shallow features already adapted to the
            deepest width, then the deepest features. None: no hint term.
        temperature: T > 0 of the KL term.

    Returns:
        :class:`ByotTerms` of scalars: CE summed over all exits, ``T^2 * KL``
        and the hint summed over the shallow exits (zero for a single exit).
    """
    _check(logits, hints)
    ce = torch.stack([F.cross_entropy(z.float(), targets) for z in logits]).sum()
    zero = ce.new_zeros(())
    teacher = logits[-1].detach()
    kd = sum((kd_kl(z, teacher, temperature=temperature) for z in logits[:-1]), zero)
    hint = zero
    if hints is not None:
        deep = hints[-1].detach().float()
        hint = sum((F.mse_loss(h.float(), deep) for h in hints[:-1]), zero)
    return ByotTerms(ce, kd, hint)


def byot_loss(logits: Sequence[Tensor], targets: Tensor, hints: Sequence[Tensor] | None = None,
              *, temperature: float = 3.0, ce_weight: float = 0.7, kd_weight: float = 0.3,
              hint_weight: float = 0.03) -> Tensor:
    """``ce_weight * CE + kd_weight * KD + hint_weight * hint`` (see :func:`byot_terms`).

    Args:
        logits: D tensors (B, C), shallowest exit first.
        targets: (B,) int64 hard labels.
        hints: optional D tensors (B, H), deepest last (see :func:`byot_terms`).
        temperature: T > 0 of the KL term.
        ce_weight / kd_weight / hint_weight: non-negative weights of the terms.

    Returns:
        Scalar tensor.
    """
    for name, w in (("ce_weight", ce_weight), ("kd_weight", kd_weight),
                    ("hint_weight", hint_weight)):
        if w < 0:
            raise ValueError(f"{name} must be >= 0, got {w}")
    terms = byot_terms(logits, targets, hints if hint_weight > 0 else None,
                       temperature=temperature)
    return ce_weight * terms.ce + kd_weight * terms.kd + hint_weight * terms.hint

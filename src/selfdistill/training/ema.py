"""Exponential-moving-average teachers: build one, update it, warm up its temperature.

The update is an explicit call made right after ``optimizer.step()`` (never a
hook), once per optimizer step::

    optimizer.step()
    update_ema(teacher, student, tau=cosine_tau(step, total_steps=..., tau_base=0.996))

Every parameter follows ``theta_t <- tau * theta_t + (1 - tau) * theta_s``.

Normalisation buffers (BatchNorm running mean / variance and the like) follow
an explicit policy, ``buffers=``:

- ``"ema"`` (default): floating-point buffers are averaged with the same ``tau``
  as the parameters, so the teacher's statistics describe the teacher's own
  (averaged) activations; integer buffers (``num_batches_tracked``) are copied.
- ``"copy"``: every buffer is copied from the student (the teacher uses the
  student's latest statistics).

The teacher runs in ``eval()`` mode, so it uses these buffers rather than the
statistics of the batch in front of it. The encoders and heads of this package
use no BatchNorm by default, so the policy matters only for user models.

References:
    Tarvainen & Valpola. Mean teachers are better role models. 2017.
    Grill et al. Bootstrap Your Own Latent. 2020.
"""

from __future__ import annotations

import copy
from typing import Literal, TypeVar

import torch
from torch import nn

__all__ = ["BUFFER_POLICIES", "linear_warmup", "make_teacher", "update_ema"]

BufferPolicy = Literal["ema", "copy"]
BUFFER_POLICIES: tuple[str, ...] = ("ema", "copy")
ModuleT = TypeVar("ModuleT", bound=nn.Module)


def make_teacher(student: ModuleT) -> ModuleT:
    """A frozen deep copy of ``student``: ``eval()``, ``requires_grad_(False)``.

    Never pass its parameters to an optimizer; it changes only through
    :func:`update_ema`.
    """
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher


def _matched(teacher: nn.Module, student: nn.Module, kind: str) -> tuple[list[torch.Tensor],
                                                                         list[torch.Tensor]]:
    named_t = dict(teacher.named_parameters() if kind == "parameters" else teacher.named_buffers())
    named_s = dict(student.named_parameters() if kind == "parameters" else student.named_buffers())
    if named_t.keys() != named_s.keys():
        missing = sorted(set(named_s) ^ set(named_t))[:5]
        raise ValueError(f"teacher and student {kind} differ (e.g. {missing}); "
                         "build the teacher with make_teacher(student)")
    names = list(named_s)
    return [named_t[n] for n in names], [named_s[n] for n in names]


@torch.no_grad()
def update_ema(teacher: nn.Module, student: nn.Module, tau: float, *,
               buffers: BufferPolicy = "ema") -> None:
    """``theta_t <- tau * theta_t + (1 - tau) * theta_s`` over every parameter, in place.

    Args:
        teacher: the EMA copy (from :func:`make_teacher`).
        student: the trained network; same parameter and buffer names.
        tau: momentum in [0, 1]; 1 leaves the teacher unchanged, 0 copies the student.
        buffers: normalisation-buffer policy, ``"ema"`` or ``"copy"`` (module docstring).

    Raises:
        ValueError: ``tau`` outside [0, 1], an unknown policy, or mismatched modules.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"EMA momentum tau must be in [0, 1], got {tau}")
    if buffers not in BUFFER_POLICIES:
        raise ValueError(f"buffer policy '{buffers}' is not one of: {', '.join(BUFFER_POLICIES)}")
    params_t, params_s = _matched(teacher, student, "parameters")
    if params_t:
        torch._foreach_lerp_(params_t, params_s, 1.0 - tau)  # t + (1 - tau) * (s - t)
    bufs_t, bufs_s = _matched(teacher, student, "buffers")
    for bt, bs in zip(bufs_t, bufs_s, strict=True):
        if buffers == "ema" and bt.is_floating_point():
            bt.lerp_(bs, 1.0 - tau)
        else:
            bt.copy_(bs)


def linear_warmup(step: int, *, start: float, end: float, warmup_steps: int) -> float:
    """``start`` at step 0, linearly to ``end`` at ``warmup_steps``, then ``end``.

    Used for DINO's teacher temperature (0.04 -> 0.07).
    """
    if warmup_steps <= 0:
        return end
    frac = min(1.0, max(0, step) / warmup_steps)
    return start + (end - start) * frac

"""The EMA-teacher objectives as one step's losses: teacher targets, student terms, updates.

A step on two views of B windows has three phases, so that gradient accumulation
over micro-batches gives the whole batch's result:

1. :func:`teacher_targets`, once for the whole batch under ``no_grad``: the
   teacher's outputs on the *unmasked* views, and everything batch-wide: the
   Sinkhorn codes (balanced over the batch), the mask, the DINO center and the
   key queue as they stand before the step.
2. :func:`student_terms` for any subset of the windows (a micro-batch): the weighted
   sum of the objectives' losses and each term, means over the windows.
3. :func:`after_step`, once per optimizer step: the DINO centers and the key queue
   take the whole batch's teacher outputs.

Objectives (``ema_teacher.objective`` weights any combination):

- ``consistency``: the form's loss (BYOL's predictor-to-projection or DINO's
  cross-entropy to the centred, sharpened teacher), as before.
- ``masked``: the student sees both views with ``mask_ratio`` of their bars replaced
  by a learned token and predicts the teacher's layer-normalised per-bar features of
  the unmasked view at those bars (data2vec). As in iBOT, the student's other terms
  read the same masked views: one student forward serves every objective.
- ``contrastive``: MoCo's InfoNCE of the student's query for one view against the
  teacher's key for the other, with the queue as negatives.
- ``clustering``: SwAV's swapped prediction of the teacher's Sinkhorn-Knopp codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from selfdistill.config import EmaTeacherConfig
from selfdistill.losses.clustering import sinkhorn_knopp, swapped_prediction
from selfdistill.losses.consistency import DINOLoss, byol_loss, dino_loss
from selfdistill.losses.contrastive import moco_loss
from selfdistill.losses.masked import masked_prediction_loss, normalised_targets
from selfdistill.methods.ema_teacher.networks import MaskedPredictor
from selfdistill.methods.ema_teacher.state import PretrainState
from selfdistill.training.augment import apply_bar_mask, random_bar_mask
from selfdistill.training.ema import linear_warmup

__all__ = ["Targets", "after_step", "student_terms", "teacher_targets", "teacher_temperature"]


@dataclass
class Targets:
    """The teacher's side of one step for 2B windows: view 0 in rows [0, B), view 1 after.

    Attributes:
        views: (2B, F, W) the augmented views (unmasked).
        mask: (2B, W) bool bars the student must predict (masked objective), else None.
        heads: H teacher consistency-head outputs (2B, P).
        keys: (2B, P) teacher keys (contrastive), else None.
        codes: (2B, K) Sinkhorn codes, balanced within each view (clustering), else None.
        sequence: (2B, D, W) normalised per-bar teacher features (masked), else None.
        teacher_temperature: DINO's teacher temperature at this step.
    """

    views: Tensor
    mask: Tensor | None
    heads: list[Tensor]
    keys: Tensor | None
    codes: Tensor | None
    sequence: Tensor | None
    teacher_temperature: float

    def rows(self, s: slice) -> Tensor:
        """Indices of windows ``s`` in both views: (2b,)."""
        b = len(self.views) // 2
        idx = torch.arange(s.start, s.stop, device=self.views.device)
        return torch.cat([idx, idx + b])


def teacher_temperature(state: PretrainState, e: EmaTeacherConfig) -> float:
    """DINO's teacher temperature at the current step (linear warm-up)."""
    return linear_warmup(state.step, start=e.teacher_temperature,
                         end=e.teacher_temperature_final,
                         warmup_steps=e.teacher_temperature_warmup_epochs * state.steps_per_epoch)


def _balanced(scores: Tensor, e: EmaTeacherConfig) -> Tensor:
    """Sinkhorn codes computed within each view's B windows: (2B, K)."""
    return torch.cat([sinkhorn_knopp(v, epsilon=e.sinkhorn_epsilon,
                                     iterations=e.sinkhorn_iterations) for v in scores.chunk(2)])


@torch.no_grad()
def teacher_targets(state: PretrainState, views: Tensor, e: EmaTeacherConfig) -> Targets:
    """Phase 1: the teacher on the whole batch's views (2B, F, W), and the batch-wide parts."""
    masked = "masked" in e.objective
    out = state.teacher.outputs(views, sequence=masked)
    mask = (random_bar_mask(len(views), views.shape[2], e.mask_ratio,
                            generator=state.generator, device=views.device) if masked else None)
    clusters = out.aux.get("clustering")
    return Targets(
        views=views, mask=mask, heads=out.heads, keys=out.aux.get("contrastive"),
        codes=_balanced(clusters, e) if clusters is not None else None,
        sequence=normalised_targets(out.sequence) if out.sequence is not None else None,
        teacher_temperature=teacher_temperature(state, e))


def _consistency(state: PretrainState, heads_s: list[Tensor], heads_t: list[Tensor],
                 e: EmaTeacherConfig, t_temp: float) -> Tensor:
    """The form's loss summed over heads, on (2b, P) outputs (views stacked)."""
    total = heads_s[0].new_zeros(())
    if state.predictors is not None:
        for pred, o_s, o_t in zip(state.predictors.heads, heads_s, heads_t, strict=True):
            total = total + byol_loss(pred(o_s).chunk(2), o_t.chunk(2), divergence=e.divergence,
                                      student_temperature=e.student_temperature,
                                      teacher_temperature=e.teacher_temperature)
        return total
    assert state.dino is not None
    for dino, o_s, o_t in zip(state.dino, heads_s, heads_t, strict=True):
        assert isinstance(dino, DINOLoss)
        total = total + dino_loss(o_s.chunk(2), o_t.chunk(2), dino.center,
                                  student_temperature=e.student_temperature,
                                  teacher_temperature=t_temp)
    return total


def _terms(state: PretrainState, targets: Targets, idx: Tensor,
           e: EmaTeacherConfig) -> dict[str, Tensor]:
    """Each active objective's loss on windows ``idx`` (2b,) of the step."""
    views = targets.views[idx]  # (2b, F, W)
    mask = targets.mask[idx] if targets.mask is not None else None
    masked_head = state.online["masked"] if mask is not None else None
    if mask is not None:
        assert isinstance(masked_head, MaskedPredictor)
        views = apply_bar_mask(views, mask, masked_head.token)
    out = state.student.outputs(views, sequence=mask is not None)
    terms: dict[str, Tensor] = {}
    if "consistency" in e.objective:
        terms["consistency"] = _consistency(state, out.heads, [t[idx] for t in targets.heads],
                                            e, targets.teacher_temperature)
    if targets.keys is not None and state.queue is not None:
        queries = state.online["contrastive"](out.aux["contrastive"])  # (2b, P)
        terms["contrastive"] = moco_loss(queries.chunk(2), targets.keys[idx].chunk(2),
                                         state.queue.keys, temperature=e.contrastive_temperature)
    if targets.codes is not None:
        terms["clustering"] = swapped_prediction(out.aux["clustering"].chunk(2),
                                                 targets.codes[idx].chunk(2),
                                                 temperature=e.student_temperature)
    if masked_head is not None and out.sequence is not None and targets.sequence is not None:
        assert mask is not None
        predicted = masked_head(out.sequence)  # (2b, D, W)
        terms["masked"] = masked_prediction_loss(predicted, targets.sequence[idx], mask,
                                                 kind=e.masked_loss)
    return terms


def student_terms(state: PretrainState, targets: Targets, s: slice,
                  e: EmaTeacherConfig) -> dict[str, Tensor]:
    """Phase 2 for windows ``s`` of the batch: ``loss`` (weighted sum) and each term."""
    terms = _terms(state, targets, targets.rows(s), e)
    total = sum((weight * terms[name] for name, weight in e.objective.items()),
                start=targets.views.new_zeros(()))
    return {"loss": total, **terms}


@torch.no_grad()
def after_step(state: PretrainState, targets: Targets) -> None:
    """Phase 3, once per optimizer step: DINO centers and the key queue take the batch."""
    if state.dino is not None:
        for dino, o_t in zip(state.dino, targets.heads, strict=True):
            assert isinstance(dino, DINOLoss)
            dino.update_center(o_t.chunk(2))
    if state.queue is not None and targets.keys is not None:
        state.queue.push(targets.keys)

"""The collapse metrics of one pretraining epoch, for every objective in use.

Computed each epoch on a fixed set of training windows (no RNG, so epochs are
comparable) with the networks in eval mode; the metrics themselves are the pure
functions of :mod:`~selfdistill.methods.ema_teacher.collapse`. A metric whose
objective is not in use is NaN (``null`` in JSON).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from selfdistill.config import EmaTeacherConfig, RunConfig
from selfdistill.losses.clustering import cluster_usage
from selfdistill.losses.consistency import DINOLoss, teacher_probabilities
from selfdistill.losses.contrastive import uniform_info_nce
from selfdistill.losses.masked import normalised_targets
from selfdistill.methods.ema_teacher.collapse import (
    CollapseMonitor,
    effective_rank,
    embedding_std,
    loss_at_uniform,
    marginal_entropy,
    teacher_entropy,
)
from selfdistill.methods.ema_teacher.networks import Outputs
from selfdistill.methods.ema_teacher.objectives import teacher_temperature
from selfdistill.methods.ema_teacher.state import PretrainState

__all__ = ["COLLAPSE_METRICS", "collapse_record", "make_monitor"]

#: every metric a record holds (NaN where its objective is not in use)
COLLAPSE_METRICS = ("embedding_std", "effective_rank", "teacher_entropy",
                    "teacher_marginal_entropy", "loss_at_uniform", "cluster_usage", "key_std",
                    "contrastive_at_uniform", "target_std")


def make_monitor(cfg: RunConfig) -> CollapseMonitor:
    """The monitor with the thresholds that apply to ``cfg``'s form and objectives."""
    e = cfg.ema_teacher
    dino = e.form == "dino" and "consistency" in e.objective
    return CollapseMonitor(cfg.model.hidden[-1], e.prototypes if dino else None,
                           clusters=e.prototypes if "clustering" in e.objective else None,
                           key_dim=e.projection_dim if "contrastive" in e.objective else None)


def _dino_metrics(state: PretrainState, out: Outputs, losses: dict[str, float],
                  e: EmaTeacherConfig) -> dict[str, float]:
    assert state.dino is not None
    t_temp = teacher_temperature(state, e)
    centers = [d.center for d in state.dino if isinstance(d, DINOLoss)]
    probs = [teacher_probabilities(o, c, temperature=t_temp)
             for o, c in zip(out.heads, centers, strict=True)]
    per_head = losses.get("consistency", math.nan) / len(probs)
    return {"teacher_entropy": sum(map(teacher_entropy, probs)) / len(probs),
            "teacher_marginal_entropy": sum(map(marginal_entropy, probs)) / len(probs),
            "loss_at_uniform": float(loss_at_uniform(per_head, e.prototypes))}


def _target_std(sequence: Tensor) -> float:
    """Std over windows and bars of the normalised per-bar targets, mean over D (0: collapsed)."""
    t = normalised_targets(sequence).transpose(1, 2).reshape(-1, sequence.shape[1])  # (M*W, D)
    return float(t.double().std(dim=0).mean())


@torch.no_grad()
def collapse_record(state: PretrainState, xm: Tensor, losses: dict[str, float],
                    e: EmaTeacherConfig) -> dict[str, float]:
    """Collapse metrics on monitor windows ``xm`` (M, F, W); ``losses`` are the epoch's means."""
    state.student.eval()
    z = state.student.encoder(xm)  # (M, D)
    state.student.train()
    rec = dict.fromkeys(COLLAPSE_METRICS, math.nan)
    rec.update(embedding_std=embedding_std(z), effective_rank=effective_rank(z))
    out = state.teacher.outputs(xm, sequence="masked" in e.objective)
    if state.dino is not None:
        rec.update(_dino_metrics(state, out, losses, e))
    if "clustering" in out.aux:  # hard assignments before Sinkhorn: its balancing hides collapse
        rec["cluster_usage"] = cluster_usage(out.aux["clustering"])
    if "contrastive" in out.aux:
        rec["key_std"] = embedding_std(out.aux["contrastive"])
        at_uniform = abs(losses.get("contrastive", math.nan) - uniform_info_nce(e.queue_size))
        rec["contrastive_at_uniform"] = float(at_uniform <= 0.01 * uniform_info_nce(e.queue_size))
    if out.sequence is not None:
        rec["target_std"] = _target_std(out.sequence)
    return rec

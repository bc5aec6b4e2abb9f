"""Snapshot distillation: one run whose earlier snapshots teach its later cycles.

A single model trains for ``snapshot.cycles`` cycles of ``epochs_per_cycle``
epochs under a cosine learning rate restarted at every cycle (SGDR), keeping
one optimizer throughout. The weights at the end of each cycle are a frozen
snapshot (a member keyed ``{"snapshot": c, "cycle": c}``). Cycle 1 trains on
hard labels; during cycle ``c > 1`` the loss is ``alpha * CE + (1 - alpha) *
T^2 * KL(teacher_T || student_T)`` whose teacher is built *only* from the
snapshots of cycles ``< c``: the last one (``teacher: last``, the paper) or
the average of their probabilities (``teacher: average``). Its soft targets
are computed once per cycle and cached. No early stopping: a snapshot is the
weights at the end of its cycle. The snapshot with the best validation NLL is
selected; the ensemble of snapshots is its own row (``snapshot_ensemble``).

References:
    Yang et al. Snapshot Distillation: Teacher-Student Optimization in One
    Generation. CVPR 2019.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
from torch import nn

from selfdistill.config import RunConfig
from selfdistill.errors import ConfigError
from selfdistill.methods.base import Derived, Lineage, Member, TrainData
from selfdistill.methods.born_again import distill_loss, mean_probabilities, teacher_targets
from selfdistill.methods.common import derive_seed, freeze, fresh_model, hard_ce_loss, val_nll
from selfdistill.training.loop import Callback, FitSettings, LossFn, fit, make_optimizer
from selfdistill.training.schedules import cosine_restart_lr

__all__ = ["TEACHER_KINDS", "fit_snapshot", "teacher_snapshots"]

log = logging.getLogger(__name__)

TEACHER_KINDS = ("last", "average")


def teacher_snapshots(snapshots: Sequence[Member], cycle: int, kind: str) -> list[Member]:
    """The snapshots that teach cycle ``cycle``: only those of earlier cycles.

    Args:
        snapshots: members of finished cycles, each keyed with its ``cycle``.
        cycle: the cycle about to train (1-based); cycle 1 has no teacher.
        kind: ``last`` (the latest earlier snapshot) or ``average`` (all earlier ones).
    """
    if kind not in TEACHER_KINDS:
        raise ConfigError(f"snapshot.teacher '{kind}' is not one of: {', '.join(TEACHER_KINDS)}")
    earlier = [s for s in snapshots if s.keys["cycle"] < cycle]
    if kind == "last":
        return earlier[-1:]
    return earlier


def _cycle_loss(data: TrainData, cfg: RunConfig, teachers: Sequence[Member]) -> LossFn:
    """Hard-label CE without a teacher, else CE + KD from cached teacher targets."""
    sc = cfg.snapshot
    if not teachers:
        return hard_ce_loss(data.y)
    q = teacher_targets([t.model for t in teachers], data.x, data.train_rows,
                        temperature=sc.temperature, n_rows=data.x.shape[0])
    return distill_loss(data.y, q, alpha=sc.alpha, temperature=sc.temperature)


def _lr_schedule(data: TrainData, cfg: RunConfig) -> Callable[[int], float]:
    """Cosine learning rate restarted at the start of every cycle."""
    steps_per_epoch = math.ceil(len(data.train_rows) / cfg.training.batch_size)
    return partial(cosine_restart_lr, base_lr=cfg.training.lr,
                   steps_per_cycle=cfg.snapshot.epochs_per_cycle * steps_per_epoch)


def _run_cycles(model: nn.Module, data: TrainData, cfg: RunConfig, *, seed: int,
                callbacks: Sequence[Callback]) -> list[Member]:
    """Train every cycle around :func:`fit`, one optimizer and one step count throughout."""
    sc, tr = cfg.snapshot, cfg.training
    optimizer = make_optimizer(model, kind=tr.optimizer, lr=tr.lr, weight_decay=tr.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    lr_at, step = _lr_schedule(data, cfg), 0
    snapshots: list[Member] = []
    for cycle in range(1, sc.cycles + 1):
        t0 = time.perf_counter()
        teachers = teacher_snapshots(snapshots, cycle, sc.teacher)
        loss_fn = _cycle_loss(data, cfg, teachers)
        settings = FitSettings(epochs=sc.epochs_per_cycle, batch_size=tr.batch_size,
                               patience=0, restore_best=False, grad_clip=tr.grad_clip,
                               lr_at=lr_at, start_step=step, label=f"snapshot cycle {cycle}")
        result = fit(model, x=data.x, y=data.y, train_rows=data.train_rows,
                     val_rows=data.val_rows, loss_fn=loss_fn, optimizer=optimizer,
                     generator=generator, settings=settings, callbacks=callbacks)
        step += result.steps
        snapshots.append(Member(
            {"snapshot": cycle, "cycle": cycle}, freeze(copy.deepcopy(model)), result.history,
            info={"epochs": result.epochs_run, "seconds": time.perf_counter() - t0,
                  "teacher_cycles": [t.keys["cycle"] for t in teachers]}))
    return snapshots


def fit_snapshot(data: TrainData, cfg: RunConfig, *, seed: int,
                 callbacks: Sequence[Callback] = ()) -> Lineage:
    """One run of ``snapshot.cycles`` cosine cycles; each snapshot teaches the later cycles."""
    t0 = time.perf_counter()
    run_seed = derive_seed(seed, "snapshot")
    model = fresh_model(data, cfg, run_seed)
    members = _run_cycles(model, data, cfg, seed=run_seed, callbacks=callbacks)
    y_val = data.y[data.val_rows].cpu().numpy()
    scores = [val_nll(m.predict_proba(data.x, data.val_rows), y_val) for m in members]
    for member, score in zip(members, scores, strict=True):
        member.info["val_nll"] = score
    log.info("snapshot: %d cycles, validation NLL per snapshot %s", len(members),
             ", ".join(f"{s:.4f}" for s in scores))
    return Lineage("snapshot", members, selected=int(np.argmin(scores)), disagreement=True,
                   derived=[Derived("snapshot_ensemble", {"snapshot": None, "cycle": None},
                                    mean_probabilities)],
                   info={"val_nll": scores, "seconds": time.perf_counter() - t0,
                         "epochs": sum(m.info["epochs"] for m in members),
                         "cycles": len(members)})

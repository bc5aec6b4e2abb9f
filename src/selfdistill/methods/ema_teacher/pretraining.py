"""Self-supervised pretraining of a window encoder with an EMA teacher.

The student is an encoder plus the heads its objectives need (see
:mod:`~selfdistill.methods.ema_teacher.networks`); the teacher is a frozen copy
that follows the student by ``theta_t <- tau * theta_t + (1 - tau) * theta_s``
once per optimizer step, right after it, with ``tau`` on a per-step cosine
schedule from ``ema_teacher.tau_base`` to 1. Each step draws two augmented views
of a batch of training windows; the teacher sees both under ``no_grad``, the
student sees both (masked, with the masked objective), and the loss is the
weighted sum of the objectives in ``ema_teacher.objective``
(:mod:`~selfdistill.methods.ema_teacher.objectives`):

- ``consistency``, in the ``byol`` form: the student's prediction for view a matches
  the teacher's projection of view b (stop-gradient), divergence ``l2`` / ``cosine``
  / ``kl``; in the ``dino`` form: cross-entropy from the teacher's centred, sharpened
  distribution over K prototypes (temperature warmed up 0.04 -> 0.07) to the student's;
- ``masked`` (data2vec / iBOT), ``contrastive`` (MoCo with a key queue),
  ``clustering`` (SwAV's Sinkhorn-Knopp codes).

With ``ema_teacher.accumulation_steps = k`` the student runs on k micro-batches
and the gradients add up (:mod:`selfdistill.training.accumulate`); the teacher,
its EMA update, the DINO centers and the key queue still move once per optimizer
step. Pretraining reads training windows only: the rows of
``TrainData.unlabeled_rows`` (training bars) whose whole window lies inside those
rows. Collapse metrics (:mod:`~selfdistill.methods.ema_teacher.monitor`) are logged
in the history every epoch. ``fit_ema_teacher`` is the method the pipeline runs:
pretrain, then fine-tune a :class:`~selfdistill.nn.encoders.WindowClassifier` from
the downstream encoder (``ema_teacher.encoder``; by default the online encoder in
the BYOL form, the teacher in the DINO form).

References:
    Grill et al. Bootstrap Your Own Latent. 2020. Caron et al. DINO. 2021.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from selfdistill.config import EmaTeacherConfig, RunConfig
from selfdistill.config.sections import OBJECTIVES
from selfdistill.errors import ConfigError, TrainingError
from selfdistill.methods.base import Lineage, Member, TrainData
from selfdistill.methods.common import derive_seed, freeze, hard_ce_loss, train_model
from selfdistill.methods.ema_teacher.checkpoint import (
    encoder_spec_of,
    init_from_pretrained,
    read_checkpoint,
    restore_state,
    save_checkpoint,
)
from selfdistill.methods.ema_teacher.monitor import collapse_record, make_monitor
from selfdistill.methods.ema_teacher.networks import PretrainNetwork, build_networks
from selfdistill.methods.ema_teacher.objectives import (
    after_step,
    student_terms,
    teacher_targets,
    teacher_temperature,
)
from selfdistill.methods.ema_teacher.state import PretrainState
from selfdistill.nn.encoders import WindowClassifier
from selfdistill.nn.windows import make_windows, window_rows_within
from selfdistill.training.accumulate import accumulate
from selfdistill.training.augment import AugmentSpec, augment
from selfdistill.training.ema import make_teacher, update_ema
from selfdistill.training.loop import Callback, make_optimizer
from selfdistill.training.schedules import cosine_tau

__all__ = ["PretrainResult", "build_state", "fit_ema_teacher", "objective_name", "pretrain",
           "pretrain_loss", "pretrain_rows", "train_step", "windowed"]

log = logging.getLogger(__name__)

#: ema_teacher keys a resume may change: they only matter after pretraining, or change
#: nothing but memory and speed (accumulation equals the whole batch to float rounding)
_RESUMABLE_KEYS = {"checkpoint", "encoder", "label_fractions", "compare_objectives",
                   "compare_encoders", "accumulation_steps", "activation_checkpointing"}


@dataclass
class PretrainResult:
    """The pretrained networks and their per-epoch history."""

    student: PretrainNetwork
    teacher: PretrainNetwork
    encoder_spec: dict[str, Any]
    history: list[dict[str, float]]
    seconds: float

    def encoder(self, which: str = "teacher") -> nn.Module:
        """The pretrained encoder, ``teacher`` (default) or ``student`` (the online one)."""
        if which not in ("teacher", "student"):
            raise ValueError(f"which encoder '{which}' is not one of: teacher, student")
        encoder: nn.Module = self.teacher.encoder if which == "teacher" else self.student.encoder
        return encoder

    @property
    def collapsed(self) -> bool:
        """Whether the last epoch crossed a collapse threshold."""
        return bool(self.history and self.history[-1].get("collapsed", 0.0))


def windowed(data: TrainData, window: int) -> Tensor:
    """``data.x`` as (N, F, W) windows: strided views of (N, F) rows, or as given."""
    return data.x if data.x.dim() == 3 else make_windows(data.x, window)


def pretrain_rows(data: TrainData, window: int) -> Tensor:
    """Training rows whose whole window reads training rows only (no val / test bars)."""
    rows = data.unlabeled_rows if data.unlabeled_rows is not None else data.train_rows
    return window_rows_within(rows, rows, window)


def objective_name(e: EmaTeacherConfig) -> str:
    """``consistency`` (the form: ``byol`` / ``dino``), or the objectives with their weights.

    >>> from selfdistill.config import EmaTeacherConfig
    >>> objective_name(EmaTeacherConfig(objective={"consistency": 1.0, "masked": 0.5}))
    'byol+masked0.5'
    """
    parts = [(e.form if name == "consistency" else name) + ("" if w == 1.0 else f"{w:g}")
             for name, w in e.objective.items()]
    return "+".join(parts)


def build_state(n_features: int, n_rows: int, cfg: RunConfig, *, seed: int,
                device: torch.device | str = "cpu") -> PretrainState:
    """Fresh student, teacher, heads, loss state, optimizer and generator for ``n_rows``."""
    e = cfg.ema_teacher
    if n_rows < 2:
        raise TrainingError(f"ema_teacher pretraining needs >= 2 training windows, got {n_rows}")
    torch.manual_seed(seed)
    nets = build_networks(n_features, cfg)
    for module in (nets.student, nets.predictors, nets.dino, nets.online, nets.queue):
        if module is not None:
            module.to(device)
    trained = nn.ModuleList([nets.student, *([nets.predictors] if nets.predictors else []),
                             nets.online])
    steps = n_rows // min(e.batch_size, n_rows)  # the last partial batch is dropped
    return PretrainState(
        student=nets.student, teacher=make_teacher(nets.student), predictors=nets.predictors,
        dino=nets.dino, online=nets.online, queue=nets.queue,
        optimizer=make_optimizer(trained, kind=cfg.training.optimizer, lr=e.lr,
                                 weight_decay=e.weight_decay),
        generator=torch.Generator(device=device).manual_seed(seed),
        steps_per_epoch=steps, total_steps=steps * e.epochs)


def pretrain_loss(state: PretrainState, views: Tensor, e: EmaTeacherConfig) -> Tensor:
    """The weighted loss of every objective on ``views`` (2B, F, W): two views stacked."""
    targets = teacher_targets(state, views, e)
    return student_terms(state, targets, slice(0, len(views) // 2), e)["loss"]


def train_step(state: PretrainState, xb: Tensor, e: EmaTeacherConfig,
               spec: AugmentSpec) -> dict[str, Tensor]:
    """One optimizer step on windows ``xb`` (B, F, W), then the EMA update.

    With ``e.accumulation_steps = k`` the student runs on k micro-batches of B / k
    windows (gradients summed, weighted by size); the teacher targets, the
    optimizer step, the EMA update and the queue / center updates happen once.

    Returns:
        ``loss`` (the weighted sum) and each objective's term, detached batch means.
    """
    views = torch.cat([augment(xb, spec, generator=state.generator),
                       augment(xb, spec, generator=state.generator)])  # (2B, F, W)
    targets = teacher_targets(state, views, e)
    state.optimizer.zero_grad(set_to_none=True)
    terms = accumulate(lambda s: student_terms(state, targets, s, e), len(xb),
                       e.accumulation_steps)
    if e.grad_clip is not None:
        nn.utils.clip_grad_norm_(state.trained().parameters(), e.grad_clip)
    state.optimizer.step()
    tau = cosine_tau(state.step, total_steps=state.total_steps, tau_base=e.tau_base)
    update_ema(state.teacher, state.student, tau, buffers=e.buffers)  # after step(), explicitly
    after_step(state, targets)
    state.step += 1
    return terms


def _run_epoch(state: PretrainState, x: Tensor, rows: Tensor,
               e: EmaTeacherConfig) -> dict[str, float]:
    """One pass over the pretraining rows: the mean of each loss term over its steps."""
    spec = AugmentSpec(**e.augment.model_dump())
    bs = min(e.batch_size, len(rows))
    perm = rows[torch.randperm(len(rows), generator=state.generator,
                               device=state.generator.device).to(rows.device)]
    running: dict[str, Tensor] = {}
    for i in range(state.steps_per_epoch):
        for name, value in train_step(state, x[perm[i * bs:(i + 1) * bs]], e, spec).items():
            running[name] = running[name] + value if name in running else value
    means = {name: float(value) / state.steps_per_epoch for name, value in running.items()}
    if not math.isfinite(means["loss"]):
        raise TrainingError(f"ema_teacher pretraining loss became {means['loss']} in epoch "
                            f"{state.epoch + 1}; lower ema_teacher.lr or set ema_teacher.grad_clip")
    return means


def _monitor_rows(rows: Tensor, n: int) -> Tensor:
    """Up to ``n`` evenly spaced rows (fixed, so epochs are comparable; uses no RNG)."""
    if len(rows) <= n:
        return rows
    return rows[torch.linspace(0, len(rows) - 1, n).round().long().to(rows.device)]


def _epoch_record(state: PretrainState, losses: dict[str, float], xm: Tensor,
                  e: EmaTeacherConfig, t0: float) -> dict[str, float]:
    rec = {"epoch": float(state.epoch), "loss": losses["loss"],
           "tau": cosine_tau(state.step, total_steps=state.total_steps, tau_base=e.tau_base),
           "teacher_temperature": teacher_temperature(state, e),
           "lr": float(state.optimizer.param_groups[0]["lr"]),
           "seconds": time.perf_counter() - t0}
    rec.update({f"loss_{name}": losses.get(name, math.nan) for name in OBJECTIVES})
    rec.update(collapse_record(state, xm, losses, e))
    return rec


def _fingerprint(cfg: RunConfig, seed: int, n_rows: int) -> dict[str, Any]:
    """What must not change between a checkpoint and the run resuming from it."""
    return {"seed": seed, "rows": n_rows, "model": cfg.model.model_dump(mode="json"),
            "ema_teacher": cfg.ema_teacher.model_dump(mode="json", exclude=_RESUMABLE_KEYS),
            "optimizer": cfg.training.optimizer}


def pretrain(data: TrainData, cfg: RunConfig, *, seed: int, out_dir: str | Path | None = None,
             resume: bool = True, callbacks: Sequence[Callback] = ()) -> PretrainResult:
    """Pretrain an encoder on the training windows of ``data`` without labels.

    Args:
        data: x (N, F) rows or (N, F, W) windows; only training rows are read.
        cfg: the run config (``model`` and ``ema_teacher`` sections, ``training.optimizer``).
        seed: seeds weights, batches and augmentations.
        out_dir: where the checkpoint and ``history.json`` go after every epoch.
        resume: continue from a checkpoint in ``out_dir`` (same config required).
        callbacks: get ``on_epoch_end`` with each history record.
    """
    e, x = cfg.ema_teacher, windowed(data, cfg.model.window)
    rows = pretrain_rows(data, int(x.shape[2]))
    state = build_state(x.shape[1], len(rows), cfg, seed=seed, device=x.device)
    spec = encoder_spec_of(cfg.model, x.shape[1], x.shape[2])
    fingerprint = _fingerprint(cfg, seed, len(rows))
    if out_dir is not None and resume and (Path(out_dir) / "pretrain.json").is_file():
        restore_state(state, *read_checkpoint(out_dir), expect=fingerprint)
        log.info("resuming pretraining at epoch %d from %s", state.epoch, out_dir)
    monitor = make_monitor(cfg)
    xm = x[_monitor_rows(rows, e.monitor_rows)]  # (M, F, W): the only materialised copy
    label, t0 = f"ema_teacher pretrain ({objective_name(e)})", time.perf_counter()
    for cb in callbacks:
        cb.on_fit_begin(label, e.epochs)
    state.student.train()
    while state.epoch < e.epochs:
        losses = _run_epoch(state, x, rows, e)
        state.epoch += 1
        record = _epoch_record(state, losses, xm, e, t0)
        record["collapsed"] = float(bool(monitor.check(record, label=label)))
        state.history.append(record)
        if out_dir is not None:
            save_checkpoint(state, out_dir, fingerprint=fingerprint, encoder_spec=spec)
        for cb in callbacks:
            cb.on_epoch_end(label, record)
    for cb in callbacks:
        cb.on_fit_end(label, state.history)
    state.student.eval()
    return PretrainResult(state.student, state.teacher, spec, state.history,
                          time.perf_counter() - t0)


def fit_ema_teacher(data: TrainData, cfg: RunConfig, *, seed: int,
                    callbacks: Sequence[Callback] = ()) -> Lineage:
    """The ``ema_teacher`` method: pretrain (or load ``ema_teacher.checkpoint``), fine-tune.

    ``data.x`` must hold windows (N, F, W) so that evaluation feeds the model
    windows too: the pipeline builds them when ``model.kind`` is cnn or gru.
    """
    if data.x.dim() != 3:
        raise ConfigError("ema_teacher trains a window encoder: set model.kind to cnn or gru so "
                          f"that the inputs are windows (N, F, W); got x of shape "
                          f"{tuple(data.x.shape)}")
    e = cfg.ema_teacher
    info: dict[str, Any] = {}
    source: str | nn.Module
    if e.checkpoint:
        source = e.checkpoint
    else:
        result = pretrain(data, cfg, seed=derive_seed(seed, "ema_teacher", "pretrain"),
                          callbacks=callbacks)
        source = result.encoder(e.downstream_encoder())
        info = {"pretrain_seconds": result.seconds, "pretrain_collapsed": result.collapsed,
                "pretrain_encoder": e.downstream_encoder()}
    ft_seed = derive_seed(seed, "ema_teacher", "finetune")
    torch.manual_seed(ft_seed)
    model = WindowClassifier(data.n_features, data.n_classes, kind=cfg.model.kind,
                             window=int(data.x.shape[2]), hidden=cfg.model.hidden,
                             activation=cfg.model.activation, dropout=cfg.model.dropout)
    init_from_pretrained(model, source, which=e.encoder)  # auto: the checkpoint's form decides
    model.to(data.device)
    tuned = train_model(model, data, cfg, hard_ce_loss(data.y), seed=ft_seed,
                        label="ema_teacher finetune", callbacks=callbacks)
    member = Member({"generation": None}, freeze(model), tuned.history,
                    info={"epochs": tuned.epochs_run, "seconds": tuned.seconds,
                          "best_epoch": tuned.best_epoch})
    return Lineage("ema_teacher", [member], info=info)

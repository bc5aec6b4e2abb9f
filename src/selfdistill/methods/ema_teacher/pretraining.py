"""Self-supervised pretraining of a window encoder with an EMA teacher (BYOL / DINO).

The student is an encoder plus H projection heads (plus H predictors in the
BYOL form); the teacher is a frozen copy that follows the student by
``theta_t <- tau * theta_t + (1 - tau) * theta_s`` once per optimizer step,
right after it, with ``tau`` on a per-step cosine schedule from
``ema_teacher.tau_base`` to 1. Each step draws two augmented views of a batch
of training windows; the student sees both (one forward of 2B windows), the
teacher sees both under ``no_grad``, and the loss is summed over heads:

- ``byol``: the student's prediction for view a matches the teacher's
  projection of view b (stop-gradient), divergence ``l2`` / ``cosine`` / ``kl``.
- ``dino``: cross-entropy from the teacher's centred, sharpened distribution
  over K prototypes (temperature warmed up 0.04 -> 0.07) to the student's (0.1).

Pretraining reads training windows only: the rows of ``TrainData.unlabeled_rows``
(training bars) whose whole window lies inside those rows. Collapse metrics
(see :mod:`selfdistill.methods.ema_teacher.collapse`) are logged in the history every epoch.
``fit_ema_teacher`` is the method the pipeline runs: pretrain, then fine-tune a
:class:`~selfdistill.nn.encoders.WindowClassifier` from the teacher's encoder.

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
from selfdistill.errors import ConfigError, TrainingError
from selfdistill.losses.consistency import DINOLoss, byol_loss, teacher_probabilities
from selfdistill.methods.base import Lineage, Member, TrainData
from selfdistill.methods.common import derive_seed, freeze, hard_ce_loss, train_model
from selfdistill.methods.ema_teacher.checkpoint import (
    encoder_spec_of,
    init_from_pretrained,
    read_checkpoint,
    restore_state,
    save_checkpoint,
)
from selfdistill.methods.ema_teacher.collapse import (
    CollapseMonitor,
    effective_rank,
    embedding_std,
    loss_at_uniform,
    marginal_entropy,
    teacher_entropy,
)
from selfdistill.methods.ema_teacher.state import PretrainState
from selfdistill.nn.encoders import ENCODER_KINDS, WindowClassifier, build_encoder
from selfdistill.nn.heads import DINOHead, EncoderWithHeads, MLPHead, MultiHead
from selfdistill.nn.windows import make_windows, window_rows_within
from selfdistill.training.augment import AugmentSpec, augment
from selfdistill.training.ema import linear_warmup, make_teacher, update_ema
from selfdistill.training.loop import Callback, make_optimizer
from selfdistill.training.schedules import cosine_tau

__all__ = ["PretrainResult", "build_state", "fit_ema_teacher", "pretrain",
           "pretrain_rows", "windowed"]

log = logging.getLogger(__name__)

#: ema_teacher keys that only matter after pretraining (a resume may change them)
_DOWNSTREAM_KEYS = {"checkpoint", "encoder", "label_fractions"}


@dataclass
class PretrainResult:
    """The pretrained networks and their per-epoch history."""

    student: EncoderWithHeads
    teacher: EncoderWithHeads
    encoder_spec: dict[str, Any]
    history: list[dict[str, float]]
    seconds: float

    def encoder(self, which: str = "teacher") -> nn.Module:
        """The pretrained encoder, ``teacher`` (default) or ``student``."""
        if which not in ("teacher", "student"):
            raise ValueError(f"which encoder '{which}' is not one of: teacher, student")
        return self.teacher.encoder if which == "teacher" else self.student.encoder

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


def _networks(n_features: int, cfg: RunConfig) -> tuple[EncoderWithHeads, MultiHead | None,
                                                  nn.ModuleList | None]:
    m, e = cfg.model, cfg.ema_teacher
    if m.kind not in ENCODER_KINDS:
        raise ConfigError(f"ema_teacher pretrains a window encoder: model.kind must be one of "
                          f"{', '.join(ENCODER_KINDS)}, got '{m.kind}'")
    enc = build_encoder(m.kind, n_features, hidden=m.hidden, activation=m.activation,
                        dropout=m.dropout)
    if e.form == "byol":
        heads = MultiHead(lambda h: MLPHead(enc.dim, e.projection_dim, hidden=e.projection_hidden,
                                            norm=e.head_norm), e.heads)
        preds = MultiHead(lambda h: MLPHead(e.projection_dim, e.projection_dim,
                                            hidden=e.predictor_hidden, norm=e.head_norm), e.heads)
        return EncoderWithHeads(enc, heads), preds, None
    heads = MultiHead(lambda h: DINOHead(enc.dim, e.prototypes, hidden=e.projection_hidden,
                                         bottleneck=e.bottleneck, norm=e.head_norm), e.heads)
    dino = nn.ModuleList(DINOLoss(e.prototypes, center_momentum=e.center_momentum,
                                  centering=e.centering) for _ in range(e.heads))
    return EncoderWithHeads(enc, heads), None, dino


def build_state(n_features: int, n_rows: int, cfg: RunConfig, *, seed: int,
                device: torch.device | str = "cpu") -> PretrainState:
    """Fresh student, teacher, heads, optimizer and generator for ``n_rows`` windows."""
    e = cfg.ema_teacher
    if n_rows < 2:
        raise TrainingError(f"ema_teacher pretraining needs >= 2 training windows, got {n_rows}")
    torch.manual_seed(seed)
    student, predictors, dino = _networks(n_features, cfg)
    student.to(device)
    for extra in (predictors, dino):
        if extra is not None:
            extra.to(device)
    steps = n_rows // min(e.batch_size, n_rows)  # the last partial batch is dropped
    online = nn.ModuleList([student, *([predictors] if predictors else [])])
    return PretrainState(
        student=student, teacher=make_teacher(student), predictors=predictors, dino=dino,
        optimizer=make_optimizer(online, kind=cfg.training.optimizer, lr=e.lr,
                                 weight_decay=e.weight_decay),
        generator=torch.Generator(device=device).manual_seed(seed),
        steps_per_epoch=steps, total_steps=steps * e.epochs)


def _teacher_temperature(state: PretrainState, e: EmaTeacherConfig) -> float:
    return linear_warmup(state.step, start=e.teacher_temperature,
                         end=e.teacher_temperature_final,
                         warmup_steps=e.teacher_temperature_warmup_epochs * state.steps_per_epoch)


def _loss(state: PretrainState, views: Tensor, e: EmaTeacherConfig) -> Tensor:
    """Loss summed over heads for ``views`` (2B, F, W): the two views stacked."""
    _, outs_s = state.student(views)  # H x (2B, P)
    with torch.no_grad():
        _, outs_t = state.teacher(views)
    total = views.new_zeros(())
    if state.predictors is not None:
        for pred, o_s, o_t in zip(state.predictors.heads, outs_s, outs_t, strict=True):
            total = total + byol_loss(pred(o_s).chunk(2), o_t.chunk(2), divergence=e.divergence,
                                      student_temperature=e.student_temperature,
                                      teacher_temperature=e.teacher_temperature)
        return total
    assert state.dino is not None
    t_temp = _teacher_temperature(state, e)
    for dino, o_s, o_t in zip(state.dino, outs_s, outs_t, strict=True):
        total = total + dino(o_s.chunk(2), o_t.chunk(2), student_temperature=e.student_temperature,
                             teacher_temperature=t_temp)
    return total


def train_step(state: PretrainState, xb: Tensor, e: EmaTeacherConfig, spec: AugmentSpec) -> Tensor:
    """One optimizer step on windows ``xb`` (B, F, W), then the EMA update; returns the loss."""
    views = torch.cat([augment(xb, spec, generator=state.generator),
                       augment(xb, spec, generator=state.generator)])  # (2B, F, W)
    loss = _loss(state, views, e)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if e.grad_clip is not None:
        nn.utils.clip_grad_norm_(state.online().parameters(), e.grad_clip)
    state.optimizer.step()
    tau = cosine_tau(state.step, total_steps=state.total_steps, tau_base=e.tau_base)
    update_ema(state.teacher, state.student, tau, buffers=e.buffers)  # after step(), explicitly
    state.step += 1
    return loss.detach()


def _run_epoch(state: PretrainState, x: Tensor, rows: Tensor, e: EmaTeacherConfig) -> float:
    spec = AugmentSpec(**e.augment.model_dump())
    bs = min(e.batch_size, len(rows))
    perm = rows[torch.randperm(len(rows), generator=state.generator,
                               device=state.generator.device).to(rows.device)]
    running = torch.zeros((), device=x.device)
    for i in range(state.steps_per_epoch):
        running += train_step(state, x[perm[i * bs:(i + 1) * bs]], e, spec)
    loss = float(running) / state.steps_per_epoch
    if not math.isfinite(loss):
        raise TrainingError(f"ema_teacher pretraining loss became {loss} in epoch "
                            f"{state.epoch + 1}; lower ema_teacher.lr or set ema_teacher.grad_clip")
    return loss


@torch.no_grad()
def _collapse_record(state: PretrainState, xm: Tensor, loss: float,
                     e: EmaTeacherConfig) -> dict[str, float]:
    state.student.eval()
    z = state.student.encoder(xm)  # (M, D)
    state.student.train()
    rec = {"embedding_std": embedding_std(z), "effective_rank": effective_rank(z),
           "teacher_entropy": math.nan, "teacher_marginal_entropy": math.nan,
           "loss_at_uniform": math.nan}
    if state.dino is not None:
        _, outs = state.teacher(xm)
        t_temp = _teacher_temperature(state, e)
        centers = [d.center for d in state.dino if isinstance(d, DINOLoss)]
        probs = [teacher_probabilities(o, c, temperature=t_temp)
                 for o, c in zip(outs, centers, strict=True)]
        rec["teacher_entropy"] = sum(map(teacher_entropy, probs)) / len(probs)
        rec["teacher_marginal_entropy"] = sum(map(marginal_entropy, probs)) / len(probs)
        rec["loss_at_uniform"] = float(loss_at_uniform(loss / len(probs), e.prototypes))
    return rec


def _monitor_rows(rows: Tensor, n: int) -> Tensor:
    """Up to ``n`` evenly spaced rows (fixed, so epochs are comparable; uses no RNG)."""
    if len(rows) <= n:
        return rows
    return rows[torch.linspace(0, len(rows) - 1, n).round().long().to(rows.device)]


def _epoch_record(state: PretrainState, loss: float, xm: Tensor, e: EmaTeacherConfig,
                  t0: float) -> dict[str, float]:
    rec = {"epoch": float(state.epoch), "loss": loss,
           "tau": cosine_tau(state.step, total_steps=state.total_steps, tau_base=e.tau_base),
           "teacher_temperature": _teacher_temperature(state, e),
           "lr": float(state.optimizer.param_groups[0]["lr"]),
           "seconds": time.perf_counter() - t0}
    rec.update(_collapse_record(state, xm, loss, e))
    return rec


def _fingerprint(cfg: RunConfig, seed: int, n_rows: int) -> dict[str, Any]:
    """What must not change between a checkpoint and the run resuming from it."""
    return {"seed": seed, "rows": n_rows, "model": cfg.model.model_dump(mode="json"),
            "ema_teacher": cfg.ema_teacher.model_dump(mode="json", exclude=_DOWNSTREAM_KEYS),
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
    monitor = CollapseMonitor(cfg.model.hidden[-1], e.prototypes if e.form == "dino" else None)
    xm = x[_monitor_rows(rows, e.monitor_rows)]  # (M, F, W): the only materialised copy
    label, t0 = f"ema_teacher pretrain ({e.form})", time.perf_counter()
    for cb in callbacks:
        cb.on_fit_begin(label, e.epochs)
    state.student.train()
    while state.epoch < e.epochs:
        loss = _run_epoch(state, x, rows, e)
        state.epoch += 1
        record = _epoch_record(state, loss, xm, e, t0)
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
        source = result.encoder(e.encoder)
        info = {"pretrain_seconds": result.seconds, "pretrain_collapsed": result.collapsed}
    ft_seed = derive_seed(seed, "ema_teacher", "finetune")
    torch.manual_seed(ft_seed)
    model = WindowClassifier(data.n_features, data.n_classes, kind=cfg.model.kind,
                             window=int(data.x.shape[2]), hidden=cfg.model.hidden,
                             activation=cfg.model.activation, dropout=cfg.model.dropout)
    init_from_pretrained(model, source, which=e.encoder)
    model.to(data.device)
    tuned = train_model(model, data, cfg, hard_ce_loss(data.y), seed=ft_seed,
                        label="ema_teacher finetune", callbacks=callbacks)
    member = Member({"generation": None}, freeze(model), tuned.history,
                    info={"epochs": tuned.epochs_run, "seconds": tuned.seconds,
                          "best_epoch": tuned.best_epoch})
    return Lineage("ema_teacher", [member], info=info)

"""The one minibatch training loop.

Data lives in memory as tensors and is sliced by a permuted index: on CPU a
``DataLoader`` per step costs more than a small model (see REFERENCES.md).
Methods compose this loop with their losses; generations and snapshot cycles
are loops *around* :func:`fit`, never branches inside it.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfdistill.config import TrainingConfig
from selfdistill.errors import TrainingError
from selfdistill.training.accumulate import accumulate
from selfdistill.training.callbacks import Callback

__all__ = [
    "Callback",
    "FitResult",
    "FitSettings",
    "LossFn",
    "ValFn",
    "evaluate_loss",
    "fit",
    "make_optimizer",
    "predict_logits",
    "probabilities",
]

log = logging.getLogger(__name__)

#: ``loss_fn(model, xb, rows) -> scalar``; ``rows`` are the batch's row indices
#: into the full data, so cached targets (teacher probabilities) are looked up by them.
LossFn = Callable[[nn.Module, Tensor, Tensor], Tensor]
#: ``val_fn(model, xb, yb) -> (B,) per-sample validation loss``.
ValFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class FitSettings:
    """How :func:`fit` trains: everything but the model, the data, the loss and the state.

    Attributes:
        epochs: passes over the training rows.
        batch_size: rows per optimizer step (an epoch's last batch may be smaller).
        patience: stop after this many epochs without a better validation loss
            (0 = never stop early).
        restore_best: with ``patience > 0``, put back the weights of the best validation
            epoch at the end, so selection uses validation rows only.
        grad_clip: max gradient norm (None: no clipping).
        accumulation_steps: micro-batches per optimizer step (1: the whole batch at once;
            see :mod:`selfdistill.training.accumulate`).
        lr_at: learning rate as a pure function of the global step (None: the optimizer's).
        start_step: global step this call starts at (for schedules across calls).
        label: names this fit in callbacks, logs and errors (e.g. "born_again gen 2").
    """

    epochs: int
    batch_size: int
    patience: int = 0
    restore_best: bool = True
    grad_clip: float | None = None
    accumulation_steps: int = 1
    lr_at: Callable[[int], float] | None = None
    start_step: int = 0
    label: str = "fit"

    @classmethod
    def from_config(cls, training: TrainingConfig, *, label: str,
                    **changes: Any) -> FitSettings:
        """Epochs, batch size, patience and clipping of a ``training`` section, then ``changes``."""
        settings = cls(epochs=training.epochs, batch_size=training.batch_size,
                       patience=training.patience, grad_clip=training.grad_clip, label=label)
        return replace(settings, **changes)


@dataclass
class FitResult:
    """What one call of :func:`fit` did.

    Attributes:
        history: one record per epoch run (``epoch``, ``train_loss``, ``val_loss``,
            ``lr``, ``seconds``).
        best_epoch: the 1-based epoch whose weights the model holds on return: the best
            validation epoch when its weights were restored, else the last epoch run
            (0 when no epoch ran).
        best_val_loss: the validation loss of those weights (NaN without validation rows).
        epochs_run / steps / seconds: epochs and optimizer steps taken, wall time.
    """

    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    steps: int
    seconds: float


def make_optimizer(model: nn.Module, *, kind: str, lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """Adam / AdamW over trainable parameters (fused on CPU and CUDA when available)."""
    params = [p for p in model.parameters() if p.requires_grad]
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(kind)
    if cls is None:
        raise ValueError(f"optimizer '{kind}' is not one of: adam, adamw")
    try:
        return cls(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # fused unsupported for this device / dtype
        return cls(params, lr=lr, weight_decay=weight_decay)


def _hard_ce(model: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
    logits = model(xb)
    return F.cross_entropy(logits, yb, reduction="none")


@torch.no_grad()
def evaluate_loss(model: nn.Module, x: Tensor, y: Tensor, rows: Tensor,
                  val_fn: ValFn | None = None, batch_size: int = 8192) -> float:
    """Mean per-sample validation loss over ``rows`` (model in eval mode)."""
    fn = val_fn or _hard_ce
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for start in range(0, len(rows), batch_size):
        r = rows[start:start + batch_size]
        total += float(fn(model, x[r], y[r]).sum())
        n += len(r)
    model.train(was_training)
    return total / max(n, 1)


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, rows: Tensor | None = None,
                   batch_size: int = 8192) -> Tensor:
    """Logits for ``x[rows]`` (all rows when None), model in eval mode, batched."""
    was_training = model.training
    model.eval()
    n = x.shape[0] if rows is None else len(rows)
    outs = []
    for start in range(0, n, batch_size):
        xb = x[start:start + batch_size] if rows is None else x[rows[start:start + batch_size]]
        outs.append(model(xb))
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def probabilities(logits: Tensor, *, temperature: float = 1.0) -> np.ndarray:
    """(B, C) float64 NumPy probabilities ``softmax(logits / temperature)`` of (B, C) logits.

    Computed by ``torch.softmax`` in float64: the one conversion from a network's
    logits to the probabilities that metrics, selection and predictions read.
    """
    probs: np.ndarray = torch.softmax(logits.double() / temperature, dim=-1).cpu().numpy()
    return probs


class _BestEpoch:
    """The best validation epoch so far and, when ``keep``, a copy of its weights."""

    def __init__(self, model: nn.Module, *, keep: bool) -> None:
        self.model, self.keep = model, keep
        self.loss, self.epoch, self.bad_epochs = math.inf, -1, 0
        self.state: dict[str, Any] | None = None

    def update(self, epoch: int, val_loss: float) -> None:
        """Record epoch ``epoch`` (0-based); an improvement must beat the best by 1e-6."""
        if val_loss < self.loss - 1e-6:
            self.loss, self.epoch, self.bad_epochs = val_loss, epoch, 0
            if self.keep:
                self.state = copy.deepcopy(self.model.state_dict())
        else:
            self.bad_epochs += 1


def _batch_loss(loss_fn: LossFn, model: nn.Module, xb: Tensor, rows: Tensor,
                s: slice) -> dict[str, Tensor]:
    """The loss of micro-batch ``s`` of a batch (all of it when ``s`` covers it)."""
    return {"loss": loss_fn(model, xb[s], rows[s])}


def _train_epoch(model: nn.Module, x: Tensor, train_rows: Tensor, loss_fn: LossFn,
                 optimizer: torch.optim.Optimizer, generator: torch.Generator,
                 settings: FitSettings, step: int) -> tuple[float, int]:
    """One pass over ``train_rows`` in a fresh random order: (mean training loss, next step)."""
    n = len(train_rows)
    perm = train_rows[torch.randperm(n, generator=generator).to(train_rows.device)]
    running = torch.zeros((), device=x.device)
    for start in range(0, n, settings.batch_size):
        rows = perm[start:start + settings.batch_size]
        if settings.lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = settings.lr_at(step)
        # index_select: about half the cost of x[rows] for a small batch on CPU
        xb = x.index_select(0, rows)
        optimizer.zero_grad(set_to_none=True)
        loss = accumulate(partial(_batch_loss, loss_fn, model, xb, rows), len(rows),
                          settings.accumulation_steps)["loss"]
        if settings.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        running += loss.detach() * len(rows)
        step += 1
    return float(running) / n, step


def fit(
    model: nn.Module,
    *,
    x: Tensor,
    y: Tensor,
    train_rows: Tensor,
    val_rows: Tensor,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    settings: FitSettings,
    val_fn: ValFn | None = None,
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train ``model`` in place with minibatches of ``x[train_rows]``.

    Args:
        x: (N, ...) inputs for every row; batches are ``x[rows]``.
        y: (N,) int64 hard labels (used by the default validation loss).
        train_rows / val_rows: int64 row indices into ``x``.
        loss_fn: ``loss_fn(model, xb, rows) -> scalar`` training loss.
        optimizer / generator: stepped and drawn from in place, so calls can share them
            (snapshot cycles continue one optimizer).
        settings: epochs, batch size, early stopping, clipping, schedule, label.
        val_fn: per-sample validation loss (default: cross-entropy on ``y``).
        callbacks: told when the fit begins, after every epoch and when it ends.

    Returns:
        The history, and the epoch (and its validation loss) whose weights ``model``
        holds: the best validation epoch when restored, else the last one.
    """
    s = settings
    for cb in callbacks:
        cb.on_fit_begin(s.label, s.epochs)
    train_rows = train_rows.to(x.device)  # index_select needs the index on x's device
    if len(train_rows) == 0:
        raise TrainingError(f"{s.label}: no training rows")
    history: list[dict[str, float]] = []
    best = _BestEpoch(model, keep=s.restore_best and s.patience > 0)
    step, t0 = s.start_step, time.perf_counter()
    model.train()
    for epoch in range(s.epochs):
        train_loss, step = _train_epoch(model, x, train_rows, loss_fn, optimizer, generator,
                                        s, step)
        if not math.isfinite(train_loss):
            raise TrainingError(f"{s.label}: training loss became {train_loss} at epoch "
                                f"{epoch + 1}; lower training.lr or set training.grad_clip")
        val_loss = evaluate_loss(model, x, y, val_rows, val_fn) if len(val_rows) else math.nan
        history.append({"epoch": float(epoch + 1), "train_loss": train_loss,
                        "val_loss": val_loss, "lr": float(optimizer.param_groups[0]["lr"]),
                        "seconds": time.perf_counter() - t0})
        for cb in callbacks:
            cb.on_epoch_end(s.label, history[-1])
        best.update(epoch, val_loss)
        if s.patience > 0 and best.bad_epochs >= s.patience:
            log.debug("%s: early stop at epoch %d", s.label, epoch + 1)
            break
    returned = len(history)  # 1-based epoch of the weights the model holds
    if best.state is not None:
        model.load_state_dict(best.state)
        returned = best.epoch + 1
    for cb in callbacks:
        cb.on_fit_end(s.label, history)
    model.eval()
    return FitResult(history=history, best_epoch=returned,
                     best_val_loss=history[returned - 1]["val_loss"] if history else math.nan,
                     epochs_run=len(history), steps=step - s.start_step,
                     seconds=time.perf_counter() - t0)

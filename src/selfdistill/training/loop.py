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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfdistill.errors import TrainingError
from selfdistill.training.callbacks import Callback

__all__ = [
    "Callback",
    "FitResult",
    "LossFn",
    "ValFn",
    "evaluate_loss",
    "fit",
    "make_optimizer",
    "predict_logits",
]

log = logging.getLogger(__name__)

#: ``loss_fn(model, xb, rows) -> scalar``; ``rows`` are the batch's row indices
#: into the full data, so cached targets (teacher probabilities) are looked up by them.
LossFn = Callable[[nn.Module, Tensor, Tensor], Tensor]
#: ``val_fn(model, xb, yb) -> (B,) per-sample validation loss``.
ValFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass
class FitResult:
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


def fit(
    model: nn.Module,
    *,
    x: Tensor,
    y: Tensor,
    train_rows: Tensor,
    val_rows: Tensor,
    loss_fn: LossFn,
    epochs: int,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    patience: int = 0,
    val_fn: ValFn | None = None,
    lr_at: Callable[[int], float] | None = None,
    grad_clip: float | None = None,
    callbacks: Sequence[Callback] = (),
    label: str = "fit",
    restore_best: bool = True,
    start_step: int = 0,
) -> FitResult:
    """Train ``model`` in place with minibatches of ``x[train_rows]``.

    Args:
        x: (N, ...) inputs for every row; batches are ``x[rows]``.
        y: (N,) int64 hard labels (used by the default validation loss).
        train_rows / val_rows: int64 row indices into ``x``.
        loss_fn: ``loss_fn(model, xb, rows) -> scalar`` training loss.
        patience: stop after this many epochs without a better validation loss
            (0 = never stop early). With ``restore_best`` the best weights are
            put back at the end, so selection uses validation rows only.
        lr_at: learning rate as a pure function of the global step (optional).
        start_step: global step this call starts at (for schedules across calls).
    """
    for cb in callbacks:
        cb.on_fit_begin(label, epochs)
    train_rows = train_rows.to(x.device)  # index_select needs the index on x's device
    n = len(train_rows)
    if n == 0:
        raise TrainingError(f"{label}: no training rows")
    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_state = math.inf, -1, None
    bad_epochs, step = 0, start_step
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        perm = train_rows[torch.randperm(n, generator=generator).to(train_rows.device)]
        running = torch.zeros((), device=x.device)
        for start in range(0, n, batch_size):
            rows = perm[start:start + batch_size]
            if lr_at is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
            # index_select: about half the cost of x[rows] for a small batch on CPU
            loss = loss_fn(model, x.index_select(0, rows), rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            running += loss.detach() * len(rows)
            step += 1
        train_loss = float(running) / n
        if not math.isfinite(train_loss):
            raise TrainingError(
                f"{label}: training loss became {train_loss} at epoch {epoch + 1}; "
                "lower training.lr or set training.grad_clip"
            )
        val_loss = evaluate_loss(model, x, y, val_rows, val_fn) if len(val_rows) else math.nan
        record = {"epoch": float(epoch + 1), "train_loss": train_loss, "val_loss": val_loss,
                  "lr": float(optimizer.param_groups[0]["lr"]),
                  "seconds": time.perf_counter() - t0}
        history.append(record)
        for cb in callbacks:
            cb.on_epoch_end(label, record)
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
            if restore_best and patience > 0:
                best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if patience > 0 and bad_epochs >= patience:
                log.debug("%s: early stop at epoch %d", label, epoch + 1)
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    for cb in callbacks:
        cb.on_fit_end(label, history)
    model.eval()
    return FitResult(history=history, best_epoch=best_epoch + 1, best_val_loss=best_loss,
                     epochs_run=len(history), steps=step - start_step,
                     seconds=time.perf_counter() - t0)


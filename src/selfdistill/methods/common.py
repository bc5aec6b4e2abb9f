"""Pieces every supervised method shares: seeding, model building, one training call."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfdistill.config import RunConfig
from selfdistill.methods.base import TrainData
from selfdistill.nn.registry import build_model
from selfdistill.softmax import nll
from selfdistill.training.loop import (
    Callback,
    FitResult,
    FitSettings,
    LossFn,
    fit,
    make_optimizer,
)

__all__ = ["derive_seed", "freeze", "fresh_model", "hard_ce_loss", "train_model", "val_nll"]


def derive_seed(seed: int, *parts: object) -> int:
    """A reproducible 31-bit seed from the run seed and names (method, generation, ...)."""
    text = "/".join(str(p) for p in (seed, *parts))
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def fresh_model(data: TrainData, cfg: RunConfig, seed: int) -> nn.Module:
    """A newly initialised model from ``cfg.model`` (weights drawn from ``seed``).

    A window classifier starts from the pretrained encoder of
    ``ema_teacher.checkpoint`` when one is given (its head stays random).
    """
    torch.manual_seed(seed)
    model = build_model(cfg.model, data.n_features, data.n_classes)
    checkpoint = cfg.ema_teacher.checkpoint
    if checkpoint:
        from selfdistill.methods.ema_teacher.checkpoint import init_from_pretrained
        from selfdistill.nn.encoders import WindowClassifier

        if isinstance(model, WindowClassifier):
            init_from_pretrained(model, checkpoint, which=cfg.ema_teacher.encoder)
    return model.to(data.device)


def freeze(model: nn.Module) -> nn.Module:
    """Teachers and finished members: eval mode, no gradients, never in an optimizer."""
    model.eval()
    model.requires_grad_(False)
    return model


def hard_ce_loss(y: Tensor, *, label_smoothing: float = 0.0) -> LossFn:
    """Cross-entropy on hard labels looked up by row index."""

    def loss_fn(model: nn.Module, xb: Tensor, rows: Tensor) -> Tensor:
        return F.cross_entropy(model(xb), y.index_select(0, rows),
                               label_smoothing=label_smoothing)

    return loss_fn


def train_model(model: nn.Module, data: TrainData, cfg: RunConfig, loss_fn: LossFn, *,
                seed: int, label: str, callbacks: Sequence[Callback] = ()) -> FitResult:
    """Train with the ``training`` section's optimizer, epochs, batch size and patience."""
    tr = cfg.training
    optimizer = make_optimizer(model, kind=tr.optimizer, lr=tr.lr, weight_decay=tr.weight_decay)
    return fit(model, x=data.x, y=data.y, train_rows=data.train_rows, val_rows=data.val_rows,
               loss_fn=loss_fn, optimizer=optimizer,
               generator=torch.Generator().manual_seed(seed),
               settings=FitSettings.from_config(tr, label=label), callbacks=callbacks)


def val_nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of hard labels under (N, C) probabilities.

    The ``nll`` of the metrics (:func:`selfdistill.softmax.nll`), so a member chosen
    on validation NLL is the one the metrics call best.
    """
    return nll(probs, y)

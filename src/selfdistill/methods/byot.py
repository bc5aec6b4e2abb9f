"""Be Your Own Teacher: one multi-exit network whose deepest exit teaches the others.

A :class:`~selfdistill.nn.multi_exit.MultiExitMLP` (an exit after every block
of ``model.hidden``) trains once with :func:`~selfdistill.losses.byot.byot_loss`:
CE on every exit, KL from the detached deepest exit to each shallower one, and
L2 hints through the model's adapters. The lineage then has

* one member per exit, keyed ``{"exit": 1}`` (shallowest) .. ``{"exit": depth}``;
* a derived row ``{"exit": "ensemble"}``: the mean of the exits' probabilities;
* one derived row per ``byot.thresholds`` value ``thr``, keyed
  ``{"exit": "early_exit@<thr>"}``: each sample takes the first exit whose max
  probability is >= ``thr`` (the deepest when none does); its extra fields are
  the share of samples leaving at each exit (``exit_share_<i>``) and the mean
  exit depth (``mean_exit_depth``).

Latency per sample (microseconds, one sample at a time) of each exit and of
each early-exit threshold is measured on validation rows and kept in
``Lineage.info`` (``latency_us_exit_<i>``, ``latency_us_early_exit@<thr>``),
outside the deterministic metrics.

References:
    Zhang et al. Be Your Own Teacher: Improve the Performance of Convolutional
    Neural Networks via Self Distillation. ICCV 2019.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfdistill.config import ByotConfig, RunConfig
from selfdistill.errors import ConfigError
from selfdistill.losses import byot_loss
from selfdistill.methods.base import Derived, Lineage, Member, TrainData
from selfdistill.methods.born_again import mean_probabilities
from selfdistill.methods.common import derive_seed, freeze, val_nll
from selfdistill.nn.multi_exit import MultiExitMLP
from selfdistill.training.loop import (
    Callback,
    FitResult,
    FitSettings,
    LossFn,
    fit,
    make_optimizer,
)

__all__ = [
    "build_multi_exit",
    "early_exit_choice",
    "early_exit_probabilities",
    "exit_shares",
    "fit_byot",
    "measure_latency",
]

log = logging.getLogger(__name__)


def early_exit_choice(probs: Sequence[np.ndarray], threshold: float) -> np.ndarray:
    """(B,) 0-based exit each sample leaves at: the first whose max probability >= threshold.

    Args:
        probs: one (B, C) probability array per exit, shallowest first.
        threshold: confidence needed to leave early; samples that never reach it
            leave at the deepest exit (so 0.0 always picks the first exit, and 1.0
            the deepest unless a shallower probability is exactly 1).
    """
    if len(probs) == 1:
        return np.zeros(probs[0].shape[0], dtype=np.int64)
    confidence = np.stack([p.max(axis=1) for p in probs[:-1]])  # (D - 1, B)
    passed = confidence >= threshold
    return np.where(passed.any(axis=0), passed.argmax(axis=0), len(probs) - 1).astype(np.int64)


def early_exit_probabilities(probs: Sequence[np.ndarray], threshold: float) -> np.ndarray:
    """(B, C) probabilities of the exit each sample leaves at (see :func:`early_exit_choice`)."""
    choice = early_exit_choice(probs, threshold)
    return np.stack(probs)[choice, np.arange(len(choice))]  # (B, C)


def exit_shares(probs: Sequence[np.ndarray], threshold: float) -> dict[str, float]:
    """Share of samples leaving at each exit (``exit_share_<i>``) and ``mean_exit_depth``."""
    choice = early_exit_choice(probs, threshold)
    counts = np.bincount(choice, minlength=len(probs))
    shares = counts / max(len(choice), 1)
    out = {f"exit_share_{i + 1}": float(s) for i, s in enumerate(shares)}
    out["mean_exit_depth"] = float((choice + 1).mean()) if len(choice) else float("nan")
    return out


def build_multi_exit(data: TrainData, cfg: RunConfig, seed: int) -> MultiExitMLP:
    """A fresh multi-exit network with the backbone of ``cfg.model`` (weights from ``seed``)."""
    mc = cfg.model
    if mc.kind != "mlp":
        raise ConfigError(f"byot builds its multi-exit network on an MLP backbone; "
                          f"model.kind must be 'mlp', got '{mc.kind}'")
    if len(mc.hidden) < 2 or data.x.ndim != 2:
        raise ConfigError(f"byot needs at least 2 blocks (an exit after each) on (N, F) "
                          f"features; model.hidden is {list(mc.hidden)}")
    torch.manual_seed(seed)
    model = MultiExitMLP(data.n_features, data.n_classes, hidden=mc.hidden,
                         activation=mc.activation, dropout=mc.dropout,
                         bottleneck=cfg.byot.bottleneck)
    return model.to(data.device)


def _loss(y: Tensor, bc: ByotConfig) -> LossFn:
    """The BYOT loss of a batch, with hard labels looked up by row."""

    def loss_fn(model: nn.Module, xb: Tensor, rows: Tensor) -> Tensor:
        net = cast(MultiExitMLP, model)
        out = net(xb)
        return byot_loss(out.logits, y[rows], net.hint_features(out.features),
                         temperature=bc.temperature, ce_weight=bc.ce_weight,
                         kd_weight=bc.kd_weight, hint_weight=bc.hint_weight)

    return loss_fn


def _mean_exit_ce(model: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
    """(B,) validation loss: per-sample CE averaged over the exits."""
    logits = model(xb).logits
    return torch.stack([F.cross_entropy(z, yb, reduction="none") for z in logits]).mean(0)


def _train(model: MultiExitMLP, data: TrainData, cfg: RunConfig, *, seed: int,
           callbacks: Sequence[Callback]) -> FitResult:
    tr = cfg.training
    optimizer = make_optimizer(model, kind=tr.optimizer, lr=tr.lr, weight_decay=tr.weight_decay)
    return fit(model, x=data.x, y=data.y, train_rows=data.train_rows, val_rows=data.val_rows,
               loss_fn=_loss(data.y, cfg.byot), val_fn=_mean_exit_ce, optimizer=optimizer,
               generator=torch.Generator().manual_seed(seed),
               settings=FitSettings.from_config(tr, label="byot"), callbacks=callbacks)


def _per_sample_us(fn: Callable[[Tensor], object], samples: Tensor) -> float:
    """Mean wall time of ``fn`` on one sample at a time, in microseconds."""
    for i in range(min(10, len(samples))):  # warm-up
        fn(samples[i:i + 1])
    if samples.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(len(samples)):
        fn(samples[i:i + 1])
    if samples.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / len(samples) * 1e6


@torch.inference_mode()
def measure_latency(model: MultiExitMLP, x: Tensor, rows: Tensor, thresholds: Sequence[float],
                    *, n_samples: int = 200) -> dict[str, float]:
    """Latency per sample (batch size 1, microseconds) of each exit and each threshold.

    Exit ``i`` runs only blocks ``1..i`` and its head; early exit stops at the
    first confident exit. Keys: ``latency_us_exit_<i>``, ``latency_us_early_exit@<thr>``.
    """
    samples = x[rows[:n_samples]]
    if n_samples <= 0 or len(samples) == 0:
        return {}
    model.eval()
    out = {f"latency_us_exit_{i + 1}": _per_sample_us(partial(model.forward_exit, index=i),
                                                      samples)
           for i in range(model.depth)}
    for thr in thresholds:
        out[f"latency_us_early_exit@{thr}"] = _per_sample_us(
            partial(model.early_exit, threshold=thr), samples)
    return out


def _derived_rows(thresholds: Sequence[float]) -> list[Derived]:
    rows = [Derived("byot", {"exit": "ensemble"}, mean_probabilities)]
    rows += [Derived("byot", {"exit": f"early_exit@{thr}"},
                     partial(early_exit_probabilities, threshold=thr),
                     partial(exit_shares, threshold=thr)) for thr in thresholds]
    return rows


def fit_byot(data: TrainData, cfg: RunConfig, *, seed: int,
             callbacks: Sequence[Callback] = ()) -> Lineage:
    """Train one multi-exit network with BYOT; one member per exit plus derived rows."""
    t0 = time.perf_counter()
    run_seed = derive_seed(seed, "byot")
    model = build_multi_exit(data, cfg, run_seed)
    result = _train(model, data, cfg, seed=run_seed, callbacks=callbacks)
    freeze(model)
    seconds = time.perf_counter() - t0
    latency = measure_latency(model, data.x, data.val_rows, cfg.byot.thresholds,
                              n_samples=cfg.byot.latency_samples)
    y_val = data.y[data.val_rows].cpu().numpy()
    members = []
    for i in range(model.depth):
        member = Member({"exit": i + 1}, model, result.history, output=i,
                        info={"epochs": result.epochs_run, "seconds": seconds,
                              "best_epoch": result.best_epoch})
        member.info["val_nll"] = val_nll(member.predict_proba(data.x, data.val_rows), y_val)
        member.info["latency_us"] = latency.get(f"latency_us_exit_{i + 1}", float("nan"))
        members.append(member)
    scores = [m.info["val_nll"] for m in members]
    return Lineage("byot", members, selected=int(np.argmin(scores)), disagreement=True,
                   derived=_derived_rows(cfg.byot.thresholds),
                   info={"val_nll": scores, "seconds": seconds, "epochs": result.epochs_run,
                         "depth": model.depth, **latency})

"""Born-Again Networks: each generation is a fresh copy taught by its predecessor.

Generation 0 trains on hard labels. Generation k >= 1 starts from new random
weights (its own seed) and minimises ``alpha_k * CE + (1 - alpha_k) * T_k^2 *
KL(teacher_T || student_T)``, with the teacher's soft targets computed once
per generation and cached. The best generation is chosen on validation NLL;
the ensemble of generations is its own row (``born_again_ensemble``).

Controls against saturation (later generations copying their teacher's
mistakes), all configurable in ``born_again``:

* ``teacher``: ``last`` (the paper), ``mean`` (average of all previous
  generations) or ``snapshots`` (average of the previous generation's weights
  at its last ``teacher_snapshots`` epochs up to the epoch it was selected at);
* ``target_noise``: multiplicative log-normal noise on the soft targets;
* ``alpha`` as a list: a hard-label curriculum (``[0.3, 0.3, 1.0]`` returns
  to pure hard labels every third generation), or an ``alpha_schedule``;
* temperature schedules (:mod:`selfdistill.training.schedules`).

References:
    Furlanello et al. Born-Again Neural Networks. ICML 2018.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from selfdistill.config import BornAgainConfig, RunConfig
from selfdistill.losses import DistillationTargets, soft_targets
from selfdistill.methods.base import Derived, Lineage, Member, TrainData
from selfdistill.methods.common import (
    derive_seed,
    freeze,
    fresh_model,
    hard_ce_loss,
    train_model,
    val_nll,
)
from selfdistill.training.loop import Callback, LossFn, predict_logits
from selfdistill.training.schedules import alpha_at, temperature_at

__all__ = ["CheckpointWindow", "distill_loss", "fit_born_again", "mean_probabilities",
           "teacher_targets"]

log = logging.getLogger(__name__)

StateDict = dict[str, Tensor]


def mean_probabilities(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Ensemble of members: the mean of their (N, C) probabilities.

    Summed in member order, as ``np.mean(np.stack(probs), axis=0)`` does (the same bits),
    without the (M, N, C) stack.
    """
    total = np.array(probs[0], dtype=np.float64)
    for p in probs[1:]:
        total += p
    return total / len(probs)


@torch.no_grad()
def teacher_targets(teachers: Sequence[nn.Module], x: Tensor, rows: Tensor, *,
                    temperature: float, n_rows: int, noise: float = 0.0,
                    generator: torch.Generator | None = None) -> Tensor:
    """Cached soft targets (n_rows, C) at T; filled on ``rows``, zero elsewhere.

    Several teachers are averaged in probability space. ``noise`` > 0 perturbs
    the targets multiplicatively (log-normal, renormalised), a control against
    later generations copying their teacher's mistakes exactly.
    """
    q = torch.stack([soft_targets(predict_logits(t, x, rows), temperature=temperature)
                     for t in teachers]).mean(0)  # (R, C)
    if noise > 0:
        eps = torch.randn(q.shape, generator=generator).to(q.device)
        q = q * torch.exp(noise * eps)
        q = q / q.sum(dim=1, keepdim=True)
    full = torch.zeros(n_rows, q.shape[1], device=x.device)
    full[rows] = q
    return full


class CheckpointWindow(Callback):
    """Keeps copies of a model's weights over its last ``size`` epochs.

    With ``track_best`` the window kept is the one ending at the best
    validation epoch (the weights the loop restores under early stopping);
    otherwise it ends at the last epoch. ``states`` holds them, oldest first.
    """

    def __init__(self, model: nn.Module, size: int, *, track_best: bool = True) -> None:
        self.model, self.track_best = model, track_best
        self._ring: deque[StateDict] = deque(maxlen=size)
        self._best = float("inf")
        self.states: list[StateDict] = []

    def on_epoch_end(self, label: str, record: dict[str, float]) -> None:
        self._ring.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        if not self.track_best:
            self.states = list(self._ring)
            return
        val_loss = record.get("val_loss", float("nan"))
        # the improvement rule of training.loop.fit, so the window ends where it restores
        if val_loss < self._best - 1e-6:
            self._best = val_loss
            self.states = list(self._ring)

    def on_fit_end(self, label: str, history: list[dict[str, float]]) -> None:
        if not self.states:  # no finite validation loss: fall back to the last epochs
            self.states = list(self._ring)


def _snapshot_models(model: nn.Module, states: Sequence[StateDict]) -> list[nn.Module]:
    """Frozen copies of ``model`` holding each of ``states``."""
    out = []
    for state in states:
        m = copy.deepcopy(model)
        m.load_state_dict(state)
        out.append(freeze(m))
    return out


def distill_loss(y: Tensor, q: Tensor, *, alpha: float, temperature: float) -> LossFn:
    """The training loss of a distilled model: labels and teacher targets packed once."""
    targets = DistillationTargets.build(y, q, alpha=alpha, temperature=temperature)

    def loss_fn(model: nn.Module, xb: Tensor, rows: Tensor) -> Tensor:
        return targets.loss(model(xb), rows)

    return loss_fn


def _train_generation(data: TrainData, cfg: RunConfig, k: int, loss_fn: LossFn, *, seed: int,
                      callbacks: Sequence[Callback],
                      info: dict[str, Any]) -> tuple[Member, list[StateDict]]:
    """Train generation ``k`` from fresh weights; also return its checkpoint window.

    Generation 0 draws the same seed as ``baseline``, so the two are the same model.
    """
    ba = cfg.born_again
    gen_seed = derive_seed(seed, "generation", k)
    model = fresh_model(data, cfg, gen_seed)
    window = (CheckpointWindow(model, ba.teacher_snapshots, track_best=cfg.training.patience > 0)
              if ba.teacher == "snapshots" else None)
    result = train_model(model, data, cfg, loss_fn, seed=gen_seed, label=f"born_again gen {k}",
                         callbacks=(*callbacks, window) if window else callbacks)
    member = Member({"generation": k}, freeze(model), result.history,
                    info={**info, "epochs": result.epochs_run, "seconds": result.seconds,
                          "best_epoch": result.best_epoch})
    return member, window.states if window else []


def _teachers(members: Sequence[Member], window: Sequence[StateDict],
              kind: str) -> list[nn.Module]:
    """The frozen teachers of the next generation."""
    if kind == "mean":
        return [m.model for m in members]
    if kind == "snapshots" and window:
        return _snapshot_models(members[-1].model, window)
    return [members[-1].model]


def _schedule(ba: BornAgainConfig, k: int) -> tuple[float, float]:
    """(temperature, alpha) of distilled generation ``k``."""
    t_k = temperature_at(k, t0=ba.temperature, schedule=ba.temperature_schedule,
                         decay=ba.temperature_decay, t_min=ba.temperature_min,
                         step=ba.temperature_step, total=ba.generations)
    a_k = alpha_at(k, ba.alpha, schedule=ba.alpha_schedule, decay=ba.alpha_decay,
                   final=ba.alpha_final, step=ba.alpha_step, total=ba.generations)
    return t_k, a_k


def _distilled_generation(data: TrainData, cfg: RunConfig, teachers: Sequence[nn.Module], k: int,
                          *, seed: int, callbacks: Sequence[Callback]
                          ) -> tuple[Member, list[StateDict]]:
    t_k, a_k = _schedule(cfg.born_again, k)
    noise_seed = derive_seed(seed, "generation", k) + 1
    t0 = time.perf_counter()
    q = teacher_targets(teachers, data.x, data.train_rows, temperature=t_k,
                        n_rows=data.x.shape[0], noise=cfg.born_again.target_noise,
                        generator=torch.Generator().manual_seed(noise_seed))
    loss_fn = distill_loss(data.y, q, alpha=a_k, temperature=t_k)
    del q  # packed into the loss: (N, C) floats fewer while the generation trains
    target_seconds = time.perf_counter() - t0
    member, window = _train_generation(data, cfg, k, loss_fn, seed=seed, callbacks=callbacks,
                                       info={"temperature": t_k, "alpha": a_k,
                                             "n_teachers": len(teachers),
                                             "target_seconds": target_seconds})
    # a generation's cost includes computing and packing its teacher's targets
    member.info["seconds"] += target_seconds
    return member, window


def fit_born_again(data: TrainData, cfg: RunConfig, *, seed: int,
                   callbacks: Sequence[Callback] = ()) -> Lineage:
    """Generation 0 on hard labels, then ``born_again.generations`` distilled generations."""
    ba = cfg.born_again
    t0 = time.perf_counter()
    y_val = data.y[data.val_rows].cpu().numpy()
    first, window = _train_generation(data, cfg, 0, hard_ce_loss(data.y), seed=seed,
                                      callbacks=callbacks, info={})
    members = [first]
    scores = [val_nll(first.predict_proba(data.x, data.val_rows), y_val)]
    for k in range(1, ba.generations + 1):
        teachers = _teachers(members, window, ba.teacher)
        member, window = _distilled_generation(data, cfg, teachers, k, seed=seed,
                                               callbacks=callbacks)
        members.append(member)
        scores.append(val_nll(member.predict_proba(data.x, data.val_rows), y_val))
        best = int(np.argmin(scores))
        if ba.patience and k - best >= ba.patience:
            log.info("born_again: no validation gain for %d generations; stopping at %d",
                     ba.patience, k)
            break
    for member, score in zip(members, scores, strict=True):
        member.info["val_nll"] = score
    return Lineage("born_again", members, selected=int(np.argmin(scores)), disagreement=True,
                   derived=[Derived("born_again_ensemble", {"generation": None},
                                    mean_probabilities)],
                   info={"val_nll": scores, "seconds": time.perf_counter() - t0,
                         "epochs": sum(m.info["epochs"] for m in members),
                         "generations_run": len(members) - 1})

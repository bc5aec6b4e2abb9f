"""Born-Again Networks: each generation is a fresh copy taught by its predecessor.

Generation 0 trains on hard labels. Generation k >= 1 starts from new random
weights (its own seed) and minimises ``alpha_k * CE + (1 - alpha_k) * T_k^2 *
KL(teacher_T || student_T)``, with the teacher's soft targets computed once
per generation from the frozen previous generation (or the mean of all
previous ones) and cached. The best generation is chosen on validation NLL;
the ensemble of generations is its own row (``born_again_ensemble``).

References:
    Furlanello et al. Born-Again Neural Networks. ICML 2018.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from selfdistill.losses import fused_distillation_loss, soft_targets
from selfdistill.methods.base import Derived, Lineage, Member, TrainData
from selfdistill.methods.baseline import train_hard_generation
from selfdistill.methods.common import derive_seed, freeze, fresh_model, train_model, val_nll
from selfdistill.training.loop import Callback, LossFn, predict_logits
from selfdistill.training.schedules import alpha_at, temperature_at

__all__ = ["fit_born_again", "mean_probabilities", "teacher_targets"]

log = logging.getLogger(__name__)


def mean_probabilities(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Ensemble of members: the mean of their (N, C) probabilities."""
    return np.mean(np.stack(probs), axis=0)


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


def _distill_loss(y: Tensor, q: Tensor, *, alpha: float, temperature: float) -> LossFn:
    def loss_fn(model: nn.Module, xb: Tensor, rows: Tensor) -> Tensor:
        return fused_distillation_loss(model(xb), y[rows], q[rows], alpha=alpha,
                                       temperature=temperature)

    return loss_fn


def _generation(data: TrainData, cfg: Any, teachers: Sequence[nn.Module], k: int, *,
                seed: int, callbacks: Sequence[Callback]) -> Member:
    ba = cfg.born_again
    t_k = temperature_at(k, t0=ba.temperature, schedule=ba.temperature_schedule,
                         decay=ba.temperature_decay, t_min=ba.temperature_min,
                         step=ba.temperature_step, total=ba.generations)
    a_k = alpha_at(k, ba.alpha)
    gen_seed = derive_seed(seed, "generation", k)
    q = teacher_targets(teachers, data.x, data.train_rows, temperature=t_k,
                        n_rows=data.x.shape[0], noise=ba.target_noise,
                        generator=torch.Generator().manual_seed(gen_seed + 1))
    student = fresh_model(data, cfg, gen_seed)
    result = train_model(student, data, cfg, _distill_loss(data.y, q, alpha=a_k, temperature=t_k),
                         seed=gen_seed, label=f"born_again gen {k}", callbacks=callbacks)
    return Member({"generation": k}, freeze(student), result.history,
                  info={"temperature": t_k, "alpha": a_k, "epochs": result.epochs_run,
                        "seconds": result.seconds, "best_epoch": result.best_epoch})


def fit_born_again(data: TrainData, cfg: Any, *, seed: int,
                   callbacks: Sequence[Callback] = ()) -> Lineage:
    """Generation 0 on hard labels, then ``born_again.generations`` distilled generations."""
    ba = cfg.born_again
    y_val = data.y[data.val_rows].cpu().numpy()
    members = [train_hard_generation(data, cfg, seed=seed, label="born_again gen 0",
                                     callbacks=callbacks)]
    scores = [val_nll(members[0].predict_proba(data.x, data.val_rows), y_val)]
    for k in range(1, ba.generations + 1):
        teachers = [m.model for m in members] if ba.teacher == "mean" else [members[-1].model]
        members.append(_generation(data, cfg, teachers, k, seed=seed, callbacks=callbacks))
        scores.append(val_nll(members[-1].predict_proba(data.x, data.val_rows), y_val))
        members[-1].info["val_nll"] = scores[-1]
        best = int(np.argmin(scores))
        if ba.patience and k - best >= ba.patience:
            log.info("born_again: no validation gain for %d generations; stopping at %d",
                     ba.patience, k)
            break
    members[0].info["val_nll"] = scores[0]
    selected = int(np.argmin(scores))
    seconds = sum(m.info.get("seconds", 0.0) for m in members)
    return Lineage("born_again", members, selected=selected, disagreement=True,
                   derived=[Derived("born_again_ensemble", {"generation": None},
                                    mean_probabilities)],
                   info={"val_nll": scores, "seconds": seconds})

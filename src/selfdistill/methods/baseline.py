"""Reference methods: the majority class, hard labels, and label smoothing.

``baseline`` draws its weights from the same seed as Born-Again's generation 0,
so the two are the same model and every comparison against it is paired.
"""

from __future__ import annotations

from collections.abc import Sequence

from selfdistill.config import RunConfig
from selfdistill.methods.base import Lineage, Member, TrainData
from selfdistill.methods.common import derive_seed, freeze, fresh_model, hard_ce_loss, train_model
from selfdistill.nn.mlp import ConstantClassifier
from selfdistill.training.loop import Callback

__all__ = ["fit_baseline", "fit_label_smoothing", "fit_majority", "train_hard_generation"]


def fit_majority(data: TrainData, cfg: RunConfig, *, seed: int,
                 callbacks: Sequence[Callback] = ()) -> Lineage:
    """Always predict the training class frequencies."""
    model = ConstantClassifier.from_labels(data.y[data.train_rows], data.n_classes)
    return Lineage("majority", [Member({"generation": None}, freeze(model.to(data.device)))])


def train_hard_generation(data: TrainData, cfg: RunConfig, *, seed: int, label: str,
                          callbacks: Sequence[Callback] = (), epsilon: float = 0.0) -> Member:
    """Generation 0: a fresh model on hard labels (optionally label-smoothed)."""
    gen_seed = derive_seed(seed, "generation", 0)
    model = fresh_model(data, cfg, gen_seed)
    result = train_model(model, data, cfg, hard_ce_loss(data.y, label_smoothing=epsilon),
                         seed=gen_seed, label=label, callbacks=callbacks)
    return Member({"generation": 0}, freeze(model), result.history,
                  info={"epochs": result.epochs_run, "seconds": result.seconds,
                        "best_epoch": result.best_epoch})


def fit_baseline(data: TrainData, cfg: RunConfig, *, seed: int,
                 callbacks: Sequence[Callback] = ()) -> Lineage:
    """Hard-label training (Born-Again's generation 0 on its own)."""
    member = train_hard_generation(data, cfg, seed=seed, label="baseline", callbacks=callbacks)
    member.keys = {"generation": None}
    return Lineage("baseline", [member], info={"seconds": member.info["seconds"]})


def fit_label_smoothing(data: TrainData, cfg: RunConfig, *, seed: int,
                        callbacks: Sequence[Callback] = ()) -> Lineage:
    """Hard labels smoothed by ``label_smoothing.epsilon``."""
    member = train_hard_generation(data, cfg, seed=seed, label="label_smoothing",
                                   callbacks=callbacks, epsilon=cfg.label_smoothing.epsilon)
    member.keys = {"generation": None}
    return Lineage("label_smoothing", [member], info={"seconds": member.info["seconds"]})

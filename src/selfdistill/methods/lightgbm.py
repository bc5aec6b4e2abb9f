"""LightGBM on the same features, folds and seeds: the comparison users would reach for.

Gradient-boosted trees are fitted on the scaled features of the training rows,
with early stopping on the validation rows only (multi-class log-loss), and
deterministic settings (``deterministic=True``, ``force_row_wise=True``,
``n_jobs=1``, every seed derived from the run seed) so a fold x seed cell gives
the same trees every time, also inside a worker process.

The fitted booster is wrapped in :class:`~selfdistill.nn.booster.BoosterClassifier`,
an ``nn.Module`` returning log-probabilities, so evaluation, the run directory and
model files treat it like any network.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from selfdistill.config import LightGBMConfig, RunConfig
from selfdistill.methods.base import Lineage, Member, TrainData
from selfdistill.methods.common import derive_seed
from selfdistill.nn.booster import BoosterClassifier, flat_features
from selfdistill.training.loop import Callback

__all__ = ["fit_lightgbm", "lightgbm_params"]

log = logging.getLogger(__name__)


def lightgbm_params(lg: LightGBMConfig, n_classes: int, seed: int) -> dict[str, Any]:
    """LightGBM parameters from the ``lightgbm`` section, deterministic and single-threaded."""
    return {
        "objective": "multiclass", "num_class": n_classes, "metric": "multi_logloss",
        "learning_rate": lg.learning_rate, "num_leaves": lg.num_leaves,
        "min_child_samples": lg.min_child_samples, "bagging_fraction": lg.subsample,
        "bagging_freq": 1 if lg.subsample < 1 else 0, "feature_fraction": lg.colsample_bytree,
        "lambda_l2": lg.reg_lambda, "seed": seed, "deterministic": True,
        "force_row_wise": True, "num_threads": 1, "verbosity": -1,
    }


def fit_lightgbm(data: TrainData, cfg: RunConfig, *, seed: int,
                 callbacks: Sequence[Callback] = ()) -> Lineage:
    """Fit boosted trees on train rows, early-stopped on validation rows only."""
    import lightgbm as lgb

    x = flat_features(data.x)
    y = data.y.cpu().numpy()
    tr, va = data.train_rows.cpu().numpy(), data.val_rows.cpu().numpy()
    params = lightgbm_params(cfg.lightgbm, data.n_classes, derive_seed(seed, "lightgbm"))
    train_set = lgb.Dataset(x[tr], y[tr], feature_name=list(data.feature_names) or "auto",
                            free_raw_data=True)
    val_set = lgb.Dataset(x[va], y[va], reference=train_set)
    n_rounds = cfg.lightgbm.n_estimators
    for cb in callbacks:
        cb.on_fit_begin("lightgbm", n_rounds)
    evals: dict[str, Any] = {}
    stop = cfg.lightgbm.early_stopping_rounds
    lgb_callbacks = [lgb.record_evaluation(evals)]
    if stop > 0:
        lgb_callbacks.append(lgb.early_stopping(stop, first_metric_only=True, verbose=False))
    booster = lgb.train(params, train_set, num_boost_round=n_rounds, valid_sets=[val_set],
                        valid_names=["val"], callbacks=lgb_callbacks)
    val_loss = evals.get("val", {}).get("multi_logloss", [])
    history = [{"epoch": float(i + 1), "val_loss": float(v)} for i, v in enumerate(val_loss)]
    for cb in callbacks:
        cb.on_fit_end("lightgbm", history)
    best = int(booster.best_iteration or booster.current_iteration())
    model = BoosterClassifier(booster.model_to_string(num_iteration=best), data.n_classes)
    model.eval()
    log.debug("lightgbm: %d trees per class (val log-loss %.4f)", best,
              val_loss[best - 1] if val_loss else float("nan"))
    member = Member({"generation": None}, model, history, info={"trees": best})
    return Lineage("lightgbm", [member], info={"trees": best})

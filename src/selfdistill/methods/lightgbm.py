"""LightGBM on the same features, folds and seeds: the comparison users would reach for.

Gradient-boosted trees are fitted on the scaled features of the training rows,
with early stopping on the validation rows only (multi-class log-loss), and
deterministic settings (``deterministic=True``, ``force_row_wise=True``,
``n_jobs=1``, every seed derived from the run seed) so a fold x seed cell gives
the same trees every time, also inside a worker process.

The fitted booster is wrapped in :class:`BoosterClassifier`, an ``nn.Module``
returning log-probabilities, so evaluation, the run directory and model files
treat it like any network. Its "weights" are the booster in LightGBM's own
text format, stored as a uint8 tensor: saving goes through safetensors and
loading parses text, never a pickle.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from selfdistill.errors import TrainingError
from selfdistill.methods.base import Lineage, Member, TrainData
from selfdistill.methods.common import derive_seed
from selfdistill.nn.registry import register_builder
from selfdistill.training.loop import Callback

__all__ = ["BoosterClassifier", "fit_lightgbm", "lightgbm_params"]

log = logging.getLogger(__name__)


def _flat(x: Tensor) -> np.ndarray:
    """(B, F) float32 features; windows (B, F, W) use their last bar, which is row t's."""
    if x.ndim == 3:
        x = x[:, :, -1]
    return x.detach().cpu().numpy().astype(np.float32, copy=False)


class BoosterClassifier(nn.Module):
    """A fitted LightGBM booster as a module: (B, F) or (B, F, W) -> (B, C) log-probabilities.

    Args:
        model_text: the booster in LightGBM's text format ('' for an empty shell
            that :meth:`load_state_dict` fills).
        n_classes: number of classes C.
    """

    def __init__(self, model_text: str = "", n_classes: int = 3) -> None:
        super().__init__()
        self.n_classes = int(n_classes)
        self.register_buffer("model_bytes", torch.zeros(0, dtype=torch.uint8))
        self.booster: Any = None
        if model_text:
            self._set_text(model_text)

    def _set_text(self, text: str) -> None:
        import lightgbm as lgb

        self.model_bytes = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8)
        self.booster = lgb.Booster(model_str=text)

    def forward(self, x: Tensor) -> Tensor:
        if self.booster is None:
            raise TrainingError("BoosterClassifier has no fitted booster")
        proba = np.asarray(self.booster.predict(_flat(x), num_threads=1), dtype=np.float64)
        proba = proba.reshape(len(x), self.n_classes)
        log_p = np.log(np.clip(proba, 1e-12, 1.0))
        return torch.as_tensor(log_p, dtype=torch.float32, device=x.device)  # (B, C)

    def spec(self) -> dict[str, Any]:
        return {"kind": "lightgbm", "n_classes": self.n_classes}

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        key = prefix + "model_bytes"
        if key in state_dict:  # resize the shell's buffer first; the copy below then fits
            data = state_dict[key].cpu().numpy().astype(np.uint8).tobytes()
            self._set_text(data.decode("utf-8"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


register_builder("lightgbm", lambda spec: BoosterClassifier("", spec["n_classes"]))


def lightgbm_params(cfg: Any, n_classes: int, seed: int) -> dict[str, Any]:
    """LightGBM parameters from the ``lightgbm`` section, deterministic and single-threaded."""
    lg = cfg.lightgbm
    return {
        "objective": "multiclass", "num_class": n_classes, "metric": "multi_logloss",
        "learning_rate": lg.learning_rate, "num_leaves": lg.num_leaves,
        "min_child_samples": lg.min_child_samples, "bagging_fraction": lg.subsample,
        "bagging_freq": 1 if lg.subsample < 1 else 0, "feature_fraction": lg.colsample_bytree,
        "lambda_l2": lg.reg_lambda, "seed": seed, "deterministic": True,
        "force_row_wise": True, "num_threads": 1, "verbosity": -1,
    }


def fit_lightgbm(data: TrainData, cfg: Any, *, seed: int,
                 callbacks: Sequence[Callback] = ()) -> Lineage:
    """Fit boosted trees on train rows, early-stopped on validation rows only."""
    import lightgbm as lgb

    x = _flat(data.x)
    y = data.y.cpu().numpy()
    tr, va = data.train_rows.cpu().numpy(), data.val_rows.cpu().numpy()
    params = lightgbm_params(cfg, data.n_classes, derive_seed(seed, "lightgbm"))
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

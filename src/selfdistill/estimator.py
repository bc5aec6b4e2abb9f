"""A scikit-learn classifier over the self-distillation methods.

:class:`SelfDistillClassifier` follows the estimator contract: ``__init__``
only stores hyperparameters; ``fit`` validates, scales features with
statistics of the training part only, holds out the *last*
``validation_fraction`` of rows (never shuffled across time) for early
stopping, generation selection and optional temperature scaling, trains one of
the library's methods, and returns ``self``. A second ``fit`` forgets the first.

Example:
    >>> import numpy as np
    >>> from selfdistill import SelfDistillClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4)); y = np.where(X[:, 0] > 0, "up", "down")
    >>> clf = SelfDistillClassifier(n_generations=1, epochs=10, batch_size=64,
    ...                             learning_rate=1e-2, random_state=0).fit(X, y)
    >>> clf.classes_.tolist(), len(clf.generations_)  # generation 0 and one distilled
    (['down', 'up'], 2)
    >>> clf.predict([[2.0, 0.0, 0.0, 0.0], [-2.0, 0.0, 0.0, 0.0]]).tolist()
    ['up', 'down']
    >>> clf.predict_proba(X[:3]).shape  # columns in classes_ order
    (3, 2)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from selfdistill.config import FeaturesConfig, RunConfig, validation_messages
from selfdistill.errors import ConfigError, ModelFileError
from selfdistill.evaluation.calibration import fit_temperature
from selfdistill.evaluation.uncertainty import disagreement
from selfdistill.features import Scaler
from selfdistill.methods import Lineage, Member, TrainData, get_method
from selfdistill.modelio.bundle import load_bundle_models, save_bundle
from selfdistill.modelio.jsonio import json_safe
from selfdistill.training.device import resolve_device
from selfdistill.training.loop import Callback, probabilities

__all__ = ["PARAM_PATHS", "SelfDistillClassifier", "predict_uncertainty"]

log = logging.getLogger(__name__)

#: estimator parameter -> (config section, field) of the RunConfig it sets
PARAM_PATHS: dict[str, tuple[str, str]] = {
    "n_generations": ("born_again", "generations"),
    "temperature": ("born_again", "temperature"),
    "temperature_decay": ("born_again", "temperature_decay"),
    "temperature_min": ("born_again", "temperature_min"),
    "alpha": ("born_again", "alpha"),
    "hidden_sizes": ("model", "hidden"),
    "activation": ("model", "activation"),
    "dropout": ("model", "dropout"),
    "epochs": ("training", "epochs"),
    "batch_size": ("training", "batch_size"),
    "learning_rate": ("training", "lr"),
    "weight_decay": ("training", "weight_decay"),
    "optimizer": ("training", "optimizer"),
    "patience": ("training", "patience"),
    "label_smoothing": ("label_smoothing", "epsilon"),
    "scaler": ("features", "scaler"),
    "device": ("device", ""),
}


class SelfDistillClassifier(ClassifierMixin, BaseEstimator):
    """Market-regime (or any tabular) classifier trained by self-distillation.

    Args:
        method: ``born_again`` (default), ``baseline``, ``label_smoothing``,
            ``byot``, ``snapshot``, ``majority``, ``lightgbm``, ``logistic`` or ``hmm``
            (see the methods docs). ``hmm`` is forward-filtered: ``predict_proba`` reads
            the rows of X as one time series in the order given (row t from rows <= t).
        n_generations: distilled Born-Again generations after generation 0.
        temperature / temperature_decay / temperature_min: the soft-target
            temperature schedule (exponential decay per generation, floored).
        alpha: weight of the hard labels in the distillation loss (1 - alpha: teacher).
        hidden_sizes / activation / dropout: the MLP.
        epochs / batch_size / learning_rate / weight_decay / optimizer / patience:
            the training loop (patience 0: no early stopping).
        validation_fraction: the last fraction of rows (in the order given) held
            out for early stopping and model selection; never shuffled.
        validation_gap: rows dropped between the training and validation parts
            (set it to the label horizon so no label interval spans both).
        label_smoothing: epsilon of the ``label_smoothing`` method.
        scaler: ``standard``, ``robust`` or ``none``; fitted on training rows only.
        calibrate: fit a temperature on the validation rows (Guo et al. 2017).
        device: ``cpu``, ``cuda`` or ``auto``.
        random_state: seed of weights and minibatch order; an int makes
            predictions deterministic on CPU.
        method_params: extra config sections, e.g. ``{"byot": {"temperature": 2}}``.

    Attributes:
        classes_: (C,) the label values, in the column order of ``predict_proba``.
        n_features_in_ / feature_names_in_: what ``fit`` saw.
        models_: the fitted networks, one per member (generation, exit, snapshot).
        generations_: per member, its keys and info (val_nll, epochs, temperature, ...).
        history_: per member, its per-epoch training records.
        best_generation_: index of the member chosen on validation (used by predict).
        temperature_: calibration temperature dividing the logits (1.0: none).
        scaler_: the fitted :class:`~selfdistill.features.Scaler`.
    """

    def __init__(
        self,
        method: str = "born_again",
        *,
        n_generations: int = 5,
        temperature: float = 3.0,
        temperature_decay: float = 0.85,
        temperature_min: float = 1.0,
        alpha: float = 0.3,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.1,
        epochs: int = 30,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: str = "adamw",
        patience: int = 5,
        validation_fraction: float = 0.2,
        validation_gap: int = 0,
        label_smoothing: float = 0.1,
        scaler: str = "standard",
        calibrate: bool = False,
        device: str = "cpu",
        random_state: int | np.random.RandomState | None = None,
        method_params: dict[str, Any] | None = None,
    ) -> None:
        self.method = method
        self.n_generations = n_generations
        self.temperature = temperature
        self.temperature_decay = temperature_decay
        self.temperature_min = temperature_min
        self.alpha = alpha
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.validation_gap = validation_gap
        self.label_smoothing = label_smoothing
        self.scaler = scaler
        self.calibrate = calibrate
        self.device = device
        self.random_state = random_state
        self.method_params = method_params

    # ------------------------------------------------------------------ fit

    def _run_config(self) -> RunConfig:
        """The RunConfig the methods read, built from the hyperparameters."""
        raw: dict[str, Any] = {k: dict(v) for k, v in (self.method_params or {}).items()}
        for param, (section, key) in PARAM_PATHS.items():
            value = getattr(self, param)
            value = list(value) if isinstance(value, tuple) else value
            if key:
                raw.setdefault(section, {})[key] = value
            else:
                raw[section] = value
        try:
            return RunConfig.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(_param_errors(exc)) from None

    def _split_rows(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        frac, gap = self.validation_fraction, self.validation_gap
        if not isinstance(frac, float | int) or not 0 < frac < 1:
            raise ConfigError(f"validation_fraction must be in (0, 1), got {frac!r}")
        if not isinstance(gap, int | np.integer) or gap < 0:
            raise ConfigError(f"validation_gap must be an int >= 0, got {gap!r}")
        n_val = max(1, round(n * frac))
        n_train = n - n_val - int(gap)
        if n_train < 1:
            raise ValueError(f"{n} samples are too few for validation_fraction={frac} and "
                             f"validation_gap={gap}: no training rows are left")
        return np.arange(n_train), np.arange(n - n_val, n)  # chronological, last rows val

    def _seed(self) -> int:
        if isinstance(self.random_state, int | np.integer):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def fit(self, X: Any, y: Any, callbacks: Sequence[Callback] = ()) -> SelfDistillClassifier:
        """Train on (X, y); the last ``validation_fraction`` of rows validate.

        Args:
            X: (N, F) features, rows in time order (array-like or DataFrame).
            y: (N,) labels of any hashable kind (strings, non-contiguous ints, ...).
            callbacks: training-loop callbacks (progress, logging).

        Returns:
            self.
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        classes, y_enc = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y has only one class ({classes[0]!r}); a classifier needs at "
                             "least two")
        cfg = self._run_config()
        train_rows, val_rows = self._split_rows(len(X))
        scaler = Scaler(cfg.features.scaler).fit(X[train_rows])
        device = resolve_device(cfg.device)
        data = TrainData(
            x=torch.as_tensor(_c_order(scaler.transform(X)), dtype=torch.float32, device=device),
            y=torch.as_tensor(y_enc, dtype=torch.int64, device=device),
            train_rows=torch.as_tensor(train_rows, device=device),
            val_rows=torch.as_tensor(val_rows, device=device), n_classes=len(classes),
            class_names=tuple(str(c) for c in classes),
            feature_names=tuple(getattr(self, "feature_names_in_", ())),
            unlabeled_rows=torch.as_tensor(train_rows, device=device))
        lineage = get_method(self.method)(data, cfg, seed=self._seed(), callbacks=callbacks)
        self.classes_, self.scaler_ = classes, scaler
        self._set_lineage(lineage)
        self.temperature_ = self._fit_temperature(data) if self.calibrate else 1.0
        return self

    def _set_lineage(self, lineage: Lineage) -> None:
        self.method_ = lineage.method
        self.members_ = lineage.members
        self.models_ = [m.model for m in lineage.members]
        self.generations_ = [{**m.keys, **json_safe(m.info)} for m in lineage.members]
        self.history_ = [m.history for m in lineage.members]
        self.best_generation_ = int(lineage.selected)

    def _fit_temperature(self, data: TrainData) -> float:
        member = self.members_[self.best_generation_]
        logits = member.logits(data.x, data.val_rows).double().cpu().numpy()
        return float(fit_temperature(logits, data.y[data.val_rows].cpu().numpy()))

    # -------------------------------------------------------------- predict

    def _member_proba(self, X: Any, members: Sequence[Member]) -> np.ndarray:
        """(M, N, C) probabilities of ``members`` for raw features ``X``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        device = next(iter(self.models_[0].parameters()), torch.empty(0)).device
        x = torch.as_tensor(_c_order(self.scaler_.transform(X)), dtype=torch.float32,
                            device=device)
        return np.stack([probabilities(m.logits(x), temperature=self.temperature_)
                         for m in members])

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, C) probabilities of the selected member, columns in ``classes_`` order."""
        check_is_fitted(self)
        proba: np.ndarray = self._member_proba(X, [self.members_[self.best_generation_]])[0]
        return proba

    def predict(self, X: Any) -> np.ndarray:
        """(N,) predicted labels (values of ``classes_``)."""
        check_is_fitted(self)
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])

    def predict_uncertainty(self, X: Any) -> pd.DataFrame:
        """Disagreement between members (generations, exits, snapshots) per sample.

        Returns:
            DataFrame of N rows (the index of ``X`` when it is a DataFrame) with
            ``variance``, ``mutual_information``, ``flip_rate`` and ``entropy``
            (see :mod:`selfdistill.evaluation.uncertainty`); zeros but entropy for one member.
        """
        check_is_fitted(self)
        measures = disagreement(self._member_proba(X, self.members_))
        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame(measures, index=index)[
            ["variance", "mutual_information", "flip_rate", "entropy"]]

    # ---------------------------------------------------------- save / load

    def save(self, path: str | Path, *,
             feature_config: FeaturesConfig | Mapping[str, Any] | None = None) -> Path:
        """Write a model directory (safetensors + JSON; see :mod:`selfdistill.modelio.bundle`).

        Args:
            path: the directory to write.
            feature_config: the ``FeaturesConfig`` (or its dict) that computed X, when X
                came from :func:`selfdistill.features.compute_features`; with it
                ``selfdistill predict`` can compute features from raw candles.
        """
        check_is_fitted(self)
        has_names = hasattr(self, "feature_names_in_")
        names = (list(self.feature_names_in_) if has_names
                 else [f"x{i}" for i in range(self.n_features_in_)])
        if isinstance(feature_config, FeaturesConfig):
            feature_config = feature_config.model_dump(mode="json")
        params = {k: v if _jsonable(v) else None for k, v in self.get_params().items()}
        return save_bundle(
            path, self.models_, member_keys=[m.keys for m in self.members_],
            member_meta=[{"history": m.history, "output": m.output, "info": m.info}
                         for m in self.members_],
            classes=self.classes_, feature_names=names, selected=self.best_generation_,
            method=self.method_, temperature=self.temperature_, scaler=self.scaler_.to_dict(),
            feature_config=feature_config,
            extra={"estimator_params": params, "feature_names_in": has_names})

    @classmethod
    def load(cls, path: str | Path) -> SelfDistillClassifier:
        """A fitted estimator from a model directory (``save`` or ``selfdistill run``)."""
        models, bundle = load_bundle_models(path)
        if bundle.scaler is None:
            raise ModelFileError(f"'{bundle.path}' stores no scaler; it cannot be served "
                                 "by the estimator")
        valid = cls().get_params()
        params = {k: v for k, v in bundle.extra.get("estimator_params", {}).items()
                  if k in valid and v is not None}
        params["hidden_sizes"] = tuple(params.get("hidden_sizes", valid["hidden_sizes"]))
        est = cls(**{**params, "method": bundle.method or valid["method"]})
        est.classes_ = bundle.classes
        est.n_features_in_ = len(bundle.feature_names)
        if bundle.extra.get("feature_names_in", True):
            est.feature_names_in_ = np.asarray(bundle.feature_names, dtype=object)
        est.scaler_ = Scaler.from_dict(bundle.scaler)
        est.temperature_ = bundle.temperature
        members = [Member(keys, model, list(meta.get("history") or []), meta.get("output"),
                          dict(meta.get("info") or {}))
                   for keys, model, meta in zip(bundle.member_keys, models, bundle.member_meta,
                                                strict=True)]
        est._set_lineage(Lineage(bundle.method, members, selected=bundle.selected))
        return est


def predict_uncertainty(model: Any, X: Any) -> pd.DataFrame:
    """Generation-disagreement uncertainty from a fitted classifier or a ``Pipeline`` ending in one.

    scikit-learn's ``Pipeline`` forwards ``predict_proba`` but not other methods, so
    ``pipe.predict_uncertainty`` does not exist; this runs ``X`` through the pipeline's
    transformers and asks its final :class:`SelfDistillClassifier`.

    Args:
        model: a fitted ``SelfDistillClassifier``, or a fitted ``Pipeline`` whose last
            step is one.
        X: (N, F) raw features, as ``model.predict`` takes them.

    Returns:
        The DataFrame of :meth:`SelfDistillClassifier.predict_uncertainty` (the index of
        ``X`` when it is a DataFrame).

    Raises:
        TypeError: the model (or the pipeline's last step) has no ``predict_uncertainty``.
    """
    from sklearn.pipeline import Pipeline

    final, Xt = model, X
    if isinstance(model, Pipeline):
        final = model.steps[-1][1]
        Xt = model[:-1].transform(X) if len(model.steps) > 1 else X
    if not callable(getattr(final, "predict_uncertainty", None)):
        raise TypeError(f"{type(final).__name__} has no predict_uncertainty; pass a fitted "
                        "SelfDistillClassifier or a Pipeline that ends in one")
    out: pd.DataFrame = final.predict_uncertainty(Xt)
    if isinstance(X, pd.DataFrame) and len(out) == len(X):
        out.index = X.index  # the transformers may have dropped the DataFrame index
    return out


def _c_order(z: np.ndarray) -> np.ndarray:
    """Row-major copy: a DataFrame's column-major values would make torch pick other
    matmul kernels, and probabilities would differ from the run's in the last bits."""
    return np.ascontiguousarray(z)


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | tuple | dict)


def _param_errors(exc: ValidationError) -> str:
    """Pydantic errors in terms of the estimator's parameter names."""
    by_path: dict[tuple[str, ...], str] = {
        (s, k) if k else (s,): p for p, (s, k) in PARAM_PATHS.items()}
    lines = []
    for path, text in validation_messages(exc):
        loc = tuple(path.split("."))
        name = by_path.get(loc[:2]) or by_path.get(loc[:1]) or path
        lines.append(f"{name}: {text}" if name else text)  # "": a cross-section message
    return "invalid SelfDistillClassifier parameter: " + "; ".join(lines)

"""Signals from a saved model without torch: the live loop's model, and ``predict --runtime numpy``.

:class:`SignalModel` is a model directory made ready to serve: its NumPy forward
(:class:`~selfdistill.serving.numpy_runtime.NumpyModel`), the feature settings it was
trained with (volume pinned), the gap policy it stored, and an identity (``model_id``:
the first 12 hex digits of the sha256 of ``model.json``, which lists the sha256 of every
member, so the id changes exactly when the weights or settings do).

Numbers are those of ``selfdistill predict``: the selected member's probabilities
calibrated by the stored temperature, the regime as their arg-max, and the uncertainty
from the members' own (temperature-1) probabilities (mutual information between
generations, or the entropy of a single member). :func:`predict_candles_numpy` is
:func:`~selfdistill.serving.predict.predict_candles` with this forward: same columns,
same rows; it and the live loop agree to 1e-9 (float64 both), and both agree with the
torch forward of ``predict`` to the float32 rounding of torch (about 1e-6).

:func:`signal_record` is the one JSON object per bar that ``selfdistill live`` writes and
``selfdistill predict --format json`` prints.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from selfdistill.config import FeaturesConfig
from selfdistill.errors import ModelFileError
from selfdistill.evaluation.uncertainty import disagreement, entropy
from selfdistill.features import feature_names
from selfdistill.modelio.bundle import MANIFEST, ModelBundle
from selfdistill.serving.numpy_runtime import NumpyModel
from selfdistill.serving.predict import (
    _check_finite,
    _features,
    _frame,
    _gap_policy,
    _no_complete_row,
)
from selfdistill.softmax import softmax

__all__ = ["SignalModel", "model_id", "predict_candles_numpy", "records_from_frame",
           "signal_record"]

_SUM_TOLERANCE = 1e-6  # a self-check: probabilities must sum to 1 within this


class SignalModel:
    """A model directory checked and ready to give signals, torch-free.

    Build with :meth:`load`. Attributes: ``path``, ``bundle``, ``runtime`` (the NumPy
    forward), ``features`` (typed, volume pinned), ``model_id``, ``saved_at`` (the time
    ``model.json`` was written, UTC).
    """

    def __init__(self, path: Path, runtime: NumpyModel, model_id: str,
                 saved_at: pd.Timestamp) -> None:
        self.path, self.runtime, self.model_id, self.saved_at = path, runtime, model_id, saved_at
        self.bundle: ModelBundle = runtime.bundle
        features = self.bundle.features
        if features is None:
            raise ModelFileError(f"'{path}' stores no feature config (trained on custom "
                                 "features), so live features cannot be computed for it")
        if self.bundle.scaler is None:
            raise ModelFileError(f"'{path}' stores no scaler statistics")
        self.features: FeaturesConfig = features
        names = feature_names(features)
        missing = [n for n in self.bundle.feature_names if n not in names]
        if missing:
            raise ModelFileError(f"'{path}' expects features {missing} that its feature config "
                                 "does not produce")
        #: positions of the model's features in a feature_names(features) row
        self.order = np.array([names.index(n) for n in self.bundle.feature_names])

    @classmethod
    def load(cls, path: str | Path) -> SignalModel:
        """Read, check and prepare a model directory.

        Raises:
            ModelFileError: the files are missing, altered or not servable without torch
                (window models, LightGBM, HMM), or lack a feature config or scaler.
        """
        path = Path(path)
        identity = model_id(path)
        saved_at = pd.Timestamp((path / MANIFEST).stat().st_mtime, unit="s", tz="UTC")
        return cls(path, NumpyModel.from_dir(path), identity, saved_at)

    @property
    def gap_policy(self) -> str | None:
        """The gap policy the model's training data resolved to (None: not recorded)."""
        return self.bundle.gap_policy

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.bundle.classes]

    def predict(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Members' own probabilities and the calibrated selected ones.

        Args:
            raw: (N, F) raw features in the model's ``feature_names`` order, all finite.

        Returns:
            ``(probs, chosen)``: (M, N, C) every member at temperature 1, and (N, C) the
            selected member divided by the stored temperature.
        """
        z = self.runtime.member_logits(raw)  # (M, N, C) logits / T
        probs = softmax(z * self.bundle.temperature)
        return probs, softmax(z[self.bundle.selected])

    def check_replaces(self, old: SignalModel) -> None:
        """Refuse to serve in place of ``old`` unless features, classes and gaps match.

        Raises:
            ModelFileError: naming the first difference.
        """
        checks = [("feature names", self.bundle.feature_names, old.bundle.feature_names),
                  ("feature settings", self.features.model_dump(), old.features.model_dump()),
                  ("classes", self.classes, old.classes),
                  ("gap policy", self.gap_policy, old.gap_policy)]
        for what, new, was in checks:
            if new != was:
                raise ModelFileError(f"the new model in '{self.path}' has other {what} "
                                     f"({_short(new)}) than the one serving ({_short(was)}); "
                                     "restart `selfdistill live` to change them")

    def self_check(self, raw: np.ndarray | None = None) -> None:
        """Predict ``raw`` (N, F) and refuse the model unless the answer is sane.

        Args:
            raw: recent raw features; None: the scaler's centre (a typical bar).

        Raises:
            ModelFileError: probabilities that are not finite or do not sum to 1.
        """
        if raw is None:
            from selfdistill.features import Scaler

            raw = Scaler.from_dict(self.bundle.scaler or {}).center_
        probs, chosen = self.predict(np.atleast_2d(raw))
        sums = chosen.sum(axis=1)
        if not (np.isfinite(probs).all() and np.isfinite(chosen).all()) or \
                np.abs(sums - 1.0).max() > _SUM_TOLERANCE:
            raise ModelFileError(f"the model in '{self.path}' failed its self-check: "
                                 f"probabilities {chosen[0].tolist()} on the latest features "
                                 "(weights, scaler or temperature broken)")


def model_id(model_dir: Path) -> str:
    """The first 12 hex digits of the sha256 of ``model.json`` (it names every member's
    sha256, so the id changes exactly when the weights or the settings do)."""
    manifest = Path(model_dir) / MANIFEST
    try:
        return hashlib.sha256(manifest.read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise ModelFileError(f"cannot read '{manifest}': {exc.strerror or exc}") from exc


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def predict_candles_numpy(model_dir: Path, candles: pd.DataFrame, *,
                          gaps: str | None = None) -> pd.DataFrame:
    """:func:`~selfdistill.serving.predict.predict_candles` with the NumPy forward.

    Same columns and rows (``open_time``, ``p_<class>``, ``pred``, ``regime``, the
    disagreement measures, ``uncertainty``); no torch import.

    Raises:
        ModelFileError: the model is broken or has no NumPy forward.
        DataError: no candle has complete features (the message says why).
    """
    model = SignalModel.load(model_dir)
    bundle = model.bundle
    candles = _gap_policy(bundle, candles, gaps)
    feats = _features(bundle, candles)
    raw = feats.to_numpy(dtype=np.float64)
    ok = np.isfinite(raw).all(axis=1)
    if not ok.any():
        _no_complete_row(bundle, candles, gaps or bundle.gap_policy or "auto")
    probs, chosen = model.predict(raw[ok])
    _check_finite(chosen, feats.index[ok], bundle)
    frame = _frame(feats.index, ok, probs, chosen, bundle)
    frame.attrs["model_id"] = model.model_id
    return frame


def _float(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def signal_record(open_time: pd.Timestamp, close: float, classes: list[str],
                  chosen: np.ndarray | None, probs: np.ndarray | None, *,
                  model_id: str, method: str) -> dict[str, Any]:
    """The JSON object of one bar's signal.

    Args:
        open_time: the bar's open time (UTC).
        close: its close.
        classes: class names in output order.
        chosen: (C,) calibrated probabilities of the selected member; None when the bar's
            features are incomplete (warm-up, or a window across missing candles).
        probs: (M, C) the members' own probabilities (for the uncertainty); None likewise.
        model_id, method: the model's identity.

    Returns:
        ``open_time`` (ISO 8601), ``close``, ``regime`` (None without features),
        ``probabilities`` ({class: p}), ``uncertainty`` (mutual information between
        members, or a single member's entropy), ``disagreement`` (every measure),
        ``model_id``, ``method``.
    """
    record: dict[str, Any] = {"open_time": open_time.isoformat(), "close": float(close)}
    if chosen is None or probs is None:
        record |= {"regime": None, "probabilities": None, "uncertainty": None,
                   "disagreement": None}
    else:
        measures = (disagreement(probs[:, None, :]) if probs.shape[0] > 1
                    else {"entropy": entropy(chosen[None, :])})
        found = {name: float(values[0]) for name, values in measures.items()}
        record |= {"regime": classes[int(np.argmax(chosen))],
                   "probabilities": dict(zip(classes, map(float, chosen), strict=True)),
                   "uncertainty": found["mutual_information" if probs.shape[0] > 1
                                        else "entropy"],
                   "disagreement": found}
    return record | {"model_id": model_id, "method": method}


def records_from_frame(frame: pd.DataFrame, closes: pd.Series, classes: list[str], *,
                       model_id: str, method: str) -> list[dict[str, Any]]:
    """:func:`signal_record` of every row of a ``predict`` frame (``closes`` by open time)."""
    measures = [c for c in ("variance", "mutual_information", "flip_rate", "entropy")
                if c in frame.columns]
    out = []
    for values in frame.to_dict(orient="records"):
        stamp = pd.Timestamp(values["open_time"])
        record = signal_record(stamp, float(closes.loc[stamp]), classes, None, None,
                               model_id=model_id, method=method)
        if values["regime"] is not None and values["regime"] is not pd.NA:
            record |= {"regime": str(values["regime"]),
                       "probabilities": {c: float(values[f"p_{c}"]) for c in classes},
                       "uncertainty": _float(values["uncertainty"]),
                       "disagreement": {m: _float(values[m]) for m in measures}}
        out.append(record)
    return out

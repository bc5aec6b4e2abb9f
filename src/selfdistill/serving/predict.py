"""Regime probabilities for new candles from a saved model (behind ``selfdistill predict``).

Features are computed with the same causal functions and the model's stored
training statistics (scaler), then every member (generation) predicts; the
selected member gives the probabilities and the regime, the others the
uncertainty. The torch forward is the one the run used, so on the same bars the
numbers equal the run's ``predictions.parquet``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from selfdistill.errors import ConfigError, DataError, ModelFileError
from selfdistill.evaluation.uncertainty import disagreement, entropy
from selfdistill.features import Scaler
from selfdistill.modelio.bundle import MANIFEST, ModelBundle, load_bundle_models
from selfdistill.modelio.jsonio import refuse_pickle

__all__ = ["predict_candles", "resolve_model_dir"]


def resolve_model_dir(path: Path, method: str | None) -> Path:
    """A model directory, or ``<run>/models/<method>`` of a run directory."""
    refuse_pickle(path)
    if path.is_file() and path.name == MANIFEST:
        path = path.parent
    if (path / MANIFEST).is_file() and method is None:
        return path
    models = path / "models"
    if not models.is_dir():
        raise ModelFileError(f"'{path}' is neither a model directory ({MANIFEST}) nor a run "
                             "directory (models/)")
    choices = sorted(p.name for p in models.iterdir() if (p / MANIFEST).is_file())
    if method is None:
        method = "born_again" if "born_again" in choices else (
            choices[0] if len(choices) == 1 else None)
    if method not in choices:
        raise ConfigError(f"--method {method!r} is not among the run's models; choose one of: "
                          f"{', '.join(choices) or '(none saved)'}")
    return models / method


def _features(bundle: ModelBundle, candles: pd.DataFrame) -> pd.DataFrame:
    from selfdistill.features import compute_features

    cfg = bundle.features  # volume pinned to what training used
    if cfg is None:
        raise ModelFileError(f"'{bundle.path}' stores no feature config (trained on custom "
                             "features); predict with SelfDistillClassifier.load() instead")
    feats = compute_features(candles, cfg)
    missing = [c for c in bundle.feature_names if c not in feats.columns]
    if missing:
        raise ModelFileError(f"'{bundle.path}' expects features {missing} that its feature "
                             "config does not produce")
    return feats[list(bundle.feature_names)]


def _no_complete_row(bundle: ModelBundle, candles: pd.DataFrame, policy: str) -> None:
    from selfdistill.features import feature_warmup

    warmup = feature_warmup(bundle.features)
    gaps = int(candles["gap_before"].sum()) if "gap_before" in candles.columns else 0
    hint = (f"; {gaps} gaps are marked as missing candles (gap policy '{policy}'): if this "
            "market closes regularly (stock hours, weekdays), pass --gaps sessions"
            if gaps else f"; pass at least {warmup + 1} candles")
    raise DataError(f"none of the {len(candles)} candles has complete features: the model's "
                    f"features need {warmup} bars of gap-free history before a bar{hint}")


def _gap_policy(bundle: ModelBundle, candles: pd.DataFrame, gaps: str | None) -> pd.DataFrame:
    """Candles under ``gaps``, else the gap policy the model was trained with."""
    from selfdistill.data.sessions import apply_gap_policy

    policy = gaps or bundle.gap_policy or "auto"  # auto: models saved before it was stored
    return apply_gap_policy(candles, policy, source="the candles")


def _check_finite(chosen: np.ndarray, index: pd.Index, bundle: ModelBundle) -> None:
    """Refuse NaN / inf probabilities instead of reporting them as a regime."""
    bad = ~np.isfinite(chosen).all(axis=1)
    if bad.any():
        raise ModelFileError(
            f"'{bundle.path}' gives non-finite probabilities for {int(bad.sum())} of "
            f"{len(chosen)} bars (first at {index[int(np.argmax(bad))]}): its weights, "
            "scaler or temperature are broken; retrain the model or restore its files")


def predict_candles(model_dir: Path, candles: pd.DataFrame, *,
                    gaps: str | None = None) -> pd.DataFrame:
    """Per bar: class probabilities, predicted regime and uncertainty.

    Rows whose features are incomplete (warm-up bars, windows across a gap) get
    NaN probabilities and no regime. ``gaps`` overrides the gap policy the model was
    trained with (``mark``, ``sessions``, ``error``, ``auto``).

    Raises:
        ModelFileError: the model files are broken (non-finite probabilities included).
        DataError: no candle has complete features (the message says why).
    """
    import torch  # here, not at the top: the helpers above serve the torch-free live path

    from selfdistill.methods.base import Member
    from selfdistill.training.loop import probabilities

    models, bundle = load_bundle_models(model_dir)
    candles = _gap_policy(bundle, candles, gaps)
    if bundle.scaler is None:
        raise ModelFileError(f"'{bundle.path}' stores no scaler statistics")
    windows = {int(meta["spec"].get("window", 0)) for meta in bundle.member_meta
               if meta["spec"].get("kind") in ("cnn", "gru")}
    feats = _features(bundle, candles)
    raw = feats.to_numpy(dtype=np.float64)
    ok = np.isfinite(raw).all(axis=1)
    if not ok.any():
        _no_complete_row(bundle, candles, gaps or bundle.gap_policy or "auto")
    x = torch.as_tensor(Scaler.from_dict(bundle.scaler).transform(raw[ok]), dtype=torch.float32)
    if windows:
        from selfdistill.nn.windows import make_windows

        # window models see the last W feature-complete bars (strided view, no copies)
        x = make_windows(x, max(windows))
    members = [Member(keys, model, output=meta.get("output")) for keys, model, meta
               in zip(bundle.member_keys, models, bundle.member_meta, strict=True)]
    logits = [m.logits(x).double() for m in members]
    # disagreement uses the members' own probabilities (as the run does); the reported
    # probabilities are the selected member's, calibrated by its validation temperature
    probs = np.stack([probabilities(z) for z in logits])  # (M, N_ok, C)
    chosen = probabilities(logits[bundle.selected], temperature=bundle.temperature)
    _check_finite(chosen, feats.index[ok], bundle)
    return _frame(feats.index, ok, probs, chosen, bundle)


def _frame(index: pd.Index, ok: np.ndarray, probs: np.ndarray, chosen: np.ndarray,
           bundle: ModelBundle) -> pd.DataFrame:
    n, n_classes = len(index), probs.shape[2]
    selected = np.full((n, n_classes), np.nan)
    selected[ok] = chosen
    out = pd.DataFrame({"open_time": index})
    for c, name in enumerate(bundle.classes):
        out[f"p_{name}"] = selected[:, c]
    pred = np.full(n, -1, dtype=np.int64)
    pred[ok] = chosen.argmax(axis=1)
    out["pred"] = pd.array(np.where(ok, pred, 0), dtype="Int64")
    out.loc[~ok, "pred"] = pd.NA
    out["regime"] = pd.Series([str(bundle.classes[p]) if o else None
                               for p, o in zip(pred, ok, strict=True)], dtype="string")
    measures = disagreement(probs) if probs.shape[0] > 1 else {"entropy": entropy(chosen)}
    for name, values in measures.items():
        column = np.full(n, np.nan)
        column[ok] = values
        out[name] = column
    out["uncertainty"] = out["mutual_information" if probs.shape[0] > 1 else "entropy"]
    return out

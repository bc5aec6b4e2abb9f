"""Causal features from candles: row ``t`` reads bars ``<= t`` only.

Row ``t`` of :func:`compute_features` reads bars ``<= t`` and nothing else: every
feature is a trailing window (pandas ``rolling`` walks forward, so a value at
``t`` is computed from the prefix of the series alone). Rows whose window is not
yet full are NaN (warm-up); the pipeline drops them.

Gaps: when a bar carries ``gap_before = True`` (the first bar after missing
candles), any return-based feature whose look-back straddles that gap is set to
NaN, because a close-to-close move across missing candles is not an n-bar move.
Bar-local quantities (high-low range, volume, close position) and their trailing
means are kept across gaps.

Volume: ``features.volume: auto`` (the default) drops the volume feature when the
candles' volume is constant (FX and index exports often carry volume 0 on every bar,
which would leave no row with complete features); ``on`` keeps it (and refuses
all-zero volume by name), ``off`` drops it. A model's stored feature config has the
volume setting pinned (:func:`pin_volume`), so prediction computes the same columns.

The features are scaled by :class:`selfdistill.features.scaler.Scaler`, fitted on
training rows only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from selfdistill.config import FeaturesConfig
from selfdistill.errors import DataError

__all__ = ["compute_features", "constant_volume", "feature_names", "feature_warmup",
           "features_config", "pin_volume", "resolve_volume"]

logger = logging.getLogger(__name__)

_REQUIRED = ("open", "high", "low", "close", "volume")
_FLAT_VARIANCE = 1e-18  # below this a window of log returns is flat: skew := 0


def _unique(windows: list[int]) -> list[int]:
    """Windows in the order given, duplicates removed (names must be unique)."""
    return list(dict.fromkeys(int(w) for w in windows))


def feature_names(cfg: FeaturesConfig | None = None) -> list[str]:
    """The column names :func:`compute_features` returns, in order.

    Args:
        cfg: feature settings; defaults when None.

    Returns:
        ``ret_{w}`` per return window, ``vol_{w}`` per volatility window, ``range``,
        ``range_mean_{w}``, ``volume_rel_{w}`` (unless ``volume`` is ``off``),
        ``close_pos``, ``ma_dist_{w}`` per moving-average window, ``skew_{w}``.
    """
    cfg = features_config(cfg)
    names = [f"ret_{w}" for w in _unique(cfg.return_windows)]
    names += [f"vol_{w}" for w in _unique(cfg.volatility_windows)]
    names += ["range", f"range_mean_{cfg.range_window}"]
    names += [f"volume_rel_{cfg.volume_window}"] if cfg.volume != "off" else []
    names += ["close_pos"]
    names += [f"ma_dist_{w}" for w in _unique(cfg.ma_windows)]
    names += [f"skew_{cfg.skew_window}"]
    return names


def feature_warmup(cfg: FeaturesConfig | None = None) -> int:
    """Bars of history the slowest feature needs: rows ``t < warmup`` may be NaN."""
    cfg = features_config(cfg)
    volume = [cfg.volume_window] if cfg.volume != "off" else []
    return max(
        *cfg.return_windows, *cfg.volatility_windows, *cfg.ma_windows,
        *volume, cfg.range_window, cfg.skew_window,
    )


def features_config(cfg: FeaturesConfig | Mapping[str, Any] | None) -> FeaturesConfig:
    """``cfg`` as a typed FeaturesConfig: defaults for None, a mapping validated.

    Model files store the feature config as a plain mapping
    (``ModelBundle.feature_config``); every function here accepts it as it is.

    Raises:
        DataError: the mapping is not a valid feature config.
    """
    if cfg is None:
        return FeaturesConfig()
    if isinstance(cfg, FeaturesConfig):
        return cfg
    from pydantic import ValidationError

    from selfdistill.config import validation_messages

    try:
        return FeaturesConfig.model_validate(dict(cfg))
    except ValidationError as exc:
        why = "; ".join(f"{path}: {text}" for path, text in
                        validation_messages(exc, FeaturesConfig))
        raise DataError(f"invalid feature config ({why})") from exc
    except (TypeError, ValueError) as exc:  # not a mapping at all
        raise DataError(f"invalid feature config {cfg!r}: not a mapping of settings") from exc


def constant_volume(candles: pd.DataFrame) -> float | None:
    """The volume every bar has when it is the same on all of them, else None."""
    v = candles["volume"].to_numpy(dtype=np.float64)
    if len(v) == 0 or not np.all(v == v[0]):
        return None
    return float(v[0])


def resolve_volume(candles: pd.DataFrame, cfg: FeaturesConfig) -> FeaturesConfig:
    """``cfg`` with ``volume: auto`` decided for these candles (``on`` / ``off``).

    Raises:
        DataError: ``volume: on`` and the volume is 0 on every bar.
    """
    const = constant_volume(candles) if len(candles) > 1 else None
    if cfg.volume == "on" and const == 0.0:
        raise DataError(f"volume is 0 on every one of the {len(candles)} candles (an FX or "
                        "index export?), so the volume feature is undefined on every bar; set "
                        "features.volume: off (or auto) to train without volume features")
    if cfg.volume != "auto":
        return cfg
    if const is not None:
        logger.warning("volume is constant (%g) on every one of the %d candles (an FX or index "
                       "export?): volume features dropped (features.volume: auto; set on / off "
                       "to choose)", const, len(candles))
        return cfg.model_copy(update={"volume": "off"})
    return cfg.model_copy(update={"volume": "on"})


def pin_volume(cfg: FeaturesConfig | Mapping[str, Any] | None,
               names: Sequence[str]) -> FeaturesConfig:
    """``cfg`` with ``volume`` fixed to what the feature ``names`` of a trained model say."""
    cfg = features_config(cfg)
    if cfg.volume != "auto":
        return cfg
    used = any(str(n).startswith("volume_rel_") for n in names)
    return cfg.model_copy(update={"volume": "on" if used else "off"})


def _check_candles(candles: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED if c not in candles.columns]
    if missing:
        raise DataError(
            f"candles lack column(s) {missing}; features need {list(_REQUIRED)} "
            f"(got {list(candles.columns)})"
        )


def _gap_count(candles: pd.DataFrame) -> np.ndarray:
    """(N,) cumulative number of ``gap_before`` marks up to and including each bar."""
    if "gap_before" not in candles.columns:
        return np.zeros(len(candles), dtype=np.int64)
    return np.cumsum(candles["gap_before"].to_numpy(dtype=bool), dtype=np.int64)


def _crosses_gap(gaps: np.ndarray, span: int) -> np.ndarray:
    """(N,) True where a gap lies between bar ``t - span`` and bar ``t``."""
    out = np.zeros(len(gaps), dtype=bool)
    if span <= 0 or span >= len(gaps):
        return out
    out[span:] = gaps[span:] - gaps[:-span] > 0
    return out


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """(N,) trailing mean over ``window`` values ending at t; NaN until full or on NaN."""
    return pd.Series(x).rolling(window, min_periods=window).mean().to_numpy()


def _rolling_skew(r: np.ndarray, window: int) -> np.ndarray:
    """(N,) population skewness of the last ``window`` values; 0 for a flat window."""
    mean = _rolling_mean(r, window)
    raw2 = _rolling_mean(r * r, window)
    m2 = raw2 - mean**2
    m3 = _rolling_mean(r**3, window) - 3 * mean * raw2 + 2 * mean**3
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = m3 / np.power(np.maximum(m2, 0.0), 1.5)
    return np.where(m2 > _FLAT_VARIANCE, skew, np.where(np.isnan(m2), np.nan, 0.0))


def _return_features(log_close: np.ndarray, r1: np.ndarray, gaps: np.ndarray,
                     cfg: FeaturesConfig) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    n = len(log_close)
    for w in _unique(cfg.return_windows):
        ret = np.full(n, np.nan)
        ret[w:] = log_close[w:] - log_close[:-w]
        out[f"ret_{w}"] = np.where(_crosses_gap(gaps, w), np.nan, ret)
    for w in _unique(cfg.volatility_windows):
        # realised volatility: sqrt(mean r^2); r1 is NaN across gaps, so is the window
        out[f"vol_{w}"] = np.sqrt(_rolling_mean(r1 * r1, w))
    return out


def _bar_features(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                  v: np.ndarray, cfg: FeaturesConfig) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    bar_range = np.log(h / lo)
    out["range"] = bar_range
    out[f"range_mean_{cfg.range_window}"] = _rolling_mean(bar_range, cfg.range_window)
    mean_volume = _rolling_mean(v, cfg.volume_window)
    with np.errstate(divide="ignore", invalid="ignore"):
        # log(1 + v / mean): finite for zero volume, undefined when the window traded nothing
        rel = np.log1p(v / mean_volume)
        pos = (c - lo) / (h - lo)
    if cfg.volume != "off":
        out[f"volume_rel_{cfg.volume_window}"] = np.where(mean_volume > 0, rel, np.nan)
    out["close_pos"] = np.where(h > lo, pos, 0.5)
    return out


def _trend_features(c: np.ndarray, log_close: np.ndarray, r1: np.ndarray,
                    gaps: np.ndarray, cfg: FeaturesConfig) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for w in _unique(cfg.ma_windows):
        dist = log_close - np.log(_rolling_mean(c, w))
        out[f"ma_dist_{w}"] = np.where(_crosses_gap(gaps, w - 1), np.nan, dist)
    out[f"skew_{cfg.skew_window}"] = _rolling_skew(r1, cfg.skew_window)
    return out


def compute_features(candles: pd.DataFrame,
                     cfg: FeaturesConfig | Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Causal features: row t uses bars <= t only.

    Args:
        candles: validated candles (see ``selfdistill.data.candles``), N rows, with
            float columns open/high/low/close/volume and optionally a boolean
            ``gap_before`` marking the first bar after missing candles.
        cfg: feature settings (a FeaturesConfig, or the mapping a model file stores);
            defaults when None. ``volume: auto`` is decided on these candles
            (:func:`resolve_volume`).

    Returns:
        (N, F) float64 frame with the same index as ``candles`` and the columns of
        :func:`feature_names`. Warm-up rows and return windows straddling a gap
        hold NaN.
    """
    _check_candles(candles)
    cfg = resolve_volume(candles, features_config(cfg))
    o, h, lo, c, v = (candles[k].to_numpy(dtype=np.float64) for k in _REQUIRED)
    gaps = _gap_count(candles)
    log_close = np.log(c)
    r1 = np.full(len(c), np.nan)
    r1[1:] = np.diff(log_close)
    r1[_crosses_gap(gaps, 1)] = np.nan  # a close-to-close move across missing bars
    cols = _return_features(log_close, r1, gaps, cfg)
    cols |= _bar_features(o, h, lo, c, v, cfg)
    cols |= _trend_features(c, log_close, r1, gaps, cfg)
    frame = pd.DataFrame(cols, index=candles.index)[feature_names(cfg)]
    logger.debug("computed %d features on %d bars", frame.shape[1], frame.shape[0])
    return frame.astype(np.float64)

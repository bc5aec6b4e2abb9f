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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from selfdistill.config import FeaturesConfig
from selfdistill.errors import DataError

__all__ = ["compute_features", "constant_volume", "feature_columns", "feature_names",
           "feature_warmup", "features_config", "pin_volume", "resolve_volume"]

logger = logging.getLogger(__name__)

_REQUIRED = ("open", "high", "low", "close", "volume")
_FLAT_VARIANCE = 1e-18  # below this a window of log returns is flat: skew := 0
_BLOCK = 1 << 18  # bars per block of the rolling-window features (bounds their scratch)


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


def _gap_count(candles: pd.DataFrame) -> np.ndarray | None:
    """(N,) cumulative number of ``gap_before`` marks up to each bar; None without gaps."""
    if "gap_before" not in candles.columns:
        return None
    marks = candles["gap_before"].to_numpy(dtype=bool)
    return np.cumsum(marks, dtype=np.int64) if marks.any() else None


def _crosses_gap(gaps: np.ndarray, span: int) -> np.ndarray:
    """(N,) True where a gap lies between bar ``t - span`` and bar ``t``."""
    out = np.zeros(len(gaps), dtype=bool)
    if span <= 0 or span >= len(gaps):
        return out
    out[span:] = gaps[span:] - gaps[:-span] > 0
    return out


def _blank_gaps(x: np.ndarray, gaps: np.ndarray | None, span: int) -> np.ndarray:
    """``x`` with NaN (in place) where its ``span``-bar look-back straddles a gap."""
    if gaps is not None:
        x[_crosses_gap(gaps, span)] = np.nan
    return x


def _windowed(fn: Callable[[np.ndarray, int], np.ndarray], x: np.ndarray,
              window: int) -> np.ndarray:
    """``fn(x, window)`` computed over blocks of :data:`_BLOCK` bars.

    ``fn`` is a trailing-window map: its row ``t`` reads ``x[t - window + 1 .. t]``
    only, so each block, given the ``window - 1`` bars before it, yields that block's
    rows. The scratch memory of ``fn`` (pandas' window bounds, moment arrays) is then
    that of one block, not of all N bars. Blocks start at fixed bars (0, _BLOCK, ...),
    so a row's value never depends on later bars.
    """
    n = len(x)
    if n <= 2 * _BLOCK:
        return fn(x, window)
    out = np.empty(n)
    for lo in range(0, n, _BLOCK):
        first = max(0, lo - window + 1)
        hi = min(n, lo + _BLOCK)
        out[lo:hi] = fn(x[first:hi], window)[lo - first:]
    return out


def _pandas_mean(x: np.ndarray, window: int) -> np.ndarray:
    return pd.Series(x, copy=False).rolling(window, min_periods=window).mean().to_numpy()


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """(N,) trailing mean over ``window`` values ending at t; NaN until full or on NaN."""
    return _windowed(_pandas_mean, x, window)


def _realised_vol(r: np.ndarray, window: int) -> np.ndarray:
    """(N,) ``sqrt(mean r^2)`` over the last ``window`` returns."""
    vol = _pandas_mean(np.square(r), window)
    return np.sqrt(vol, out=vol)


def _skew(r: np.ndarray, window: int) -> np.ndarray:
    """(N,) population skewness of the last ``window`` values; 0 for a flat window.

    ``m3 / m2^1.5`` from the rolling raw moments, cubes as products (``np.power``
    is ~25x slower).
    """
    mean = _pandas_mean(r, window)
    raw2 = _pandas_mean(np.square(r), window)
    m2 = raw2 - np.square(mean)
    m3 = _pandas_mean(r * r * r, window) - 3.0 * mean * raw2 + 2.0 * (mean * mean * mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.maximum(m2, 0.0)
        skew = m3 / (var * np.sqrt(var))
    skew[~(m2 > _FLAT_VARIANCE)] = 0.0  # a flat window has no skew ...
    skew[np.isnan(m2)] = np.nan  # ... but a window with a NaN has no value at all
    return skew


def _log_return(log_close: np.ndarray, w: int, gaps: np.ndarray | None) -> np.ndarray:
    """(N,) ``log(close[t] / close[t - w])``; NaN in warm-up and across gaps."""
    ret = np.full(len(log_close), np.nan)
    np.subtract(log_close[w:], log_close[:-w], out=ret[w:])
    return _blank_gaps(ret, gaps, w)


def _ma_distance(close: np.ndarray, log_close: np.ndarray, w: int,
                 gaps: np.ndarray | None) -> np.ndarray:
    """(N,) ``log(close / SMA_w)``; NaN in warm-up and where the average spans a gap."""
    dist = _rolling_mean(close, w)
    np.log(dist, out=dist)
    np.subtract(log_close, dist, out=dist)
    return _blank_gaps(dist, gaps, w - 1)


def _one_bar_returns(log_close: np.ndarray, gaps: np.ndarray | None) -> np.ndarray:
    """(N,) 1-bar log returns; NaN at bar 0 and across missing bars."""
    r1 = np.full(len(log_close), np.nan)
    np.subtract(log_close[1:], log_close[:-1], out=r1[1:])
    return _blank_gaps(r1, gaps, 1)


def _price_columns(close: np.ndarray, gaps: np.ndarray | None, cfg: FeaturesConfig
                   ) -> Iterator[tuple[str, np.ndarray]]:
    """Features of the close series; log close, then 1-bar returns, held one at a time.

    Every column is made by a helper and yielded at once: this frame holds no column
    while the caller works on it.
    """
    log_close = np.log(close)
    for w in _unique(cfg.return_windows):
        yield f"ret_{w}", _log_return(log_close, w, gaps)
    for w in _unique(cfg.ma_windows):
        yield f"ma_dist_{w}", _ma_distance(close, log_close, w, gaps)
    r1 = _one_bar_returns(log_close, gaps)
    del log_close
    for w in _unique(cfg.volatility_windows):
        # realised volatility: sqrt(mean r^2); r1 is NaN across gaps, so is the window
        yield f"vol_{w}", _windowed(_realised_vol, r1, w)
    yield f"skew_{cfg.skew_window}", _windowed(_skew, r1, cfg.skew_window)


def _bar_range(h: np.ndarray, lo: np.ndarray) -> np.ndarray:
    out = np.divide(h, lo)
    return np.log(out, out=out)


def _relative_volume(v: np.ndarray, w: int) -> np.ndarray:
    """(N,) ``log(1 + v / mean_w(v))``: finite for zero volume, NaN when the window traded
    nothing."""
    mean_volume = _rolling_mean(v, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.log1p(v / mean_volume)
    rel[~(mean_volume > 0)] = np.nan
    return rel


def _close_position(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(N,) ``(close - low) / (high - low)``; 0.5 for a bar with ``high == low``."""
    pos = np.subtract(c, lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        pos /= h - lo
    pos[~(h > lo)] = 0.5
    return pos


def _bar_columns(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray,
                 cfg: FeaturesConfig) -> Iterator[tuple[str, np.ndarray]]:
    """Bar-local features and their trailing means (kept across gaps)."""
    yield f"range_mean_{cfg.range_window}", _rolling_mean(_bar_range(h, lo), cfg.range_window)
    yield "range", _bar_range(h, lo)
    if cfg.volume != "off":
        yield f"volume_rel_{cfg.volume_window}", _relative_volume(v, cfg.volume_window)
    yield "close_pos", _close_position(h, lo, c)


def feature_columns(candles: pd.DataFrame, cfg: FeaturesConfig | Mapping[str, Any] | None = None
                    ) -> Iterator[tuple[str, np.ndarray]]:
    """Every feature of :func:`compute_features`, one ``(name, column)`` at a time.

    The columns come in the order that holds the fewest shared intermediates (log
    close, then 1-bar returns), not in :func:`feature_names` order: place them by
    name. Each column is a new (N,) float64 array that the generator no longer
    reads, so the caller may overwrite it. :func:`compute_features` is built from
    this generator, so a model trained column by column and one served from the
    frame see the same numbers.

    Args:
        candles: validated candles (see :func:`compute_features`).
        cfg: feature settings; ``volume: auto`` is decided on these candles.

    Yields:
        ``(name, (N,) float64)`` for every name of ``feature_names(cfg)``, once each.
    """
    _check_candles(candles)
    cfg = resolve_volume(candles, features_config(cfg))
    h, lo, c, v = (candles[k].to_numpy(dtype=np.float64) for k in _REQUIRED[1:])
    yield from _price_columns(c, _gap_count(candles), cfg)
    yield from _bar_columns(h, lo, c, v, cfg)


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
    cols = dict(feature_columns(candles, cfg))
    frame = pd.DataFrame({name: cols.pop(name) for name in feature_names(cfg)},
                         index=candles.index)
    logger.debug("computed %d features on %d bars", frame.shape[1], frame.shape[0])
    return frame

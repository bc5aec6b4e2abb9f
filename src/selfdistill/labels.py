"""Regime labels: 0 = bull, 1 = bear, 2 = sideways.

Every labelled row ``t`` records the interval ``[start, end]`` of bar positions
its label looked at, so that :mod:`selfdistill.splits` can purge by it.

Methods:

- ``forward`` (default, predictive): ``r = log(close[t+h] / close[t])`` against a
  band ``k * sigma_t * sqrt(h)``, where ``sigma_t`` is the EWM standard deviation
  of 1-bar log returns up to and including bar ``t``. Bull above the band, bear
  below minus the band, sideways inside. Interval ``[t, t + h]``.
- ``triple_barrier`` (Lopez de Prado): the same band as upper / lower barriers on
  the close path ``t+1 .. t+h``; the first barrier crossed gives bull or bear,
  reaching ``t + h`` untouched gives sideways. Interval ``[t, touch bar]``.
- ``same_bar`` (the source chapter's labels): bar ``t``'s own return against
  ``k * sigma_t``. Descriptive, NOT predictive: a model that sees bar ``t``'s
  return solves a trivial task. Interval ``[t, t]``, horizon 0.

Controlled label noise (``labels.noise``, for studies of robustness) is applied by
:func:`noisy_labels` to a cell's *training* rows only, after the labels are made.

Rows are dropped when the horizon runs past the data, when a ``gap_before``
bar lies inside ``(t, t + h]`` (the move would span missing candles), or while
``sigma_t`` is still warming up (fewer than ``vol_span`` returns seen).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from selfdistill.config import LabelNoiseConfig, LabelsConfig
from selfdistill.errors import ConfigError, DataError

__all__ = [
    "BEAR",
    "BULL",
    "CLASS_NAMES",
    "LABEL_METHODS",
    "NOISE_PAIRS",
    "SIDEWAYS",
    "LabelSet",
    "make_labels",
    "noisy_labels",
    "trailing_volatility",
]

logger = logging.getLogger(__name__)

CLASS_NAMES = ("bull", "bear", "sideways")
BULL, BEAR, SIDEWAYS = 0, 1, 2
LABEL_METHODS = ("forward", "triple_barrier", "same_bar")
_CHUNK_CELLS = 1 << 20  # path cells per triple-barrier block
#: The two classes a class-conditional ``labels.noise.kind`` flips between
#: (``symmetric``: any class to any other).
NOISE_PAIRS = {"bull_sideways": (BULL, SIDEWAYS), "bear_sideways": (BEAR, SIDEWAYS),
               "bull_bear": (BULL, BEAR)}
_NOISE_STREAM = 0x6E6F6973  # keeps the noise draws apart from other users of the seed


@dataclass
class LabelSet:
    """Labels of the rows that have them.

    Attributes:
        y: (L,) int8 labels indexed by the ``open_time`` of each labelled bar.
        start: (L,) int64 bar position ``t`` of each labelled row (into the candles).
        end: (L,) int64 last bar position its label looked at (``t + h`` for forward).
        class_names: name of each class id.
        method: the labelling method.
        horizon: bars the label looks ahead (0 for ``same_bar``).
    """

    y: pd.Series
    start: np.ndarray
    end: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES
    method: str = "forward"
    horizon: int = 12

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self) -> dict[str, int]:
        """Number of rows per class name."""
        counts = np.bincount(self.y.to_numpy(), minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, counts, strict=True)}


def _log_returns(candles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(N,) log close and (N,) 1-bar log returns (NaN at bar 0 and after a gap)."""
    log_close = np.log(candles["close"].to_numpy(dtype=np.float64))
    r1 = np.full(len(log_close), np.nan)
    np.subtract(log_close[1:], log_close[:-1], out=r1[1:])
    if "gap_before" in candles.columns:
        r1[candles["gap_before"].to_numpy(dtype=bool)] = np.nan
    return log_close, r1


def _ewm_std(r1: np.ndarray, span: int) -> np.ndarray:
    return pd.Series(r1, copy=False).ewm(span=span, min_periods=span).std().to_numpy()


def trailing_volatility(candles: pd.DataFrame, span: int = 100) -> np.ndarray:
    """EWM standard deviation of 1-bar log returns up to and including each bar.

    Args:
        candles: N candles with a ``close`` column (``gap_before`` honoured: a return
            across missing candles is left out).
        span: EWM span in bars; also the number of returns needed before the value
            is defined.

    Returns:
        (N,) float64 ``sigma_t``; NaN during warm-up. Uses bars ``<= t`` only.
    """
    return _ewm_std(_log_returns(candles)[1], span)


def _gap_in_horizon(candles: pd.DataFrame, horizon: int) -> np.ndarray:
    """(N,) True where a ``gap_before`` bar lies in ``(t, t + horizon]``."""
    out = np.zeros(len(candles), dtype=bool)
    if "gap_before" not in candles.columns or horizon >= len(candles):
        return out
    marks = candles["gap_before"].to_numpy(dtype=bool)
    if not marks.any():
        return out
    gaps = np.cumsum(marks, dtype=np.int64)
    out[: len(gaps) - horizon] = gaps[horizon:] - gaps[:-horizon] > 0
    return out


def _classify(r: np.ndarray, band: np.ndarray) -> np.ndarray:
    """(N,) int8: bull above ``band``, else bear below ``-band``, else (or NaN) sideways."""
    y = np.full(len(r), SIDEWAYS, dtype=np.int8)
    y[r < -band] = BEAR
    y[r > band] = BULL  # written last: bull wins where both hold (a negative band)
    return y


def _forward(log_close: np.ndarray, band: np.ndarray, h: int) -> tuple[np.ndarray, int]:
    """(N - h,) labels of rows 0 .. N - h - 1, and their look-ahead (h bars each)."""
    r = log_close[h:] - log_close[:-h]
    return _classify(r, band[: len(r)]), h


def _first_touch(path: np.ndarray, band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and 1-based touch step of each path row (h when no barrier is crossed).

    Args:
        path: (R, h) log return from bar t to t+1 .. t+h.
        band: (R,) barrier distance.
    """
    h = path.shape[1]
    up, down = path > band[:, None], path < -band[:, None]
    first_up = np.where(up.any(axis=1), up.argmax(axis=1), h)
    first_down = np.where(down.any(axis=1), down.argmax(axis=1), h)
    y = np.where(first_up < first_down, BULL, np.where(first_down < first_up, BEAR, SIDEWAYS))
    return y.astype(np.int8), np.minimum(np.minimum(first_up, first_down) + 1, h)


def _triple_barrier(log_close: np.ndarray, band: np.ndarray,
                    h: int) -> tuple[np.ndarray, np.ndarray]:
    """(N - h,) labels and look-ahead (bars to the touch) of rows 0 .. N - h - 1."""
    windows = np.lib.stride_tricks.sliding_window_view(log_close, h + 1)  # (N - h, h + 1)
    y = np.empty(len(windows), dtype=np.int8)
    steps = np.empty(len(windows), dtype=np.int64)
    chunk = max(1, _CHUNK_CELLS // h)  # bounds memory at a few MB whatever N and h
    for lo in range(0, len(windows), chunk):
        win = windows[lo : lo + chunk]
        path = win[:, 1:] - win[:, :1]  # (R, h): return to t+1 .. t+h
        y[lo : lo + chunk], steps[lo : lo + chunk] = _first_touch(path, band[lo : lo + len(win)])
    return y, steps


def _check_inputs(candles: pd.DataFrame, cfg: LabelsConfig) -> None:
    if "close" not in candles.columns:
        raise DataError(f"candles lack a 'close' column (got {list(candles.columns)})")
    if cfg.method not in LABEL_METHODS:
        raise ConfigError(f"labels.method '{cfg.method}' is not one of {', '.join(LABEL_METHODS)}")


def _rows(keep: np.ndarray) -> tuple[np.ndarray, slice | np.ndarray]:
    """(L,) int64 positions where ``keep``, and the same as a slice when consecutive."""
    start = np.flatnonzero(keep).astype(np.int64, copy=False)
    if len(start) and int(start[-1]) - int(start[0]) == len(start) - 1:
        return start, slice(int(start[0]), int(start[-1]) + 1)
    return start, start


def make_labels(candles: pd.DataFrame, cfg: LabelsConfig | None = None) -> LabelSet:
    """Label every bar that has a full, gap-free horizon and a defined volatility.

    Args:
        candles: N validated candles (``close`` and optionally ``gap_before``).
        cfg: labelling settings (method, horizon h, band width k, vol_span).

    Returns:
        A :class:`LabelSet` with L <= N rows, chronological. ``y`` (and its index) are
        views of per-bar arrays when the labelled bars are consecutive.
    """
    cfg = cfg or LabelsConfig()
    _check_inputs(candles, cfg)
    n, h = len(candles), cfg.horizon
    log_close, r1 = _log_returns(candles)
    sigma = _ewm_std(r1, cfg.vol_span)
    steps: int | np.ndarray
    if cfg.method == "same_bar":
        y, steps = _classify(r1, cfg.k * sigma), 0
        keep = np.isfinite(r1) & np.isfinite(sigma)
        horizon = 0
    else:
        if n <= h:
            raise DataError(f"{n} candles cannot be labelled with horizon {h}; "
                            f"need more than {h} bars (lower labels.horizon or load more data)")
        del r1
        label_fn = _forward if cfg.method == "forward" else _triple_barrier
        y, steps = label_fn(log_close, cfg.k * sigma * np.sqrt(h), h)
        keep = np.isfinite(sigma[: n - h]) & ~_gap_in_horizon(candles, h)[: n - h]
        horizon = h
    del log_close, sigma
    start, rows = _rows(keep)
    if start.size == 0:
        raise DataError(f"no bar could be labelled: {n} candles, horizon {h}, vol_span "
                        f"{cfg.vol_span} (sigma needs {cfg.vol_span} returns first); "
                        "load more data or lower labels.vol_span / labels.horizon")
    labels = pd.Series(y[rows], index=candles.index[rows], name="label", copy=False)
    end = start + (steps if isinstance(steps, int) else steps[rows])
    out = LabelSet(y=labels, start=start, end=end, method=cfg.method, horizon=horizon)
    logger.info("labelled %d of %d bars (%s, h=%d): %s",
                len(out), n, cfg.method, horizon, out.class_counts())
    return out


def noisy_labels(y: np.ndarray, rows: np.ndarray, noise: LabelNoiseConfig, *, seed: int,
                 n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """A copy of ``y`` with a ``noise.rate`` share of the labels at ``rows`` changed.

    Every labelled row ``i`` gets its own uniform draw ``u_i`` (seeded by ``noise.seed``,
    else ``seed``); row ``i`` is flipped when it is in ``rows`` and ``u_i < rate``. So a
    bar's noisy label depends only on the seed and that bar, never on later bars or on
    which fold trains on it, and rows outside ``rows`` (validation, test) keep theirs.

    Args:
        y: (L,) int64 labels of every labelled row.
        rows: positions into ``y`` that may be flipped (a cell's training rows).
        noise: rate and kind: ``symmetric`` moves a flipped label to one of the other
            classes at random; a kind of :data:`NOISE_PAIRS` flips only between its
            two classes (the third class is never touched).
        seed: the cell's seed (used when ``noise.seed`` is None).
        n_classes: number of classes.

    Returns:
        (L,) int64 labels; ``y`` itself when the rate is 0.

    >>> y = np.zeros(10_000, dtype=np.int64)
    >>> flipped = noisy_labels(y, np.arange(5_000), LabelNoiseConfig(rate=0.2), seed=0)
    >>> bool(abs((flipped[:5_000] != 0).mean() - 0.2) < 0.02), bool((flipped[5_000:] == 0).all())
    (True, True)
    """
    if noise.rate == 0.0 or len(rows) == 0:
        return y
    root = noise.seed if noise.seed is not None else seed
    u = np.random.default_rng([root, _NOISE_STREAM, 0]).random(len(y))  # (L,) one per row
    step = np.random.default_rng([root, _NOISE_STREAM, 1]).integers(1, n_classes, len(y))
    flip = np.zeros(len(y), dtype=bool)
    flip[rows] = u[rows] < noise.rate
    out = y.copy()
    if noise.kind == "symmetric":
        out[flip] = (y[flip] + step[flip]) % n_classes  # uniformly one of the other classes
    else:
        a, b = NOISE_PAIRS[noise.kind]
        flip &= (y == a) | (y == b)
        out[flip] = np.where(y[flip] == a, b, a)
    logger.info("label noise (%s, rate %g): %d of %d training labels changed",
                noise.kind, noise.rate, int(flip.sum()), len(rows))
    return out

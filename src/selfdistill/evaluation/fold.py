"""The data of one experiment: candles -> dataset -> a cell's scaled inputs.

::

    candles -> causal features -> labels (t+1..t+h) -> Dataset (no feature matrix)
      -> purged split -> per cell: features column by column, scaled on its training
         rows only -> TrainData (float32, one (R, F) array)

Fitting and scoring a cell are in :mod:`selfdistill.evaluation.cell` and
:mod:`selfdistill.evaluation.scoring`; folds and seeds are loops around them
(:mod:`selfdistill.evaluation.experiment`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from selfdistill.config import FeaturesConfig, RunConfig
from selfdistill.data.sessions import SESSION_GAP_SHARE, apply_gap_policy
from selfdistill.errors import DataError
from selfdistill.features import (
    Scaler,
    ScalerKind,
    feature_columns,
    feature_names,
    resolve_volume,
)
from selfdistill.labels import LabelSet, make_labels, noisy_labels
from selfdistill.methods import TrainData
from selfdistill.splits import Split, check_no_leak, purged_split

__all__ = [
    "SESSION_GAP_SHARE",
    "Dataset",
    "apply_session_policy",
    "build_dataset",
    "holdout_split",
    "load_candles",
    "make_train_data",
    "member_name",
    "scaled_inputs",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")



@dataclass
class Dataset:
    """Labelled rows ready to split: the candles, their labels, and how to make features.

    No feature matrix is kept: each cell computes its scaled inputs from the candles,
    column by column (:func:`make_train_data`), so a cell holds one float32 matrix.

    Attributes:
        candles: the validated candles (all bars).
        labels: the LabelSet of the rows; ``start`` / ``end`` are bar positions.
        feature_config: the feature settings, ``volume`` decided on all the candles.
        truth: (R,) int8 true regime of each row (synthetic data only).
        interval: the bar interval (Bybit spelling) when known.
    """

    candles: pd.DataFrame
    labels: LabelSet
    feature_config: FeaturesConfig
    truth: np.ndarray | None = None
    interval: str | None = None

    @property
    def n_rows(self) -> int:
        return len(self.labels)

    @cached_property
    def bars(self) -> slice | np.ndarray:
        """The candle position of each row: a slice when the rows are consecutive bars."""
        return _as_slice(self.labels.start)

    @cached_property
    def times(self) -> pd.DatetimeIndex:
        """(R,) open time of each labelled row (a view of the candles' index when it can)."""
        return pd.DatetimeIndex(self.candles.index[self.bars])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(feature_names(self.feature_config))

    def rows_of(self, column: np.ndarray) -> np.ndarray:
        """(R,) the values of a per-bar (N,) column at the labelled rows."""
        return column[self.bars]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to worker processes, Ray's object store) without the cached views."""
        return {k: v for k, v in self.__dict__.items() if k not in _CACHED}

    def head(self, n: int) -> Dataset:
        """The first ``n`` labelled rows (the candles stay: features are causal)."""
        lab = self.labels
        labels = LabelSet(y=lab.y.iloc[:n], start=lab.start[:n], end=lab.end[:n],
                          class_names=lab.class_names, method=lab.method, horizon=lab.horizon)
        truth = None if self.truth is None else self.truth[:n]
        return Dataset(self.candles, labels, self.feature_config, truth, self.interval)


_CACHED = ("bars", "times")  # Dataset's cached properties, rebuilt after unpickling


def _as_slice(rows: np.ndarray) -> slice | np.ndarray:
    """``rows`` as a slice when they are consecutive increasing integers, else as they are."""
    rows = np.asarray(rows)
    if len(rows) == 0 or int(rows[-1]) - int(rows[0]) != len(rows) - 1:
        return rows
    if len(rows) > 1 and not bool((np.diff(rows) == 1).all()):  # e.g. [0, 0, 2]
        return rows
    return slice(int(rows[0]), int(rows[-1]) + 1)


def load_candles(cfg: RunConfig) -> tuple[pd.DataFrame, pd.Series | None, str | None]:
    """Candles, the true regime per bar (synthetic only) and the bar interval."""
    data = cfg.data
    if data.source == "synthetic":
        from selfdistill.data.synthetic import generate_market

        syn = data.synthetic
        candles, truth = generate_market(
            syn.n_bars, seed=cfg.seed if syn.seed is None else syn.seed,
            persistence=syn.persistence, interval=syn.interval, start=syn.start,
            start_price=syn.start_price)
        return candles, truth, syn.interval
    gaps: Literal["error", "mark"] = "error" if data.gaps == "error" else "mark"
    # (sessions are decided after loading, from how often gaps occur)
    if data.source in ("csv", "parquet"):
        from selfdistill.data.files import load_candles_file
        from selfdistill.data.intervals import infer_interval

        assert data.path is not None  # checked by the config schema
        source = str(data.path)
        candles = load_candles_file(data.path, interval=data.interval, gaps=gaps,
                                    time_format=data.time_format)
        interval = data.interval or infer_interval(pd.DatetimeIndex(candles.index))
    else:
        from selfdistill.data.store import load_or_fetch

        source = f"{data.bybit.category} {data.bybit.symbol} {data.bybit.interval}"
        candles, interval = load_or_fetch(data.bybit, gaps=gaps), data.bybit.interval
    return apply_session_policy(candles, data.gaps, source=source), None, interval


def apply_session_policy(candles: pd.DataFrame, policy: str, *, source: str = "candles"
                         ) -> pd.DataFrame:
    """Clear ``gap_before`` for markets that close regularly (``sessions`` / ``auto``).

    A stock market's nights and weekends are not missing candles: there, consecutive
    rows are consecutive bars. A 24/7 market's rare gaps (exchange maintenance) stay
    marked, and features and labels never span them. The resolved policy is kept in
    ``attrs["gap_policy"]`` (model files store it; see :mod:`selfdistill.data.sessions`).
    """
    return apply_gap_policy(candles, policy, source=source)


def build_dataset(cfg: RunConfig, candles: pd.DataFrame, truth: pd.Series | None = None,
                  interval: str | None = None) -> Dataset:
    """Labels on the rows where every feature is finite (the features are not kept)."""
    features = resolve_volume(candles, cfg.features)
    labels = make_labels(candles, cfg.labels)
    ok = _finite_rows(candles, features, _as_slice(labels.start), len(labels))
    if ok.sum() < 50:
        raise DataError(
            f"only {int(ok.sum())} of {len(candles)} bars have both features and labels; "
            "use more candles or shorter feature windows / label horizon")
    labels = _keep(labels, ok)
    truth_rows = None if truth is None else truth.to_numpy()[_as_slice(labels.start)]
    return Dataset(candles, labels, features, truth_rows, interval)


def _finite_rows(candles: pd.DataFrame, features: FeaturesConfig, bars: slice | np.ndarray,
                 n_rows: int) -> np.ndarray:
    """(R,) True where every feature is finite at bar ``bars[i]``, one column at a time."""
    ok = np.ones(n_rows, dtype=bool)
    for _, column in feature_columns(candles, features):
        ok &= np.isfinite(column[bars])
    return ok


def _keep(labels: LabelSet, ok: np.ndarray) -> LabelSet:
    """The rows of ``labels`` where ``ok``; views when they are one run of rows."""
    first = int(np.argmax(ok))
    last = len(ok) - int(np.argmax(ok[::-1]))
    keep: slice | np.ndarray = slice(first, last) if ok[first:last].all() else ok
    return LabelSet(y=labels.y.iloc[keep], start=labels.start[keep], end=labels.end[keep],
                    class_names=labels.class_names, method=labels.method,
                    horizon=labels.horizon)


def holdout_split(ds: Dataset, cfg: RunConfig) -> Split:
    """The chronological, purged train / val / test split of the ``split`` section."""
    sp = cfg.split
    split = purged_split(ds.labels.start, ds.labels.end, train=sp.train, val=sp.val,
                         test=sp.test, purge=sp.purge, embargo=sp.embargo)
    check_no_leak(split, ds.labels.start, ds.labels.end)
    return split


def make_train_data(ds: Dataset, split: Split, cfg: RunConfig, device: torch.device, *,
                    seed: int | None = None) -> tuple[TrainData, torch.Tensor, Scaler]:
    """Scale with statistics of the training rows only; tensors on ``device``.

    Returns the TrainData (train / val rows only), the (R, F) input tensor of all
    rows (test rows are read from it after fitting) and the fitted scaler. With
    ``labels.noise``, the labels of the training rows only are flipped, seeded by
    ``seed`` (the cell's; default ``cfg.seed``): validation keeps the clean labels.
    """
    inputs, scaler = scaled_inputs(ds, split.train, cfg.features.scaler)
    x = torch.from_numpy(inputs).to(device)  # (R, F) float32; no copy on the CPU
    if cfg.model.kind in ("cnn", "gru"):
        from selfdistill.nn.windows import make_windows

        # (R, F, W) strided view: row i sees rows i-W+1 .. i (the past only)
        x = make_windows(x, cfg.model.window)
    labels = noisy_labels(ds.labels.y.to_numpy(), np.asarray(split.train), cfg.labels.noise,
                          seed=cfg.seed if seed is None else seed)  # training rows only
    y = torch.as_tensor(labels, dtype=torch.int64, device=device)
    rows = {name: torch.as_tensor(getattr(split, name), dtype=torch.int64, device=device)
            for name in SPLITS}
    data = TrainData(x=x, y=y, train_rows=rows["train"], val_rows=rows["val"],
                     n_classes=len(ds.labels.class_names), class_names=ds.labels.class_names,
                     feature_names=ds.feature_names, unlabeled_rows=rows["train"],
                     positions=torch.as_tensor(ds.labels.start, dtype=torch.int64,
                                               device=device))  # gaps break HMM sequences
    return data, x, scaler


def scaled_inputs(ds: Dataset, train: np.ndarray, kind: ScalerKind) -> tuple[np.ndarray, Scaler]:
    """(R, F) float32 C-contiguous inputs, each column scaled on the ``train`` rows only.

    Features are computed one column at a time over the bars up to the last labelled
    row (causal: later bars change nothing), so the (R, F) float64 matrix is never
    held; the numbers are ``Scaler(kind).fit(raw[train]).transform(raw)``'s.
    """
    last_bar = int(ds.labels.start[-1]) if ds.n_rows else -1
    bars = ds.candles.iloc[: last_bar + 1]
    x = np.empty((ds.n_rows, len(ds.feature_names)), dtype=np.float32)  # (R, F)
    scaler = Scaler(kind).fit_transform_columns(_labelled_columns(ds, bars), _as_slice(train),
                                                out=x)
    return x, scaler


def _labelled_columns(ds: Dataset, candles: pd.DataFrame) -> Iterator[tuple[int, np.ndarray]]:
    """``(j, (R,) values at the labelled rows)`` of every feature, one column at a time."""
    where = {name: j for j, name in enumerate(ds.feature_names)}
    for name, column in feature_columns(candles, ds.feature_config):
        item = where[name], ds.rows_of(column)
        del column  # hold no column while the caller scales this one or the next is made
        yield item
        del item


def member_name(keys: dict[str, Any]) -> str:
    """How a member is named in predictions: ``generation=2``, ``exit=1``, or ``-``."""
    shown = [f"{k}={v}" for k, v in keys.items() if v is not None]
    return ",".join(shown) or "-"

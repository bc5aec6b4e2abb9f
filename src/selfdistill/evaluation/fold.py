"""The data flow of one experiment fold, from candles to metrics records.

::

    candles -> causal features -> labels (t+1..t+h) -> purged split
      -> scaler fitted on train rows -> TrainData -> every method -> Lineage
      -> probabilities per member / derived row on train, val, test -> records

Folds and seeds are loops *around* :func:`run_fold` (see :mod:`selfdistill.evaluation.experiment`).
Test rows are only read here, after every method has finished fitting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from selfdistill.config import FeaturesConfig, RunConfig
from selfdistill.data.sessions import SESSION_GAP_SHARE, apply_gap_policy
from selfdistill.errors import DataError
from selfdistill.evaluation.metrics import classification_metrics
from selfdistill.evaluation.uncertainty import disagreement, error_by_quantile
from selfdistill.features import (
    Scaler,
    ScalerKind,
    feature_columns,
    feature_names,
    resolve_volume,
)
from selfdistill.labels import LabelSet, make_labels, noisy_labels
from selfdistill.methods import Lineage, TrainData, get_method
from selfdistill.splits import Split, check_no_leak, purged_split
from selfdistill.training.device import resolve_device
from selfdistill.training.loop import Callback

__all__ = [
    "SESSION_GAP_SHARE",
    "Dataset",
    "FoldResult",
    "apply_session_policy",
    "build_dataset",
    "holdout_split",
    "load_candles",
    "make_train_data",
    "member_name",
    "run_fold",
    "scaled_inputs",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
UNCERTAINTY_MEASURES = ("variance", "mutual_information", "flip_rate")


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


@dataclass
class FoldResult:
    records: list[dict[str, Any]]
    predictions: pd.DataFrame
    lineages: list[Lineage]
    scaler: Scaler
    uncertainty: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)


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
    names = ds.feature_names
    where = {name: j for j, name in enumerate(names)}
    last_bar = int(ds.labels.start[-1]) if ds.n_rows else -1
    bars = ds.candles.iloc[: last_bar + 1]
    x = np.empty((ds.n_rows, len(names)), dtype=np.float32)  # (R, F)
    columns = ((where[name], ds.rows_of(col))
               for name, col in feature_columns(bars, ds.feature_config))
    scaler = Scaler(kind).fit_transform_columns(columns, _as_slice(train), out=x)
    return x, scaler


def member_name(keys: dict[str, Any]) -> str:
    """How a member is named in predictions: ``generation=2``, ``exit=1``, or ``-``."""
    shown = [f"{k}={v}" for k, v in keys.items() if v is not None]
    return ",".join(shown) or "-"


def _record(method: str, keys: dict[str, Any], split: str, y: np.ndarray, proba: np.ndarray,
            truth: np.ndarray | None, n_classes: int, base: dict[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {"method": method, "generation": None, **keys, "split": split, **base}
    rec.update(classification_metrics(y, proba, n_classes=n_classes))
    if truth is not None:
        rec["accuracy_true"] = float((proba.argmax(axis=1) == truth).mean())
    return rec


def _prediction_frame(ds: Dataset, rows: np.ndarray, proba: np.ndarray, *, method: str,
                      keys: dict[str, Any], split: str, base: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame({"open_time": ds.times[rows], "split": split,
                          "method": method, "member": member_name(keys)})
    gen = keys.get("generation")
    frame["generation"] = pd.array([gen] * len(rows), dtype="Int64")
    for c, name in enumerate(ds.labels.class_names):
        frame[f"p_{name}"] = proba[:, c]
    frame["pred"] = proba.argmax(axis=1).astype(np.int64)
    frame["label"] = ds.labels.y.to_numpy()[rows].astype(np.int64)  # int8 in the Dataset
    if ds.truth is not None:
        frame["true_regime"] = ds.truth[rows].astype(np.int64)
    for k, v in base.items():
        frame[k] = v
    return frame


def _lineage_outputs(lineage: Lineage, member_probs: Sequence[np.ndarray]
                     ) -> list[tuple[str, dict[str, Any], np.ndarray, dict[str, Any]]]:
    """(method, keys, probabilities, extra fields) for every member and derived row."""
    out = []
    for i, (m, p) in enumerate(zip(lineage.members, member_probs, strict=True)):
        extra = {"selected": i == lineage.selected} if len(lineage.members) > 1 else {}
        out.append((lineage.method, dict(m.keys), p, extra))
    for d in lineage.derived:
        extra = d.extras(member_probs) if d.extras is not None else {}
        out.append((d.method, dict(d.keys), d.combine(member_probs), extra))
    return out


def _uncertainty(lineage: Lineage, member_probs: Sequence[np.ndarray], y: np.ndarray,
                 split: str, base: dict[str, Any]) -> tuple[dict[str, np.ndarray],
                                                           list[dict[str, Any]]]:
    """Per-sample disagreement between members, and error rate per quantile of it."""
    probs = np.stack(member_probs)  # (M, N, C)
    measures = disagreement(probs)
    correct = probs.mean(axis=0).argmax(axis=1) == y
    summary = [{"method": lineage.method, "split": split, "measure": name, **base,
                "quantiles": error_by_quantile(measures[name], correct)}
               for name in UNCERTAINTY_MEASURES]
    return measures, summary


def evaluate_lineages(ds: Dataset, split: Split, lineages: Sequence[Lineage], x: torch.Tensor,
                      *, base: dict[str, Any]) -> tuple[list[dict[str, Any]], pd.DataFrame,
                                                        list[dict[str, Any]]]:
    """Metrics records for every split, predictions for val / test, uncertainty summaries.

    Each member predicts each split once; derived rows and disagreement reuse it.
    """
    y_all = ds.labels.y.to_numpy()
    n_classes = len(ds.labels.class_names)
    records, frames, unc = [], [], []
    for split_name in SPLITS:
        rows = np.asarray(getattr(split, split_name))
        rows_t = torch.as_tensor(rows, dtype=torch.int64, device=x.device)
        truth = None if ds.truth is None else ds.truth[rows]
        for lineage in lineages:
            member_probs = [m.predict_proba(x, rows_t) for m in lineage.members]
            measures: dict[str, np.ndarray] = {}
            if lineage.disagreement and len(member_probs) > 1 and split_name != "train":
                measures, summary = _uncertainty(lineage, member_probs, y_all[rows],
                                                 split_name, base)
                unc += summary
            for method, keys, proba, extra in _lineage_outputs(lineage, member_probs):
                rec = _record(method, keys, split_name, y_all[rows], proba, truth, n_classes, base)
                records.append({**rec, **extra})
                if split_name != "train":
                    frame = _prediction_frame(ds, rows, proba, method=method, keys=keys,
                                              split=split_name, base=base)
                    for name in UNCERTAINTY_MEASURES if measures else ():
                        frame[name] = measures[name]
                    frames.append(frame)
    return records, pd.concat(frames, ignore_index=True), unc


def run_fold(ds: Dataset, split: Split, cfg: RunConfig, *, seed: int, fold: int = 0,
             callbacks: Sequence[Callback] = (), device: torch.device | None = None
             ) -> FoldResult:
    """Fit every configured method on one split with one seed, then evaluate it."""
    device = device or resolve_device(cfg.device)
    data, x, scaler = make_train_data(ds, split, cfg, device, seed=seed)
    lineages, timings = [], {}
    for name in cfg.methods:
        t0 = time.perf_counter()
        lineage = get_method(name)(data, cfg, seed=seed, callbacks=callbacks)
        timings[name] = {"seconds": time.perf_counter() - t0,
                         "epochs": sum(m.info.get("epochs", 0) for m in lineage.members),
                         **{k: v for k, v in lineage.info.items()
                            if isinstance(v, int | float | str)}}
        lineages.append(lineage)
    base = {"seed": seed, "fold": fold}
    records, predictions, unc = evaluate_lineages(ds, split, lineages, x, base=base)
    return FoldResult(records, predictions, lineages, scaler, unc, timings)


"""Per-bar evidence: every output's score on every test bar, ready to pair.

A paired test compares two outputs on the *same* test bars (see
:mod:`selfdistill.evaluation.statistics`). Each cell (fold x seed) collects, per output,
one array per score over its test bars (:class:`CellEvidence`):

* ``correct`` (0-1; its mean is accuracy), ``nll`` (-log p of the label), ``brier``
  (sum over classes of (p - one-hot)^2) and ``correct_true`` (synthetic data: against
  the true regime) from the output's test probabilities;
* ``net`` (the strategy's per-bar net return) and ``random_net`` (its random-timing
  twin with the same turnover) from its backtest;
* per method whose members disagree, the members' mean prediction's ``error`` and
  ``1 - max probability`` next to the disagreement measures (for
  :mod:`selfdistill.evaluation.error_flags`).

The run's :class:`Evidence` keeps the cells' arrays as they are and pairs them on
demand, bars in (fold, time) order and seeds as rows, so it holds one float32 per score
per test bar (no frame of every prediction): what lets a 10M-bar run fit in memory.
float32 keeps 7 significant digits of each bar's score (0-1 scores are float16, exact);
every mean and variance is accumulated in float64. ``<method>_selected`` outputs take,
in each cell, the arrays of the member that cell chose on validation (``selected`` in its
records); they share them.

A cell's evidence comes from arrays while it runs (:mod:`.scoring`) and from its
prediction and backtest frames when read back (:meth:`CellEvidence.add_frames`): both
feed the same functions, so a resumed run pairs exactly the same numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CONFIDENCE", "MEASURES", "SCORE_COLUMNS", "CellEvidence", "Evidence", "Output",
           "build_evidence", "combine_evidence", "selected_members", "selected_name",
           "times_ns"]

#: Per-bar score column of each compared classification metric, and its direction.
SCORE_COLUMNS = {"accuracy": ("correct", True), "nll": ("nll", False),
                 "brier": ("brier", False), "accuracy_true": ("correct_true", True)}
#: The disagreement measures, and the trivial alternative each is compared with.
MEASURES = ("variance", "mutual_information", "flip_rate")
CONFIDENCE = "1 - max probability"
_GATED = "+gate"
_ORDINAL = re.compile(r"^(generation|snapshot|cycle|exit)=-?\d+$")
_STORE = np.float32
_PIECE = 1 << 18  # rows per piece of a per-bar computation
#: 0-1 columns: float16 holds 0, 1 and NaN (a missing bar) exactly, in half the bytes.
_BINARY = {"correct", "correct_true", "error"}


def _dtype(name: str) -> type[np.floating[Any]]:
    return np.float16 if name in _BINARY else _STORE

Output = tuple[str, str]  # (method, member label)
CellKey = tuple[int, int]  # (fold, seed)


def selected_name(method: str) -> str:
    """``born_again`` -> ``born_again_selected``; ``X+gate`` -> ``X_selected+gate``."""
    if method.endswith(_GATED):
        return f"{method.removesuffix(_GATED)}_selected{_GATED}"
    return f"{method}_selected"


def times_ns(values: Any) -> np.ndarray:
    """Open times (a DatetimeIndex, a Series or an array of them) as int64 nanoseconds."""
    return np.asarray(pd.DatetimeIndex(values).as_unit("ns").asi8, dtype=np.int64)


@dataclass
class Scores:
    """One output's (or one method's flags') per-bar arrays in one cell."""

    times: np.ndarray  # (T,) int64 ns
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (T,) float32

    def put(self, times: np.ndarray, values: Mapping[str, np.ndarray]) -> None:
        """Add columns on ``times`` (aligned on the times already held when they differ)."""
        at = None
        if not np.array_equal(times, self.times):
            self._align(times)  # the union of both: ``times`` are some of its bars
            at = np.searchsorted(self.times, times)
        for name, value in values.items():
            column = np.asarray(value, dtype=_dtype(name))
            if at is not None:
                full = np.full(len(self.times), np.nan, dtype=_dtype(name))
                full[at] = column
                column = full
            self.columns[name] = column

    def on(self, column: str, times: np.ndarray) -> np.ndarray:
        """(T,) float64 ``column`` on ``times``: NaN where this output has no value."""
        if column in self.columns and len(self.times) == len(times) \
                and np.array_equal(self.times, times):
            return self.columns[column].astype(np.float64)
        out = np.full(len(times), np.nan)
        if column in self.columns and len(self.times):
            at = np.searchsorted(self.times, times).clip(0, len(self.times) - 1)
            hit = self.times[at] == times
            out[hit] = self.columns[column][at[hit]]
        return out

    def _align(self, times: np.ndarray) -> None:
        union = np.union1d(self.times, times)
        at = np.searchsorted(union, self.times)
        for name, column in self.columns.items():
            full = np.full(len(union), np.nan, dtype=column.dtype)
            full[at] = column
            self.columns[name] = full
        self.times = union


def bar_scores(proba: np.ndarray, label: np.ndarray, truth: np.ndarray | None
               ) -> dict[str, np.ndarray]:
    """Per-bar ``correct``, ``nll``, ``brier`` (and ``correct_true``) of (T, C) probabilities."""
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(label, dtype=np.int64)
    names = ("correct", "nll", "brier") + (() if truth is None else ("correct_true",))
    out = {name: np.empty(len(y), dtype=_dtype(name)) for name in names}
    eye = np.eye(p.shape[1])
    for a in range(0, len(y), _PIECE):  # row by row: no (T, C) temporaries of a long split
        b = a + _PIECE
        pa, ya = p[a:b], y[a:b]
        pred = pa.argmax(axis=1)
        out["correct"][a:b] = pred == ya
        out["nll"][a:b] = -np.log(np.clip(pa[np.arange(len(ya)), ya], 1e-15, 1.0))
        out["brier"][a:b] = ((pa - eye[ya]) ** 2).sum(axis=1)
        if truth is not None:
            out["correct_true"][a:b] = pred == np.asarray(truth[a:b], dtype=np.int64)
    return out


@dataclass
class _Members:
    """A method's members on one cell's test bars, summed for their mean prediction."""

    times: np.ndarray
    label: np.ndarray
    total: np.ndarray  # (T, C) sum of member probabilities where counted
    measures: dict[str, np.ndarray]  # summed like the probabilities
    count: np.ndarray  # (T,) members counted per bar
    names: set[str]


@dataclass
class CellEvidence:
    """One cell's per-bar evidence: every output's scores, and its methods' flags."""

    fold: int
    seed: int
    outputs: dict[Output, Scores] = field(default_factory=dict)
    flags: dict[str, Scores] = field(default_factory=dict)
    flag_members: dict[str, set[str]] = field(default_factory=dict)
    _pending: dict[str, _Members] = field(default_factory=dict, repr=False)

    def _scores(self, output: Output, times: np.ndarray) -> Scores:
        if output not in self.outputs:
            self.outputs[output] = Scores(np.asarray(times, dtype=np.int64))
        return self.outputs[output]

    def add_scores(self, output: Output, times: np.ndarray, proba: np.ndarray,
                   label: np.ndarray, truth: np.ndarray | None = None) -> None:
        """An output's test probabilities: its per-bar classification scores."""
        self._scores(output, times).put(times, bar_scores(proba, label, truth))

    def add_trades(self, output: Output, times: np.ndarray, net: np.ndarray,
                   random_net: np.ndarray | None = None) -> None:
        """A strategy's per-bar net returns (and its random-timing twin's)."""
        values = {"net": net} if random_net is None else {"net": net, "random_net": random_net}
        self._scores(output, times).put(times, values)

    def add_member(self, method: str, member: str, times: np.ndarray, proba: np.ndarray,
                   label: np.ndarray, measures: Mapping[str, np.ndarray]) -> None:
        """One member of a method whose members disagree (flags use their mean prediction)."""
        if not _ORDINAL.match(member):
            return
        p = np.asarray(proba, dtype=np.float64)
        m = {k: np.asarray(measures[k], dtype=np.float64) for k in MEASURES}
        ok = np.asarray(np.isfinite(np.column_stack([m[k] for k in MEASURES])).all(axis=1))
        if not ok.any():
            return
        acc = self._pending.get(method)
        if acc is None:
            acc = self._pending[method] = _Members(
                np.asarray(times, dtype=np.int64), np.asarray(label, dtype=np.int64),
                np.zeros_like(p), {k: np.zeros(len(p)) for k in MEASURES},
                np.zeros(len(p)), set())
        if not np.array_equal(acc.times, times):
            raise ValueError(f"{method} {member}: members of one cell must share test bars")
        every = bool(ok.all())  # the usual case: no (T, C) masked copy
        acc.total += p if every else np.where(ok[:, None], p, 0.0)
        for k in MEASURES:
            acc.measures[k] += m[k] if every else np.where(ok, m[k], 0.0)
        acc.count += ok
        acc.names.add(member)

    def finish(self) -> CellEvidence:
        """Turn the members added so far into each method's flags (error, confidence)."""
        for method, acc in self._pending.items():
            seen = acc.count > 0
            n = np.where(seen, acc.count, 1.0)
            mean = acc.total / n[:, None]
            values = {"error": mean.argmax(axis=1) != acc.label,
                      CONFIDENCE: 1.0 - mean.max(axis=1),
                      **{k: acc.measures[k] / n for k in MEASURES}}
            scores = Scores(acc.times[seen])
            scores.put(scores.times, {k: v[seen] for k, v in values.items()})
            self.flags[method] = scores
            self.flag_members[method] = acc.names
        self._pending.clear()
        return self

    def add_frames(self, predictions: pd.DataFrame | None, curves: pd.DataFrame | None,
                   class_names: Sequence[str]) -> CellEvidence:
        """The same evidence from this cell's prediction and backtest rows (as written)."""
        if predictions is not None and len(predictions):
            test = predictions[predictions["split"] == "test"]
            probs = [f"p_{c}" for c in class_names]
            flagged = set(MEASURES) <= set(test.columns)
            for (method, member), g in test.groupby(["method", "member"], sort=False):
                times = times_ns(g["open_time"])
                proba = g[probs].to_numpy(dtype=np.float64)
                label = g["label"].to_numpy(dtype=np.int64)
                truth = g["true_regime"].to_numpy(dtype=np.int64) if "true_regime" in g else None
                self.add_scores((str(method), str(member)), times, proba, label, truth)
                if flagged and g["mutual_information"].notna().any():
                    self.add_member(str(method), str(member), times, proba, label,
                                    {k: g[k].to_numpy(dtype=np.float64) for k in MEASURES})
        if curves is not None and len(curves):
            for (method, member), g in curves.groupby(["method", "member"], sort=False):
                rand = g["random_net"].to_numpy(dtype=np.float64)
                self.add_trades((str(method), str(member)), times_ns(g["open_time"]),
                                g["net"].to_numpy(dtype=np.float64),
                                None if np.isnan(rand).all() else rand)
        return self.finish()


@dataclass
class Evidence:
    """Every output's per-cell scores; pairs them on demand (bars in (fold, time) order)."""

    tables: dict[Output, dict[CellKey, Scores]] = field(default_factory=dict)
    flags: dict[str, dict[CellKey, Scores]] = field(default_factory=dict)
    flag_members: dict[str, set[str]] = field(default_factory=dict)

    def outputs(self, column: str) -> list[Output]:
        """Outputs that have ``column`` (e.g. ``correct`` or ``net``)."""
        return [o for o, cells in self.tables.items()
                if any(column in s.columns for s in cells.values())]

    def columns(self) -> set[str]:
        """Every score column some output has."""
        return {c for cells in self.tables.values() for s in cells.values() for c in s.columns}

    def paired(self, a: Output, b: Output, column: str, reference_column: str | None = None
               ) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
        """(S, T) arrays of ``column`` for a and b on their common bars and seeds, and the
        bars of each fold; None when they share no bar. Bars in (fold, time) order; a bar
        missing for any seed of either is left out."""
        ref_col = reference_column or column
        ta, tb = self.tables.get(a), self.tables.get(b)
        if ta is None or tb is None or not _has(ta, column) or not _has(tb, ref_col):
            return None
        seeds = sorted({s for _, s in ta} & {s for _, s in tb})
        if not seeds:
            return None
        got = _assemble([(ta, column), (tb, ref_col)], seeds)
        if got is None:
            return None
        (va, vb), sizes = got
        return va, vb, sizes

    def flag_arrays(self, method: str, names: Sequence[str]
                    ) -> tuple[dict[str, np.ndarray], list[int]] | None:
        """(S, T) arrays of a method's flag columns over every seed, bars with a value for
        every seed and column only, and the bars of each fold."""
        cells = self.flags.get(method)
        if not cells:
            return None
        seeds = sorted({s for _, s in cells})
        got = _assemble([(cells, name) for name in names], seeds)
        if got is None:
            return None
        arrays, sizes = got
        return dict(zip(names, arrays, strict=True)), sizes


def _has(cells: Mapping[CellKey, Scores], column: str) -> bool:
    return any(column in s.columns for s in cells.values())


def _fold_times(cells: Mapping[CellKey, Scores], fold: int) -> np.ndarray | None:
    parts = [s.times for (f, _), s in cells.items() if f == fold]
    if not parts:
        return None
    first = parts[0]
    if all(p is first or np.array_equal(p, first) for p in parts[1:]):
        return first
    return np.unique(np.concatenate(parts))


def _values(cells: Mapping[CellKey, Scores], fold: int, seeds: Sequence[int], column: str,
            times: np.ndarray) -> np.ndarray:
    out = np.full((len(seeds), len(times)), np.nan)
    for i, seed in enumerate(seeds):
        s = cells.get((fold, seed))
        if s is not None:
            out[i] = s.on(column, times)
    return out


def _assemble(wanted: Sequence[tuple[Mapping[CellKey, Scores], str]], seeds: Sequence[int]
              ) -> tuple[list[np.ndarray], list[int]] | None:
    """(S, T) float64 arrays of each (cells, column) on their common bars, and fold sizes."""
    folds = sorted(set.intersection(*[{f for f, _ in cells} for cells, _ in wanted]))
    blocks: list[list[np.ndarray]] = [[] for _ in wanted]
    sizes = []
    for fold in folds:
        common: np.ndarray | None = None
        for cells, _ in wanted:
            times = _fold_times(cells, fold)
            assert times is not None
            common = times if common is None else (
                common if np.array_equal(common, times) else np.intersect1d(common, times))
        assert common is not None
        values = [_values(cells, fold, seeds, column, common) for cells, column in wanted]
        keep = np.logical_and.reduce([np.isfinite(v).all(axis=0) for v in values])
        if keep.any():
            for block, v in zip(blocks, values, strict=True):
                block.append(v if keep.all() else v[:, keep])
            sizes.append(int(keep.sum()))
    if not sizes:
        return None
    return [np.concatenate(b, axis=1) for b in blocks], sizes


def combine_evidence(cells: Iterable[CellEvidence],
                     selected: Mapping[tuple[str, int, int], str]) -> Evidence:
    """The run's evidence from its cells', with ``<method>_selected`` outputs added.

    Args:
        cells: every cell's evidence.
        selected: (method, seed, fold) -> the member label chosen on validation.
    """
    out = Evidence()
    for cell in cells:
        key = (cell.fold, cell.seed)
        for output, scores in cell.outputs.items():
            out.tables.setdefault(output, {})[key] = scores
            method, member = output
            chosen = selected.get((method.removesuffix(_GATED), cell.seed, cell.fold))
            if chosen is not None and chosen == member:
                out.tables.setdefault((selected_name(method), "-"), {})[key] = scores
        for method, scores in cell.flags.items():
            out.flags.setdefault(method, {})[key] = scores
            out.flag_members.setdefault(method, set()).update(cell.flag_members[method])
    return out


def build_evidence(predictions: pd.DataFrame, curves: pd.DataFrame | None,
                   class_names: Sequence[str],
                   selected: Mapping[tuple[str, int, int], str]) -> Evidence:
    """Every output's per-bar evidence on the test split, from a run's written rows.

    Args:
        predictions: the run's val / test prediction rows.
        curves: the run's backtest curves (None without a backtest).
        class_names: class order of the ``p_*`` columns.
        selected: (method, seed, fold) -> the member label chosen on validation.
    """
    keys = ["fold", "seed"]
    trades = {} if curves is None or not len(curves) else {
        _cell_key(k): g for k, g in curves.groupby(keys, sort=True)}
    cells = []
    for k, g in predictions.groupby(keys, sort=True):
        key = _cell_key(k)
        cells.append(CellEvidence(*key).add_frames(g, trades.pop(key, None), class_names))
    cells += [CellEvidence(*key).add_frames(None, g, class_names) for key, g in trades.items()]
    return combine_evidence(cells, selected)


def _cell_key(key: Any) -> CellKey:
    fold, seed = key
    return int(fold), int(seed)


def selected_members(records: Iterable[dict[str, Any]], label: Any
                     ) -> dict[tuple[str, int, int], str]:
    """(method, seed, fold) -> member label of each cell's validation choice."""
    return {(r["method"], int(r["seed"]), int(r["fold"])): label(r)
            for r in records if r.get("selected") is True and r.get("split") == "test"
            and not str(r["method"]).endswith(_GATED)}

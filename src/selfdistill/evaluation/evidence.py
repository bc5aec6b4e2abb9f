"""Per-bar evidence: every output's score on every test bar, ready to pair.

A paired test compares two outputs on the *same* test bars (see
:mod:`selfdistill.evaluation.statistics`). This module turns a run's test predictions
and backtest curves into one table per output, indexed by (fold, open_time), with
one column per (score, seed):

* ``correct`` (0-1; its mean is accuracy), ``nll`` (-log p of the label), ``brier``
  (sum over classes of (p - one-hot)^2) and ``correct_true`` (synthetic data: against
  the true regime) from the predictions;
* ``net`` (the strategy's per-bar net return) and ``random_net`` (its random-timing
  twin with the same turnover) from the backtest curves.

``<method>_selected`` outputs take, in each cell, the rows of the member that cell
chose on validation (``selected`` in its records).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SCORE_COLUMNS", "Evidence", "Output", "build_evidence", "selected_members",
           "selected_name"]

#: Per-bar score column of each compared classification metric, and its direction.
SCORE_COLUMNS = {"accuracy": ("correct", True), "nll": ("nll", False),
                 "brier": ("brier", False), "accuracy_true": ("correct_true", True)}
_GATED = "+gate"
_KEY = ["fold", "open_time"]

Output = tuple[str, str]  # (method, member label)


def selected_name(method: str) -> str:
    """``born_again`` -> ``born_again_selected``; ``X+gate`` -> ``X_selected+gate``."""
    if method.endswith(_GATED):
        return f"{method.removesuffix(_GATED)}_selected{_GATED}"
    return f"{method}_selected"


@dataclass
class Evidence:
    """Per-output tables of per-bar scores, indexed by (fold, open_time); columns (score, seed)."""

    tables: dict[Output, pd.DataFrame] = field(default_factory=dict)

    def outputs(self, column: str) -> list[Output]:
        """Outputs that have ``column`` (e.g. ``correct`` or ``net``)."""
        return [o for o, t in self.tables.items() if column in t.columns.get_level_values(0)]

    def paired(self, a: Output, b: Output, column: str, reference_column: str | None = None
               ) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
        """(S, T) arrays of ``column`` for a and b on their common bars and seeds, and the
        bars of each fold; None when they share no bar. Bars in (fold, time) order."""
        ref_col = reference_column or column
        ta, tb = self.tables.get(a), self.tables.get(b)
        if ta is None or tb is None or column not in ta or ref_col not in tb:
            return None
        xa, xb = ta[column], tb[ref_col]
        seeds = sorted(set(xa.columns) & set(xb.columns))
        index = xa.index.intersection(xb.index)
        if not seeds or index.empty:
            return None
        va = xa.loc[index, seeds].to_numpy(dtype=np.float64).T
        vb = xb.loc[index, seeds].to_numpy(dtype=np.float64).T
        keep = np.isfinite(va).all(axis=0) & np.isfinite(vb).all(axis=0)
        if not keep.any():
            return None
        folds = index.get_level_values("fold")[keep]
        sizes = pd.Series(folds).value_counts(sort=False).sort_index().tolist()
        return va[:, keep], vb[:, keep], [int(n) for n in sizes]


def _bar_scores(predictions: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Test rows with their per-bar scores."""
    test = predictions[predictions["split"] == "test"]
    proba = test[[f"p_{c}" for c in class_names]].to_numpy(dtype=np.float64)  # (N, C)
    label = test["label"].to_numpy(dtype=np.int64)
    onehot = np.eye(len(class_names))[label]
    picked = proba[np.arange(len(label)), label]
    out = test[["method", "member", "seed", "fold", "open_time"]].copy()
    out["correct"] = (proba.argmax(axis=1) == label).astype(np.float64)
    out["nll"] = -np.log(np.clip(picked, 1e-15, 1.0))
    out["brier"] = ((proba - onehot) ** 2).sum(axis=1)
    if "true_regime" in test:
        truth = test["true_regime"].to_numpy(dtype=np.int64)
        out["correct_true"] = (proba.argmax(axis=1) == truth).astype(np.float64)
    return out


def _with_selected(frame: pd.DataFrame, selected: dict[tuple[str, int, int], str]
                   ) -> pd.DataFrame:
    """Append ``<method>_selected`` rows: per cell, the chosen member's rows."""
    if frame.empty or not selected:
        return frame
    base = frame["method"].str.removesuffix(_GATED)
    chosen = pd.Series([selected.get((m, s, f)) for m, s, f in
                        zip(base, frame["seed"], frame["fold"], strict=True)], index=frame.index)
    rows = frame[chosen.notna() & (frame["member"] == chosen)].copy()
    rows["method"] = [selected_name(m) for m in rows["method"]]
    rows["member"] = "-"
    return pd.concat([frame, rows], ignore_index=True)


def _tables(frame: pd.DataFrame, columns: Iterable[str]) -> dict[Output, pd.DataFrame]:
    cols = [c for c in columns if c in frame.columns]
    out = {}
    for (method, member), g in frame.groupby(["method", "member"], sort=False):
        wide = g.pivot_table(index=_KEY, columns="seed", values=cols, aggfunc="first",
                             dropna=False)
        out[(str(method), str(member))] = wide.sort_index()
    return out


def build_evidence(predictions: pd.DataFrame, curves: pd.DataFrame | None,
                   class_names: Sequence[str],
                   selected: dict[tuple[str, int, int], str]) -> Evidence:
    """Every output's per-bar evidence on the test split.

    Args:
        predictions: the run's val / test prediction rows.
        curves: the run's backtest curves (None without a backtest).
        class_names: class order of the ``p_*`` columns.
        selected: (method, seed, fold) -> the member label chosen on validation.
    """
    scores = _with_selected(_bar_scores(predictions, class_names), selected)
    tables = _tables(scores, ["correct", "nll", "brier", "correct_true"])
    if curves is not None and len(curves):
        trades = _with_selected(curves[["method", "member", "seed", "fold", "open_time",
                                        "net", "random_net"]], selected)
        for output, table in _tables(trades, ["net", "random_net"]).items():
            tables[output] = (table if output not in tables
                              else tables[output].join(table, how="outer"))
    return Evidence(tables)


def selected_members(records: Iterable[dict[str, Any]], label: Any
                     ) -> dict[tuple[str, int, int], str]:
    """(method, seed, fold) -> member label of each cell's validation choice."""
    return {(r["method"], int(r["seed"]), int(r["fold"])): label(r)
            for r in records if r.get("selected") is True and r.get("split") == "test"
            and not str(r["method"]).endswith(_GATED)}

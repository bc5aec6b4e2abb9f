"""Does disagreement flag errors, and better than the model's own confidence?

For every method whose members disagree (generations, snapshots, exits), on the test
bars of every cell: the members' mean prediction, whether it is wrong, and four
scores that might flag it: the three disagreement measures (``variance``,
``mutual_information``, ``flip_rate``) and the trivial alternative
``1 - max probability`` of the mean prediction. Each score's AUROC for predicting an
error comes with an interval robust to autocorrelated bars, and each disagreement
measure is compared with ``1 - max probability`` by a paired per-bar test
(:func:`selfdistill.evaluation.ranking.auroc_comparison`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from selfdistill.evaluation.ranking import auroc_comparison

__all__ = ["CONFIDENCE", "MEASURES", "error_flags"]

MEASURES = ("variance", "mutual_information", "flip_rate")
#: The trivial alternative every measure is compared with.
CONFIDENCE = "1 - max probability"
_ORDINAL = r"^(generation|snapshot|cycle|exit)=-?\d+$"


def _member_rows(test: pd.DataFrame, method: str) -> pd.DataFrame:
    rows = test[(test["method"] == method) & test["member"].str.match(_ORDINAL)]
    return rows[rows[list(MEASURES)].notna().all(axis=1)]


def _per_seed(frame: pd.DataFrame, columns: Sequence[str]
              ) -> tuple[dict[str, np.ndarray], list[int]]:
    """(S, T) arrays of ``columns`` with bars in (fold, time) order, seeds as rows, and
    the bars of each fold."""
    wide = frame.pivot_table(index=["fold", "open_time"], columns="seed", values=list(columns),
                             aggfunc="first").sort_index().dropna()
    sizes = wide.groupby(level="fold", sort=True).size().tolist()
    return {c: wide[c].to_numpy(dtype=np.float64).T for c in columns}, [int(n) for n in sizes]


def _method_flags(test: pd.DataFrame, method: str, class_names: Sequence[str]
                  ) -> dict[str, Any] | None:
    rows = _member_rows(test, method)
    if rows.empty or rows["member"].nunique() < 2:
        return None
    probs = [f"p_{c}" for c in class_names]
    cell = ["seed", "fold", "open_time"]
    mean = rows.groupby(cell, sort=False)[[*probs, *MEASURES]].mean().reset_index()
    label = rows.groupby(cell, sort=False)["label"].first().to_numpy()
    p = mean[probs].to_numpy(dtype=np.float64)  # (N, C): the members' mean prediction
    mean["error"] = (p.argmax(axis=1) != label).astype(np.float64)
    mean[CONFIDENCE] = 1.0 - p.max(axis=1)
    arrays, sizes = _per_seed(mean, ["error", CONFIDENCE, *MEASURES])
    scores = {name: arrays[name] for name in (*MEASURES, CONFIDENCE)}
    result = auroc_comparison(scores, arrays["error"].astype(bool), reference=CONFIDENCE,
                              fold_sizes=sizes)
    return {"method": method, "split": "test", "error_rate": float(arrays["error"].mean()),
            "n_bars": int(arrays["error"].shape[1]), "n_seeds": int(arrays["error"].shape[0]),
            "scores": result}


def error_flags(predictions: pd.DataFrame, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per method with disagreement measures: the AUROC of each score."""
    if not set(MEASURES) <= set(predictions.columns):
        return []
    test = predictions[predictions["split"] == "test"]
    methods = test.loc[test["mutual_information"].notna(), "method"].unique()
    out = [_method_flags(test, str(m), class_names) for m in methods]
    return [o for o in out if o is not None]

"""Does disagreement flag errors, and better than the model's own confidence?

For every method whose members disagree (generations, snapshots, exits), on the test
bars of every cell: the members' mean prediction, whether it is wrong, and four
scores that might flag it: the three disagreement measures (``variance``,
``mutual_information``, ``flip_rate``) and the trivial alternative
``1 - max probability`` of the mean prediction. Each score's AUROC for predicting an
error comes with an interval robust to autocorrelated bars, and each disagreement
measure is compared with ``1 - max probability`` by a paired per-bar test
(:func:`selfdistill.evaluation.ranking.auroc_comparison`). The per-bar values are
collected cell by cell with the rest of the evidence (:mod:`.evidence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from selfdistill.evaluation.evidence import CONFIDENCE, MEASURES, Evidence, build_evidence
from selfdistill.evaluation.ranking import auroc_comparison

__all__ = ["CONFIDENCE", "MEASURES", "error_flags", "flags_of"]


def _method_flags(evidence: Evidence, method: str) -> dict[str, Any] | None:
    if len(evidence.flag_members.get(method, ())) < 2:
        return None
    got = evidence.flag_arrays(method, ["error", CONFIDENCE, *MEASURES])
    if got is None:
        return None
    arrays, sizes = got
    scores = {name: arrays[name] for name in (*MEASURES, CONFIDENCE)}
    error = arrays["error"] > 0.5
    result = auroc_comparison(scores, error, reference=CONFIDENCE, fold_sizes=sizes)
    return {"method": method, "split": "test", "error_rate": float(error.mean()),
            "n_bars": int(error.shape[1]), "n_seeds": int(error.shape[0]),
            "scores": result}


def flags_of(evidence: Evidence) -> list[dict[str, Any]]:
    """One entry per method with disagreement measures: the AUROC of each score."""
    out = [_method_flags(evidence, method) for method in evidence.flags]
    return [o for o in out if o is not None]


def error_flags(predictions: pd.DataFrame, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """:func:`flags_of` from a run's written prediction rows."""
    if not set(MEASURES) <= set(predictions.columns):
        return []
    return flags_of(build_evidence(predictions, None, class_names, {}))

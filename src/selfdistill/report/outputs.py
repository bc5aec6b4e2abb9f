"""Which rows of the run directory belong to an output, and which outputs the report shows.

An *output* is ``(method, member)`` as metrics.json names it: ``("baseline", "-")``,
``("born_again", "generation=2")``, ``("born_again_selected", "-")``. A
``<method>_selected`` output has no rows of its own in predictions.parquet or
backtest.parquet: in each (fold, seed) cell it is the member that cell chose on
validation, which its cell records name in ``selected_from``. :meth:`OutputIndex.source`
resolves that, so every panel, table and curve of a selected output shows the
selected member, never the last one.

Which outputs get a figure is decided on validation numbers only (:func:`featured_output`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from selfdistill.evaluation.aggregate import member_keys, member_label

__all__ = [
    "SELECTED",
    "TRADING_BASELINES",
    "CellKey",
    "Output",
    "OutputIndex",
    "featured_output",
    "headline_outputs",
    "self_distillation_outputs",
]

Output = tuple[str, str]  # (method, member label)
CellKey = tuple[int, int]  # (seed, fold)

#: Strategies without a classifier, drawn and tabled next to every model.
TRADING_BASELINES = ("buy_and_hold", "always_flat", "random")
#: The suffix of a method's validation-selected output (before any ``+gate``).
SELECTED = "_selected"
_GATED = "+gate"
_SELF_DISTILLATION = ("born_again", "byot", "snapshot", "ema_teacher")
_NOT_FEATURED = ("majority", *TRADING_BASELINES)


def _base_method(method: str) -> str:
    """``born_again_selected+gate`` -> ``born_again+gate``; other names unchanged."""
    gated = method.endswith(_GATED)
    core = method.removesuffix(_GATED)
    if not core.endswith(SELECTED):
        return method
    return core.removesuffix(SELECTED) + (_GATED if gated else "")


@dataclass
class OutputIndex:
    """The run's outputs and, for selected ones, the member each cell chose.

    Attributes:
        aggregates: ``{(split, method, member): aggregate record}``.
        cells: ``{(split, method, member): [cell records]}`` (fold and seed set).
        chosen: ``{(selected method, seed, fold): member label}``.
    """

    aggregates: dict[tuple[str, str, str], dict[str, Any]]
    cells: dict[tuple[str, str, str], list[dict[str, Any]]]
    chosen: dict[tuple[str, int, int], str]

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]]) -> OutputIndex:
        aggregates: dict[tuple[str, str, str], dict[str, Any]] = {}
        cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        chosen: dict[tuple[str, int, int], str] = {}
        for rec in records:
            key = (rec["split"], rec["method"], member_label(member_keys(rec)))
            if rec.get("aggregate"):
                aggregates[key] = rec
                continue
            cells.setdefault(key, []).append(rec)
            if rec.get("selected_from") is not None and rec.get("seed") is not None:
                chosen[(rec["method"], int(rec["seed"]), int(rec["fold"]))] = \
                    str(rec["selected_from"])
        return cls(aggregates, cells, chosen)

    def outputs(self, split: str = "test") -> list[Output]:
        """Every output with an aggregate on ``split``, in metrics.json order."""
        return [(m, s) for (sp, m, s) in self.aggregates if sp == split]

    def source(self, output: Output, seed: int, fold: int) -> Output:
        """The (method, member) whose rows the output has in cell (seed, fold)."""
        method = output[0]
        picked = self.chosen.get((method, seed, fold))
        if picked is None:
            return output
        return _base_method(method), picked

    def sources(self, output: Output) -> list[Output]:
        """The (method, member) pairs whose rows the output shows in some cell: the output
        itself, or for a selection every member a cell chose."""
        picks = sorted({v for (m, _, _), v in self.chosen.items() if m == output[0]})
        if not picks:
            return [output]
        return [(_base_method(output[0]), p) for p in picks]

    def seeds(self) -> list[int]:
        """Every seed with a cell record, ascending."""
        return sorted({int(r["seed"]) for recs in self.cells.values() for r in recs
                       if r.get("seed") is not None})

    def selected_from(self, output: Output) -> str | None:
        """The member(s) a selected output showed: ``generation=4``, or
        ``generation=4 (3 cells), generation=2 (1 cell)`` when cells chose differently;
        None for an output that is not a selection."""
        picks = Counter(v for (m, _, _), v in sorted(self.chosen.items()) if m == output[0])
        if not picks:
            return None
        if len(picks) == 1:
            return next(iter(picks))
        return ", ".join(f"{v} ({n} cell{'s' if n > 1 else ''})" for v, n in picks.most_common())

    def label(self, output: Output) -> str:
        """How a panel or a legend names the output, with the member it shows."""
        method, member = output
        picked = self.selected_from(output)
        if picked is not None:
            return f"{method} ({picked})"
        return method if member == "-" else f"{method} {member}"

    def rows(self, frame: pd.DataFrame, output: Output) -> pd.DataFrame:
        """The output's rows of a predictions or curves frame (``method``, ``member``,
        ``seed``, ``fold`` columns), resolving a selected output cell by cell."""
        if frame.empty:
            return frame
        method, member = frame["method"], frame["member"]
        cells = [(s, f) for m, s, f in self.chosen if m == output[0]]
        if not cells:
            return frame[(method == output[0]) & (member == output[1])]
        seeds = frame["seed"].to_numpy()
        folds = frame["fold"].to_numpy()
        keep = np.zeros(len(frame), dtype=bool)  # (N,) a mask, not a merge: no copies
        for seed, fold in cells:
            source = self.source(output, seed, fold)
            keep |= ((seeds == seed) & (folds == fold) & (method == source[0]).to_numpy()
                     & (member == source[1]).to_numpy())
        return frame[keep]


def self_distillation_outputs(index: OutputIndex, methods: Iterable[str] | None = None
                              ) -> list[Output]:
    """The headline output of every self-distillation method in the run: its selected
    member (``<method>_selected``) where it has several, else the method itself."""
    out = []
    present = set(index.outputs())
    for method in methods or _SELF_DISTILLATION:
        for output in ((f"{method}{SELECTED}", "-"), (method, "-")):
            if output in present:
                out.append(output)
                break
    return out


def headline_outputs(index: OutputIndex, *, gated: bool = False) -> list[Output]:
    """Outputs with one row per cell (member ``-``): models, selections, ensembles, then
    the trading baselines; gated strategies only when ``gated``."""
    heads = [o for o in index.outputs() if o[1] == "-" and (gated or _GATED not in o[0])]
    models = [o for o in heads if o[0] not in TRADING_BASELINES]
    return models + [o for o in heads if o[0] in TRADING_BASELINES]


def featured_output(index: OutputIndex) -> Output:
    """The headline model output with the lowest mean validation NLL (never chosen on
    test); ``("baseline", "-")`` when none has one."""
    best, best_nll = ("baseline", "-"), float("inf")
    for (split, method, member), rec in index.aggregates.items():
        nll = rec.get("nll")
        if split != "val" or member != "-" or not isinstance(nll, dict):
            continue
        if method in _NOT_FEATURED or _GATED in method or nll.get("mean") is None:
            continue
        if nll["mean"] < best_nll:
            best, best_nll = (method, member), float(nll["mean"])
    return best

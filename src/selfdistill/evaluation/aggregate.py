"""From per-cell records to aggregates with intervals, and to paired comparisons.

A *record* is one output (method + member keys) on one split of one
(fold, seed) cell, carrying metric values. This module

* adds ``<method>_selected`` records: per cell, the member the method chose
  on validation (a method's honest score, since the choice varies by cell);
* aggregates every (method, member, split) over cells into one record with
  ``fold`` and ``seed`` null and, per metric, ``{"mean", "ci_low", "ci_high", "n",
  "folds"}``: seeds are averaged within each fold first and the interval is a
  Student-t interval over folds (folds are the independent unit; one fold gives
  no interval, never a made-up one);
* compares outputs on the **test bars** with the verdict engine
  (:mod:`selfdistill.evaluation.statistics`), per-bar and paired: each member
  against the method's first member (generation 0, ...), each output against the
  references (``baseline``, ``logistic``, ``lightgbm``, ``hmm``), each gated strategy
  against itself ungated, and each headline output's Sharpe ratio against
  buy-and-hold, always-flat and random timing with its own turnover. The
  p-values of all comparisons are adjusted as one family (Benjamini-Hochberg by
  default, ``evaluation.adjust``; the findings' own family is Holm-adjusted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from selfdistill.evaluation.evidence import SCORE_COLUMNS, Evidence, Output, selected_name
from selfdistill.evaluation.statistics import (
    TestResult,
    adjust_pvalues,
    fold_interval,
    mean_difference_test,
    sharpe_difference_test,
    verdict_of,
)

__all__ = [
    "COMPARED_METRICS",
    "ORDINAL_KEYS",
    "REFERENCE_METHODS",
    "TRADING_REFERENCES",
    "add_selected_records",
    "adjust_family",
    "aggregate_records",
    "compare_outputs",
    "comparison_row",
    "comparison_rows",
    "higher_is_better",
    "member_keys",
    "member_label",
    "metric_names",
    "paired_test",
]

#: Metrics every paired comparison reports (``accuracy_true`` too on synthetic data).
COMPARED_METRICS = ("accuracy", "nll", "brier", "sharpe", "accuracy_true")
#: Methods every other output is compared with, when the run has them.
REFERENCE_METHODS = ("baseline", "logistic", "lightgbm", "hmm")
#: Trading baselines every headline output's Sharpe ratio is compared with.
TRADING_REFERENCES = ("buy_and_hold", "always_flat", "random")
#: Rows without a classifier (trading baselines), never compared as candidates.
_NOT_COMPARED = TRADING_REFERENCES
#: Member keys that count members in order; the smallest value is the reference.
ORDINAL_KEYS = ("generation", "snapshot", "cycle", "exit")
_NOT_KEYS = frozenset({"method", "split", "seed", "fold", "selected", "selected_from", "cells",
                       "aggregate", "n", "confusion_matrix", "folds"})
#: Metrics where a smaller value is the better one.
LOWER_IS_BETTER = frozenset({
    "nll", "ece", "brier", "max_drawdown", "max_drawdown_bars", "max_drawdown_days",
    "annual_vol", "turnover", "turnover_per_year",
})

GroupKey = tuple[str, str, tuple[tuple[str, Any], ...]]


def higher_is_better(metric: str) -> bool:
    """Whether larger values of ``metric`` are better (see :data:`LOWER_IS_BETTER`)."""
    return metric.removesuffix("_calibrated") not in LOWER_IS_BETTER


def member_keys(record: dict[str, Any]) -> dict[str, Any]:
    """The fields naming the member (``generation``, ``exit``, ...), not metrics or cell."""
    return {k: v for k, v in record.items() if k not in _NOT_KEYS
            and (v is None or isinstance(v, str) or type(v) is int)}


def member_label(keys: dict[str, Any]) -> str:
    """'generation=2' style label; '-' when every key is None."""
    return ",".join(f"{k}={v}" for k, v in keys.items() if v is not None) or "-"


def metric_names(record: dict[str, Any]) -> list[str]:
    """Numeric metric fields of a record (floats; bools, ids and lists excluded)."""
    return [k for k, v in record.items() if k not in _NOT_KEYS and isinstance(v, float)]


def _group_key(record: dict[str, Any]) -> GroupKey:
    keys = member_keys(record)
    return record["method"], record["split"], tuple(sorted(keys.items()))


def add_selected_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records plus one ``<method>_selected`` copy of each validation-chosen member."""
    out = list(records)
    for rec in list(out):
        if rec.get("selected") is True:
            keys = member_keys(rec)
            copy = {**rec, **dict.fromkeys(keys), "method": selected_name(rec["method"]),
                    "selected_from": member_label(keys)}
            copy.pop("selected")
            out.append(copy)
    return out


def _groups(records: Iterable[dict[str, Any]]) -> dict[GroupKey, list[dict[str, Any]]]:
    groups: dict[GroupKey, list[dict[str, Any]]] = {}
    for rec in records:
        if rec.get("aggregate"):
            continue
        groups.setdefault(_group_key(rec), []).append(rec)
    return groups


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def _fold_means(group: list[dict[str, Any]], name: str) -> list[float]:
    """Per fold, the mean over its seeds (seeds share the fold's test rows)."""
    by_fold: dict[Any, list[float]] = {}
    for rec in group:
        if _finite(rec.get(name)):
            by_fold.setdefault(rec["fold"], []).append(float(rec[name]))
    return [float(np.mean(v)) for _, v in sorted(by_fold.items(), key=lambda kv: str(kv[0]))]


def aggregate_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (method, member, split): per metric mean, fold-level t interval."""
    out = []
    for (method, split, keys), group in _groups(records).items():
        agg: dict[str, Any] = {"method": method, **dict(keys), "split": split,
                               "seed": None, "fold": None, "aggregate": True,
                               "cells": len(group)}
        names = dict.fromkeys(name for rec in group for name in metric_names(rec))
        for name in names:
            folds = _fold_means(group, name)
            if not folds:
                continue
            iv = fold_interval(folds)
            agg[name] = {"mean": iv.estimate, "ci_low": iv.ci_low, "ci_high": iv.ci_high,
                         "n": sum(_finite(r.get(name)) for r in group), "folds": len(folds)}
        out.append(agg)
    return out


# ------------------------------------------------------------------ comparisons


def paired_test(evidence: Evidence, candidate: Output, reference: Output, metric: str, *,
                periods_per_year: float = 1.0, reference_column: str | None = None
                ) -> TestResult | None:
    """The paired per-bar test of one metric; None when the outputs share no bars."""
    if metric == "sharpe":
        pair = evidence.paired(candidate, reference, "net", reference_column)
        if pair is None:
            return None
        return sharpe_difference_test(pair[0], pair[1], periods_per_year=periods_per_year,
                                      fold_sizes=pair[2])
    column = SCORE_COLUMNS[metric][0]
    pair = evidence.paired(candidate, reference, column)
    if pair is None:
        return None
    return mean_difference_test(pair[0] - pair[1], fold_sizes=pair[2])


def comparison_rows(evidence: Evidence, kind: str, candidate: Output, reference: Output,
                    metrics: Sequence[str], *, periods_per_year: float = 1.0,
                    family: str = "comparisons") -> list[dict[str, Any]]:
    """One row per metric of one comparison (unadjusted). ``vs_random`` pairs the
    candidate's returns with its own random-timing twin (same turnover)."""
    twin = kind == "vs_random"
    rows = []
    for metric in metrics:
        result = paired_test(evidence, candidate, candidate if twin else reference, metric,
                             periods_per_year=periods_per_year,
                             reference_column="random_net" if twin else None)
        if result is not None:
            rows.append(comparison_row(kind, candidate, reference, metric, result,
                                       family=family))
    return rows


def comparison_row(kind: str, candidate: Output, reference: Output, metric: str,
                   result: TestResult, *, family: str = "comparisons") -> dict[str, Any]:
    """One comparison as metrics.json stores it (verdict filled by :func:`adjust_family`)."""
    return {"kind": kind, "method": candidate[0], "candidate": candidate[1],
            "reference_method": reference[0], "reference": reference[1], "split": "test",
            "metric": metric, "mean_diff": result.estimate, "ci_low": result.ci_low,
            "ci_high": result.ci_high, "p_value": result.p_value, "p_adjusted": None,
            "family": family, "test": result.method, "df": result.df,
            "n_bars": result.n_bars, "n_seeds": result.n_seeds, "n_folds": result.n_folds,
            "reason": result.reason, "verdict": None}


def adjust_family(rows: list[dict[str, Any]], *, method: str = "holm", alpha: float = 0.05
                  ) -> None:
    """Adjust the p-values of one family in place and set every row's verdict."""
    testable = [r for r in rows if r["p_value"] is not None]
    adjusted = adjust_pvalues([r["p_value"] for r in testable], method)
    for row, p in zip(testable, adjusted, strict=True):
        row["p_adjusted"] = float(p)
    for row in rows:
        result = TestResult(row["mean_diff"], row["ci_low"], row["ci_high"], row["p_value"],
                            row["df"], row["n_bars"], row["n_seeds"], row["n_folds"],
                            row["test"], row["reason"])
        row["verdict"] = verdict_of(result, row["p_adjusted"],
                                    higher_better=higher_is_better(row["metric"]), alpha=alpha)
        row["adjustment"] = method


def _ordinal(label: str) -> tuple[str, int] | None:
    key, _, value = label.partition("=")
    if key in ORDINAL_KEYS and value.lstrip("-").isdigit() and "," not in value:
        return key, int(value)
    return None


def _first_member_pairs(outputs: Iterable[Output]) -> list[tuple[Output, Output]]:
    by_method: dict[str, list[tuple[int, Output]]] = {}
    for output in outputs:
        ordinal = _ordinal(output[1])
        if output[0].endswith("+gate"):
            continue  # a gated strategy is compared with itself ungated only
        if ordinal is not None:
            by_method.setdefault(output[0], []).append((ordinal[1], output))
    pairs = []
    for members in by_method.values():
        members.sort()
        pairs += [(o, members[0][1]) for _, o in members[1:]]
    return pairs


def _plan(evidence: Evidence, references: Sequence[str]) -> list[tuple[str, Output, Output,
                                                                         tuple[str, ...]]]:
    """(kind, candidate, reference, metrics) of every comparison the run reports."""
    classified = evidence.outputs("correct")
    traded = evidence.outputs("net")
    everything = list(dict.fromkeys(classified + traded))
    candidates = [o for o in everything if o[0] not in _NOT_COMPARED]
    plan: list[tuple[str, Output, Output, tuple[str, ...]]] = [
        ("vs_first_member", c, r, COMPARED_METRICS)
            for c, r in _first_member_pairs(candidates)]
    for name in references:
        ref = (name, "-")
        if ref not in evidence.tables:
            continue
        headline_only = name != "baseline"
        plan += [(f"vs_{name}", c, ref, COMPARED_METRICS) for c in candidates
                 if c[0] != name and not c[0].endswith("+gate")
                 and (c[1] == "-" or not headline_only)]
    plan += [("vs_ungated", c, (c[0].removesuffix("+gate"), c[1]), ("sharpe",))
             for c in traded if c[0].endswith("+gate")]
    headline = [c for c in candidates if c[1] == "-" and c in traded]
    plan += [(f"vs_{name}", c, (name, "-"), ("sharpe",)) for name in TRADING_REFERENCES
             for c in headline]
    return plan


def compare_outputs(evidence: Evidence, *, periods_per_year: float = 1.0,
                    references: Sequence[str] = REFERENCE_METHODS, adjust: str = "bh"
                    ) -> list[dict[str, Any]]:
    """Every paired comparison of the run on its test bars, adjusted as one family.

    Returns:
        One dict per (comparison, metric): ``kind`` (``vs_first_member``,
        ``vs_baseline``, ``vs_logistic``, ``vs_lightgbm``, ``vs_hmm``, ``vs_ungated``,
        ``vs_buy_and_hold``, ``vs_always_flat``, ``vs_random``), ``method``,
        ``candidate``, ``reference_method``, ``reference``, ``metric``, ``mean_diff``
        (candidate - reference), ``ci_low`` / ``ci_high`` (95%), ``p_value``,
        ``p_adjusted``, ``family``, ``adjustment``, ``test``, ``df``, ``n_bars``,
        ``n_seeds``, ``n_folds``, ``reason`` (why not testable) and ``verdict``.
    """
    rows = [row for kind, cand, ref, metrics in _plan(evidence, references)
            for row in comparison_rows(evidence, kind, cand, ref, metrics,
                                       periods_per_year=periods_per_year)]
    adjust_family(rows, method=adjust)
    return rows

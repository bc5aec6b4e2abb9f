"""From per-cell records to aggregates with intervals and paired comparisons.

A *record* is one output (method + member keys) on one split of one
(fold, seed) cell, carrying metric values. This module

* adds ``<method>_selected`` records: per cell, the member the method chose
  on validation (a method's honest score, since the choice varies by cell);
* aggregates every (method, member, split) over cells into one record with
  ``fold`` and ``seed`` null and, per metric, ``{"mean", "ci_low", "ci_high", "n"}``;
* compares, on the test split and the same cells, each member against the
  method's first member (generation 0, the first snapshot, ...) and each
  output against the hard-label ``baseline``, with a paired bootstrap and a
  verdict (see :mod:`selfdistill.evaluation.statistics`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from selfdistill.evaluation.statistics import bootstrap_interval, paired_comparison

__all__ = [
    "COMPARED_METRICS",
    "ORDINAL_KEYS",
    "REFERENCE_METHODS",
    "add_selected_records",
    "aggregate_records",
    "compare_records",
    "member_keys",
    "member_label",
    "metric_names",
]

#: Metrics every paired comparison reports (``accuracy_true`` too on synthetic data).
COMPARED_METRICS = ("accuracy", "macro_f1", "nll", "ece", "sharpe", "accuracy_true")
#: Methods every other output is compared with, when the run has them.
REFERENCE_METHODS = ("baseline", "lightgbm")
#: Rows without a classifier (trading baselines), never compared.
_NOT_COMPARED = ("buy_and_hold", "always_flat", "random")
#: Member keys that count members in order; the smallest value is the reference.
ORDINAL_KEYS = ("generation", "snapshot", "cycle", "exit")
_CELL = ("seed", "fold")
_NOT_KEYS = frozenset({"method", "split", "seed", "fold", "selected", "selected_from", "cells",
                       "aggregate", "n", "confusion_matrix"})

GroupKey = tuple[str, str, tuple[tuple[str, Any], ...]]


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
            copy = {**rec, **dict.fromkeys(keys), "method": f"{rec['method']}_selected",
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


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


def aggregate_records(records: Sequence[dict[str, Any]], *, n_boot: int = 2000,
                      seed: int = 0) -> list[dict[str, Any]]:
    """One record per (method, member, split): per metric mean, ci_low, ci_high, n."""
    out = []
    for (method, split, keys), group in _groups(records).items():
        agg: dict[str, Any] = {"method": method, **dict(keys), "split": split,
                               "seed": None, "fold": None, "aggregate": True,
                               "cells": len(group)}
        names = dict.fromkeys(name for rec in group for name in metric_names(rec))
        for name in names:
            values = _finite(rec.get(name) for rec in group)
            if values:
                agg[name] = bootstrap_interval(values, n_boot=n_boot, seed=seed).to_dict()
        out.append(agg)
    return out


def _by_cell(group: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(rec[c] for c in _CELL): rec for rec in group}


def _compare(kind: str, candidate: list[dict[str, Any]], reference: list[dict[str, Any]],
             *, metrics: Sequence[str], n_boot: int, seed: int) -> list[dict[str, Any]]:
    a, b = _by_cell(candidate), _by_cell(reference)
    cells = sorted(set(a) & set(b), key=str)
    out = []
    for metric in metrics:
        pairs = [(_finite([a[c].get(metric)]), _finite([b[c].get(metric)])) for c in cells]
        kept = [(x[0], y[0]) for x, y in pairs if x and y]
        if not kept:
            continue
        cmp = paired_comparison([p[0] for p in kept], [p[1] for p in kept], metric=metric,
                                n_boot=n_boot, seed=seed)
        out.append({"kind": kind, "method": candidate[0]["method"],
                    "candidate": member_label(member_keys(candidate[0])),
                    "reference_method": reference[0]["method"],
                    "reference": member_label(member_keys(reference[0])),
                    "split": candidate[0]["split"], "metric": metric, **cmp.to_dict()})
    return out


def _ordinal(keys: tuple[tuple[str, Any], ...]) -> tuple[str, int] | None:
    d = dict(keys)
    for name in ORDINAL_KEYS:
        if type(d.get(name)) is int:
            return name, d[name]
    return None


def _vs_first_member(groups: dict[GroupKey, list[dict[str, Any]]], split: str
                     ) -> list[tuple[GroupKey, GroupKey]]:
    by_method: dict[str, list[tuple[int, GroupKey]]] = {}
    for key in groups:
        ordinal = _ordinal(key[2])
        if key[1] == split and ordinal is not None:
            by_method.setdefault(key[0], []).append((ordinal[1], key))
    pairs = []
    for members in by_method.values():
        members.sort(key=lambda item: item[0])
        pairs += [(key, members[0][1]) for _, key in members[1:]]
    return pairs


def compare_records(records: Sequence[dict[str, Any]], *, split: str = "test",
                    metrics: Sequence[str] = COMPARED_METRICS, n_boot: int = 2000, seed: int = 0,
                    reference_methods: Sequence[str] = REFERENCE_METHODS) -> list[dict[str, Any]]:
    """Paired comparisons on ``split``: members vs the first member, outputs vs references.

    Returns:
        One dict per (comparison, metric): ``kind`` ("vs_first_member",
        "vs_baseline", "vs_lightgbm"), ``method``, ``candidate``,
        ``reference_method``, ``reference``, ``split``, ``metric``, ``mean_diff``,
        ``ci_low``, ``ci_high``, ``n`` and ``verdict``.
    """
    groups = _groups(records)
    out = []
    for cand, ref in _vs_first_member(groups, split):
        out += _compare("vs_first_member", groups[cand], groups[ref], metrics=metrics,
                        n_boot=n_boot, seed=seed)
    for reference in reference_methods:
        refs = [k for k in groups if k[0] == reference and k[1] == split]
        if not refs:
            continue
        for key, group in groups.items():
            if key[1] == split and key[0] not in (reference, *_NOT_COMPARED):
                out += _compare(f"vs_{reference}", group, groups[refs[0]], metrics=metrics,
                                n_boot=n_boot, seed=seed)
    return out

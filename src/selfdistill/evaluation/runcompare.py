"""Comparing run directories (``selfdistill runs compare A B ...``).

Side by side: every run's headline outputs (each method's validation-chosen output) with
their test means and 95% intervals. Then, where two runs can be paired, the verdict
engine's paired per-bar test (:mod:`selfdistill.evaluation.statistics`) of each output
the runs share, the first run being the reference: the per-bar evidence of each run is
built from its predictions.parquet and backtest.parquet
(:func:`selfdistill.evaluation.evidence.build_evidence`) and paired on (fold, bar).

Two runs can be paired when they scored the same test bars against the same labels:
the same market and bars (``data``), the same label settings, the same classes and the
same test folds (``experiment.fold_bounds``). Otherwise the reason is given instead of a
test. Seeds are paired by position when both runs have as many; otherwise each run's
seeds are averaged per bar first (the test is then conditional on the trained models).
The p-values of one comparison are Holm-adjusted as one family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from selfdistill.evaluation.aggregate import (
    adjust_family,
    comparison_row,
    member_keys,
    member_label,
    paired_test,
)
from selfdistill.evaluation.evidence import Evidence, Scores, build_evidence, selected_members
from selfdistill.rundir.catalog import headline_outputs
from selfdistill.rundir.layout import CONFIG_FILE
from selfdistill.rundir.read import read_curves, read_metrics, read_predictions

__all__ = ["COMPARED", "RunComparison", "compare_runs", "pairing_problem", "side_by_side"]

#: Metrics compared across runs (Sharpe where both have a backtest).
COMPARED = ("accuracy", "nll", "brier", "sharpe", "accuracy_true")


@dataclass
class _Run:
    path: Path
    metrics: dict[str, Any]
    labels: dict[str, Any]


@dataclass
class RunComparison:
    """What ``runs compare`` prints: the table, and per run after the first its tests."""

    runs: list[str]
    table: list[dict[str, Any]]
    tests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unpaired: dict[str, str] = field(default_factory=dict)


def _load(path: Path) -> _Run:
    metrics = read_metrics(path)
    config = yaml.safe_load((path / CONFIG_FILE).read_text(encoding="utf-8")) \
        if (path / CONFIG_FILE).is_file() else {}
    return _Run(path, metrics, dict((config or {}).get("labels") or {}))


#: What names a market and its bars in metrics.json's ``data`` (the labelled rows and the
#: class balance follow from the labels, compared on their own).
_MARKET = ("source", "symbol", "path", "category", "interval", "first_bar", "last_bar", "bars")


def _identity(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data.get(k) for k in _MARKET}


def _tests_blocks(metrics: dict[str, Any]) -> list[Any]:
    return [b.get("test") for b in (metrics.get("experiment") or {}).get("fold_bounds", [])]


def pairing_problem(a: dict[str, Any], b: dict[str, Any], labels_a: dict[str, Any],
                    labels_b: dict[str, Any]) -> str | None:
    """Why two runs' test bars cannot be paired (None: they can)."""
    if _identity(a.get("data") or {}) != _identity(b.get("data") or {}) or not a.get("data"):
        return "they ran on different data (market, interval or bars)"
    if labels_a != labels_b:
        keys = sorted(k for k in set(labels_a) | set(labels_b)
                      if labels_a.get(k) != labels_b.get(k))
        return f"their labels differ ({', '.join(f'labels.{k}' for k in keys)})"
    if a.get("class_names") != b.get("class_names"):
        return "their classes differ"
    if _tests_blocks(a) != _tests_blocks(b):
        return "their test folds differ (scheme, folds or split fractions)"
    return None


def side_by_side(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (output, metric) with each run's test mean and interval (None where absent)."""
    outputs = list(dict.fromkeys(o for m in runs for o in headline_outputs(m)))
    rows = []
    for output in outputs:
        for metric in COMPARED:
            cells = [_aggregate(m, output, metric) for m in runs]
            if any(c is not None for c in cells):
                rows.append({"output": output, "metric": metric, "values": cells})
    return rows


def _aggregate(metrics: dict[str, Any], output: str, metric: str) -> dict[str, Any] | None:
    for rec in metrics.get("records", []):
        value = rec.get(metric)
        if rec.get("aggregate") and rec.get("split") == "test" and rec["method"] == output \
                and rec.get("generation") is None and isinstance(value, dict):
            return value
    return None


def _evidence(run: _Run, tag: str, seeds_by_position: bool
              ) -> dict[tuple[str, str], dict[tuple[int, int], Scores]]:
    chosen = selected_members(run.metrics["records"], lambda r: member_label(member_keys(r)))
    evidence = build_evidence(read_predictions(run.path), read_curves(run.path),
                              run.metrics.get("class_names", ["bull", "bear", "sideways"]),
                              chosen)
    out = {}
    for (method, member), cells in evidence.tables.items():
        if member != "-":
            continue
        out[(f"{tag}:{method}", member)] = _relabel_seeds(cells, seeds_by_position)
    return out


def _relabel_seeds(cells: dict[tuple[int, int], Scores], by_position: bool
                   ) -> dict[tuple[int, int], Scores]:
    """Seeds 0..S-1 by position, or their per-bar mean as the one seed 0."""
    seeds = sorted({s for _, s in cells})
    if by_position:
        return {(f, seeds.index(s)): scores for (f, s), scores in cells.items()}
    out = {}
    for fold in sorted({f for f, _ in cells}):
        parts = [cells[(fold, s)] for s in seeds if (fold, s) in cells]
        mean = Scores(parts[0].times)
        for column in parts[0].columns:
            values = np.stack([p.on(column, mean.times) for p in parts])
            seen = np.isfinite(values).sum(axis=0)
            total = np.where(np.isfinite(values), values, 0.0).sum(axis=0)
            mean.put(mean.times, {column: np.where(seen > 0, total / np.maximum(seen, 1),
                                                   np.nan)})
        out[(fold, 0)] = mean
    return out


def _seeds(metrics: dict[str, Any]) -> list[int]:
    return list((metrics.get("experiment") or {}).get("seeds") or [])


def _paired_rows(reference: _Run, candidate: _Run) -> list[dict[str, Any]]:
    by_position = len(_seeds(reference.metrics)) == len(_seeds(candidate.metrics))
    tables = {**_evidence(reference, "A", by_position), **_evidence(candidate, "B", by_position)}
    evidence = Evidence(tables)
    ppy = float((candidate.metrics.get("backtest") or {}).get("periods_per_year_used") or 1.0)
    shared = [o for o in headline_outputs(candidate.metrics)
              if o in headline_outputs(reference.metrics)]
    rows = []
    for output in shared:
        cand, ref = (f"B:{output}", "-"), (f"A:{output}", "-")
        for metric in COMPARED:
            result = paired_test(evidence, cand, ref, metric, periods_per_year=ppy)
            if result is not None:
                row = comparison_row("vs_run", (output, "-"), (output, "-"), metric, result,
                                     family="runs")
                rows.append(row)
    adjust_family(rows, method="holm")
    return rows


def compare_runs(paths: Sequence[str | Path]) -> RunComparison:
    """Side-by-side metrics of the runs, and each later run's paired tests against the
    first (or why they cannot be paired)."""
    runs = [_load(Path(p)) for p in paths]
    names = [str(r.path) for r in runs]
    comparison = RunComparison(names, side_by_side([r.metrics for r in runs]))
    reference = runs[0]
    for run in runs[1:]:
        why = pairing_problem(reference.metrics, run.metrics, reference.labels, run.labels)
        if why is not None:
            comparison.unpaired[str(run.path)] = why
        else:
            comparison.tests[str(run.path)] = _paired_rows(reference, run)
    return comparison

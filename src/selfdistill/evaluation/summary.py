"""A run's statistics from its cells: aggregates, comparisons, error flags, findings.

::

    cell records -> + <method>_selected -> aggregates (fold-level t intervals)
    each cell's per-bar evidence (evidence.py, collected while it scored)
      -> paired comparisons, one adjusted family (aggregate.py)
      -> does disagreement flag errors? (error_flags.py)
      -> the four questions and the warnings (findings.py)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from selfdistill.config import RunConfig
from selfdistill.evaluation.aggregate import (
    add_selected_records,
    aggregate_records,
    compare_outputs,
    member_keys,
    member_label,
)
from selfdistill.evaluation.cell import CellResult
from selfdistill.evaluation.error_flags import flags_of
from selfdistill.evaluation.evidence import CellEvidence, combine_evidence, selected_members
from selfdistill.evaluation.findings import RunFacts, answer_questions

__all__ = ["RunSummary", "summarise"]


@dataclass
class RunSummary:
    """Everything metrics.json says about a run besides its settings."""

    records: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    error_flags: list[dict[str, Any]]
    findings: dict[str, Any] = field(default_factory=dict)


def summarise(results: Sequence[CellResult], cfg: RunConfig, *, class_names: Sequence[str],
              periods_per_year: float | None, facts: RunFacts | None = None) -> RunSummary:
    """Records (cells, selected, aggregates), comparisons, error flags and findings.

    Args:
        results: every cell's result.
        cfg: the run config (``evaluation.adjust``, ``evaluation.primary_metric``).
        class_names: the label classes in column order.
        periods_per_year: annualisation of Sharpe ratios (None: no backtest).
        facts: what the findings' warnings need to know about the data and folds.
    """
    ordered = sorted(results, key=lambda r: (r.fold, r.seed))
    records = add_selected_records(rec for res in ordered for rec in res.records)
    aggregates = aggregate_records(records)
    chosen = selected_members(records, lambda r: member_label(member_keys(r)))
    evidence = combine_evidence(_cell_evidence(ordered), chosen)
    comparisons = compare_outputs(evidence, periods_per_year=periods_per_year or 1.0,
                                  adjust=cfg.evaluation.adjust)
    flags = flags_of(evidence)
    findings = answer_questions(evidence, aggregates, flags, cfg,
                                periods_per_year=periods_per_year or 1.0,
                                facts=facts or RunFacts())
    return RunSummary(records + aggregates, comparisons, flags, findings)


def _cell_evidence(results: Sequence[CellResult]) -> list[CellEvidence]:
    missing = [f"fold {r.fold} seed {r.seed}" for r in results if r.evidence is None]
    if missing:
        raise AssertionError(f"cells without evidence: {', '.join(missing)}")
    return [r.evidence for r in results if r.evidence is not None]

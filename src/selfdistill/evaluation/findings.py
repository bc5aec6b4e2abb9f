"""The answer to the user's question, in four lines no stronger than the tests.

1. Does self-distillation beat its own hard-label model? (each self-distillation
   method's selected member vs ``baseline``, on ``evaluation.primary_metric``)
2. Does it beat the best simple alternative? (vs the best of ``logistic``,
   ``lightgbm`` and ``hmm`` by mean *validation* NLL, so the choice never sees test)
3. After costs, does trading it beat buy-and-hold, always-flat and random timing
   (random with its own turnover)? (per-bar Sharpe-ratio tests)
4. Does disagreement flag errors, and better than the model's own confidence?
   (AUROC of each measure for predicting an error, vs ``1 - max probability``)

Each answer is ``yes``, ``no``, ``not significant`` or ``not testable (why)``. The
tests behind the four questions form one family ("findings"), Holm-adjusted
(family-wise error: the confirmatory answers), apart from the run's other
comparisons (the exploratory table, ``evaluation.adjust``, BH by default). On synthetic data the
lines add the same comparison against the market's true regimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from selfdistill.config import RunConfig
from selfdistill.evaluation.aggregate import adjust_family, comparison_rows
from selfdistill.evaluation.error_flags import CONFIDENCE, MEASURES
from selfdistill.evaluation.evidence import Evidence, Output
from selfdistill.evaluation.findings_text import (
    NO,
    NOT_SIGNIFICANT,
    NOT_TESTABLE,
    YES,
    flags_answer,
    overall_line,
    pair_answer,
    question_line,
    trading_answer,
    warnings_for,
)

__all__ = ["ALTERNATIVES", "NO", "NOT_SIGNIFICANT", "NOT_TESTABLE", "QUESTIONS",
           "SELF_DISTILLATION", "YES", "RunFacts", "answer_questions"]

#: Methods that improve a model by self-distillation (the candidates of the questions).
SELF_DISTILLATION = ("born_again", "byot", "snapshot", "ema_teacher")
#: The simple alternatives a quant would otherwise use.
ALTERNATIVES = ("logistic", "lightgbm", "hmm")
QUESTIONS = {
    "own_baseline": "Does self-distillation beat its own hard-label model?",
    "simple_alternative": "Does it beat the best simple alternative?",
    "trading": "After costs, does trading it beat buy-and-hold, always-flat and random "
               "timing?",
    "disagreement": "Does disagreement flag errors, and better than the model's own "
                    "confidence?",
}


@dataclass(frozen=True)
class RunFacts:
    """What the warnings need to know about the data and the folds."""

    test_rows_per_fold: tuple[int, ...] = ()
    majority_share: float | None = None  # of the test labels
    majority_class: str | None = None
    label_horizon: int | None = None
    scheme: str = "holdout"
    notes: tuple[str, ...] = field(default_factory=tuple)


def _headline(evidence: Evidence, method: str) -> Output | None:
    for output in ((f"{method}_selected", "-"), (method, "-")):
        if output in evidence.tables:
            return output
    return None


def _best_alternative(aggregates: Sequence[dict[str, Any]], evidence: Evidence
                      ) -> tuple[str | None, float | None]:
    """The simple alternative with the lowest mean validation NLL (test never looked at)."""
    scored = []
    for rec in aggregates:
        nll = rec.get("nll")
        if (rec["method"] in ALTERNATIVES and rec["split"] == "val" and isinstance(nll, dict)
                and (rec["method"], "-") in evidence.tables):
            scored.append((nll["mean"], rec["method"]))
    if not scored:
        return None, None
    value, name = min(scored)
    return name, value


def _tests(evidence: Evidence, kind: str, candidate: Output, reference: Output,
           metrics: Sequence[str], periods_per_year: float) -> list[dict[str, Any]]:
    return comparison_rows(evidence, kind, candidate, reference, metrics,
                           periods_per_year=periods_per_year, family="findings")


def _flag_rows(flags: Sequence[dict[str, Any]], methods: Sequence[str]) -> list[dict[str, Any]]:
    """AUROC tests as comparison rows: each measure vs 0.5 and vs the confidence score."""
    rows = []
    for entry in flags:
        if entry["method"] not in methods:
            continue
        for measure in MEASURES:
            score = entry["scores"][measure]
            for kind, key, ref, shift in (("auroc_vs_chance", "auroc", "0.5", 0.5),
                                          ("auroc_vs_confidence", "vs_reference", CONFIDENCE,
                                           0.0)):
                if key not in score:
                    continue
                t = score[key]
                rows.append({"kind": kind, "method": entry["method"], "candidate": measure,
                             "reference_method": ref, "reference": "-", "split": "test",
                             "metric": "auroc", "mean_diff": t["estimate"] - shift,
                             "ci_low": _minus(t["ci_low"], shift),
                             "ci_high": _minus(t["ci_high"], shift),
                             "p_value": t["p_value"], "p_adjusted": None,
                             "family": "findings", "test": t["method"], "df": t["df"],
                             "n_bars": t["n_bars"], "n_seeds": t["n_seeds"],
                             "n_folds": t["n_folds"], "reason": t["reason"],
                             "verdict": None, "auroc": score["auroc"]["estimate"],
                             "confidence_auroc": entry["scores"][CONFIDENCE]["auroc"]["estimate"]})
    return rows


def _minus(value: float | None, shift: float) -> float | None:
    return None if value is None else value - shift


def answer_questions(evidence: Evidence, aggregates: Sequence[dict[str, Any]],
                     flags: Sequence[dict[str, Any]], cfg: RunConfig, *,
                     periods_per_year: float, facts: RunFacts) -> dict[str, Any]:
    """The findings block of metrics.json: four answered questions, an overall line,
    warnings, and every test behind them (one family, adjusted together)."""
    primary = cfg.evaluation.primary_metric
    metrics = (primary, "accuracy_true") if "correct_true" in _columns(evidence) else (primary,)
    methods = [m for m in SELF_DISTILLATION if _headline(evidence, m) is not None]
    alt, alt_nll = _best_alternative(aggregates, evidence)
    rows: dict[str, list[dict[str, Any]]] = {q: [] for q in QUESTIONS}
    for method in methods:
        head = _headline(evidence, method)
        assert head is not None
        if ("baseline", "-") in evidence.tables:
            rows["own_baseline"] += _tests(evidence, "vs_baseline", head, ("baseline", "-"),
                                           metrics, periods_per_year)
        if alt is not None:
            rows["simple_alternative"] += _tests(evidence, f"vs_{alt}", head, (alt, "-"),
                                                 metrics, periods_per_year)
        for ref in ("buy_and_hold", "always_flat", "random"):
            rows["trading"] += _tests(evidence, f"vs_{ref}", head, (ref, "-"), ("sharpe",),
                                      periods_per_year)
    rows["disagreement"] = _flag_rows(flags, methods)
    adjust_family([r for q in rows.values() for r in q], method="holm")
    answers = _answers(rows, methods, primary, alt, alt_nll, evidence)
    return {"family": "findings", "adjustment": "holm",
            "primary_metric": primary, "methods": methods, "best_alternative": alt,
            "best_alternative_val_nll": alt_nll, "questions": answers,
            "overall": overall_line(answers, methods, alt),
            "warnings": warnings_for(facts)}


def _columns(evidence: Evidence) -> set[str]:
    return evidence.columns()


def _answers(rows: dict[str, list[dict[str, Any]]], methods: Sequence[str], primary: str,
             alt: str | None, alt_nll: float | None, evidence: Evidence
             ) -> list[dict[str, Any]]:
    out = []
    for qid, text in QUESTIONS.items():
        tests = rows[qid]
        if not methods:
            word, why = NOT_TESTABLE, "no self-distillation method in this run's methods"
        elif qid == "own_baseline" and ("baseline", "-") not in evidence.tables:
            word, why = NOT_TESTABLE, "add 'baseline' to methods"
        elif qid == "simple_alternative" and alt is None:
            word, why = NOT_TESTABLE, "add logistic, lightgbm or hmm to methods"
        elif qid == "trading":
            word, why = trading_answer(tests)
        elif qid == "disagreement":
            word, why = flags_answer(tests)
        else:
            word, why = pair_answer(tests, primary)
        out.append({"id": qid, "question": text, "answer": word, "why": why,
                    "line": question_line(qid, text, word, why, alt, alt_nll),
                    "tests": tests})
    return out

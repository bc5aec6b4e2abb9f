"""Words for the findings: answers no stronger than the tests behind them.

An answer word comes from the *adjusted* verdicts of the findings family:
``yes`` needs a significant result in the question's favour, ``no`` a significant
one against it, ``not significant`` means the test could not tell, and
``not testable (why)`` that no valid test was possible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from selfdistill.evaluation.statistics import BETTER, NO_DIFFERENCE, WORSE

__all__ = [
    "MAJORITY_SHARE",
    "MIN_TEST_ROWS",
    "NO",
    "NOT_SIGNIFICANT",
    "NOT_TESTABLE",
    "YES",
    "describe",
    "flags_answer",
    "overall_line",
    "pair_answer",
    "question_line",
    "trading_answer",
    "warnings_for",
]

YES, NO, NOT_SIGNIFICANT, NOT_TESTABLE = "yes", "no", "not significant", "not testable"
#: A fold with fewer test rows than this gets a warning.
MIN_TEST_ROWS = 200
#: A majority class above this share of the test labels gets a warning.
MAJORITY_SHARE = 0.60


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.4f}" if abs(value) < 100 else f"{value:+.1f}"


def describe(row: dict[str, Any]) -> str:
    """``born_again_selected vs baseline: accuracy +0.0300, 95% CI [+0.0040, +0.0560],
    p 0.024, adjusted 0.07``: the interval goes with the raw p-value, the verdict with the
    adjusted one, so both are shown."""
    who = row["method"] if row["candidate"] == "-" else f"{row['method']} {row['candidate']}"
    ref = row["reference_method"]
    head = f"{who} vs {ref}: {row['metric']} {_num(row['mean_diff'])}"
    if row["reason"]:
        return f"{head} (not testable: {row['reason']})"
    raw, adjusted = row["p_value"], row["p_adjusted"]
    p_text = "p n/a" if raw is None or adjusted is None else \
        f"p {raw:.2g}, adjusted {adjusted:.2g}"
    return f"{head}, 95% CI [{_num(row['ci_low'])}, {_num(row['ci_high'])}], {p_text}"


def _combine(words: Sequence[str], reasons: Sequence[str]) -> str:
    if not words:
        return NOT_TESTABLE
    if all(w == NOT_TESTABLE for w in words):
        return NOT_TESTABLE
    if YES in words:
        return YES
    if NO in words:
        return NO
    return NOT_SIGNIFICANT


def _word(verdict: str | None, *, good: str = BETTER) -> str:
    if verdict == good:
        return YES
    if verdict in (BETTER, WORSE):
        return NO
    return NOT_SIGNIFICANT if verdict == NO_DIFFERENCE else NOT_TESTABLE


def pair_answer(tests: Sequence[dict[str, Any]], primary: str) -> tuple[str, str]:
    """Answer of a "does it beat X" question: one word, and the primary-metric lines."""
    main = [t for t in tests if t["metric"] == primary]
    words = [_word(t["verdict"]) for t in main]
    reasons = [t["reason"] for t in main if t["reason"]]
    word = _combine(words, reasons)
    why = "; ".join(describe(t) for t in main) or "no paired test bars"
    if word == NOT_TESTABLE and reasons:
        why = reasons[0]
    truth = [describe(t) for t in tests if t["metric"] == "accuracy_true"]
    if truth:
        why += f"; against the true regimes: {'; '.join(truth)}"
    return word, why


def trading_answer(tests: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """Per method: yes if its Sharpe ratio beats all three references, no if it loses to one."""
    words = []
    for method in dict.fromkeys(t["method"] for t in tests):
        own = [t for t in tests if t["method"] == method]
        verdicts = [t["verdict"] for t in own]
        if own and all(v == BETTER for v in verdicts):
            words.append(YES)
        elif WORSE in verdicts:
            words.append(NO)
        elif all(v not in (BETTER, WORSE, NO_DIFFERENCE) for v in verdicts):
            words.append(NOT_TESTABLE)
        else:
            words.append(NOT_SIGNIFICANT)
    reasons = [t["reason"] for t in tests if t["reason"]]
    word = _combine(words, reasons)
    why = "; ".join(describe(t) for t in tests) or "the backtest is off (backtest.enabled)"
    return word, why


def flags_answer(tests: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """yes: a measure beats chance and 1 - max probability; no: confidence beats them."""
    if not tests:
        return NOT_TESTABLE, "no self-distillation method with several members in this run"
    chance = {(t["method"], t["candidate"]): t for t in tests if t["kind"] == "auroc_vs_chance"}
    versus = {(t["method"], t["candidate"]): t for t in tests
              if t["kind"] == "auroc_vs_confidence"}
    both = [k for k in chance if chance[k]["verdict"] == BETTER
            and versus.get(k, {}).get("verdict") == BETTER]
    lines = [f"{m} {measure}: AUROC {chance[(m, measure)]['auroc']:.3f} vs "
             f"{versus[(m, measure)]['confidence_auroc'] or float('nan'):.3f} for "
             f"1 - max probability, difference {_num(versus[(m, measure)]['mean_diff'])} "
             f"[{_num(versus[(m, measure)]['ci_low'])}, "
             f"{_num(versus[(m, measure)]['ci_high'])}]"
             for m, measure in chance if (m, measure) in versus
             and chance[(m, measure)]["auroc"] is not None]
    if all(t["reason"] for t in tests):
        return NOT_TESTABLE, tests[0]["reason"]
    if both:
        word = YES
    elif any(t["verdict"] == WORSE for t in versus.values()):
        word = NO
    else:
        word = NOT_SIGNIFICANT
    return word, "; ".join(lines)


def question_line(qid: str, text: str, word: str, why: str, alt: str | None,
                  alt_nll: float | None) -> str:
    """One line: the question, the answer word, and the numbers behind it."""
    prefix = f"{text} {word.upper() if word != NOT_TESTABLE else 'NOT TESTABLE'}"
    if qid == "simple_alternative" and alt is not None:
        prefix += f" (best on validation NLL: {alt}, {alt_nll:.4f})"
    return f"{prefix} — {why}."


_PHRASES = {
    "own_baseline": {YES: "beats its own hard-label model", NO: "is worse than its own "
                     "hard-label model", NOT_SIGNIFICANT: "shows no significant difference from "
                     "its own hard-label model", NOT_TESTABLE: "could not be tested against its "
                     "own hard-label model"},
    "simple_alternative": {YES: "beats the best simple alternative", NO: "is worse than the "
                           "best simple alternative", NOT_SIGNIFICANT: "shows no significant "
                           "difference from the best simple alternative",
                           NOT_TESTABLE: "could not be tested against a simple alternative"},
    "trading": {YES: "after costs it trades better than buy-and-hold, always-flat and random "
                "timing", NO: "after costs it trades worse than at least one of buy-and-hold, "
                "always-flat and random timing", NOT_SIGNIFICANT: "after costs its trading is "
                "not significantly different from the simple strategies",
                NOT_TESTABLE: "its trading could not be tested"},
}


def overall_line(answers: Sequence[dict[str, Any]], methods: Sequence[str],
                 alt: str | None) -> str:
    """What the evidence supports, in one sentence no stronger than the tests."""
    if not methods:
        return ("Overall: this run has no self-distillation method, so it cannot say "
                "whether self-distillation helps.")
    got = {a["id"]: a["answer"] for a in answers}
    parts = [_PHRASES[q][got[q]] for q in ("own_baseline", "simple_alternative", "trading")]
    if alt is not None:
        parts[1] = parts[1].replace("the best simple alternative",
                                    f"the best simple alternative ({alt})")
    verdict = ("The evidence supports preferring it to the simple alternative."
               if got["simple_alternative"] == YES else
               "The evidence does not show that self-distillation is worth its extra compute "
               "on this data.")
    return f"Overall: {', '.join(methods)} {parts[0]}, {parts[1]}; {parts[2]}. {verdict}"


def warnings_for(facts: Any) -> list[str]:
    """Warnings about data too small or too lopsided for the verdicts to mean much."""
    out = []
    small = [(k, n) for k, n in enumerate(facts.test_rows_per_fold) if n < MIN_TEST_ROWS]
    if small:
        listed = ", ".join(f"fold {k}: {n}" for k, n in small)
        out.append(f"test rows per fold below {MIN_TEST_ROWS} ({listed}): verdicts rest on "
                   "little data")
    if facts.majority_share is not None and facts.majority_share > MAJORITY_SHARE:
        out.append(f"the majority class ({facts.majority_class}) is "
                   f"{facts.majority_share:.0%} of the test labels: accuracy mostly measures "
                   "it; look at NLL, Brier and balanced accuracy")
    if len(facts.test_rows_per_fold) == 1:
        out.append("1 fold: per-fold intervals are not available and every verdict is about "
                   "this one test period; use evaluation.scheme walk_forward with folds >= 2 "
                   "to see whether it holds across periods")
    if facts.label_horizon is not None and facts.test_rows_per_fold and \
            facts.label_horizon >= min(facts.test_rows_per_fold):
        out.append(f"the label horizon ({facts.label_horizon} bars) is as long as a fold's test "
                   "block: consecutive labels share most of their window")
    return out + list(facts.notes)

"""The findings block: four answers whose words never claim more than the tests did.

Each case constructs per-bar test predictions (and backtest curves) with a known
truth — a clear win, a clear loss, no difference, one fold — and checks the words.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from selfdistill.config import parse_config
from selfdistill.evaluation.error_flags import error_flags
from selfdistill.evaluation.evidence import build_evidence
from selfdistill.evaluation.findings import RunFacts, answer_questions

CLASSES = ("bull", "bear", "sideways")


def _proba(rng: np.random.Generator, y: np.ndarray, right: float) -> np.ndarray:
    """Probabilities whose arg-max is the label on about ``right`` of the bars."""
    p = rng.dirichlet([2, 2, 2], y.size) * 0.5
    hit = rng.random(y.size) < right
    wrong = (y + rng.integers(1, 3, y.size)) % 3
    top = np.where(hit, y, wrong)
    p[np.arange(y.size), top] += 0.5
    return p / p.sum(axis=1, keepdims=True)


def _run(candidate: float, *, folds: int = 2, bars: int = 600, seeds: int = 2,
         alternative: float = 0.45, drift: float = 0.0) -> dict[str, Any]:
    """Findings of a constructed run: baseline right on 45% of bars, born_again's selected
    member on ``candidate``, logistic on ``alternative``; born_again earns ``drift`` a bar."""
    rng = np.random.default_rng(0)
    frames, curves = [], []
    for fold in range(folds):
        times = pd.date_range(f"202{fold}-01-01", periods=bars, freq="h", tz="UTC")
        y = rng.integers(0, 3, bars)
        asset = rng.normal(0.0, 0.01, bars)
        for seed in range(seeds):
            outputs = {("baseline", "-"): 0.45, ("logistic", "-"): alternative,
                       ("born_again", "generation=0"): 0.45,
                       ("born_again", "generation=1"): candidate}
            for (method, member), right in outputs.items():
                p = _proba(rng, y, right)
                frames.append(pd.DataFrame({
                    "open_time": times, "split": "test", "method": method, "member": member,
                    "p_bull": p[:, 0], "p_bear": p[:, 1], "p_sideways": p[:, 2], "label": y,
                    "seed": seed, "fold": fold}))
                net = rng.normal(0.0, 0.01, bars) + (drift if member == "generation=1" else 0)
                curves.append(pd.DataFrame({
                    "open_time": times, "method": method, "member": member, "net": net,
                    "random_net": rng.normal(0.0, 0.01, bars), "seed": seed, "fold": fold}))
            for name, net in (("buy_and_hold", asset), ("always_flat", np.zeros(bars)),
                              ("random", rng.normal(0, 0.01, bars))):
                curves.append(pd.DataFrame({"open_time": times, "method": name, "member": "-",
                                            "net": net, "random_net": np.nan, "seed": seed,
                                            "fold": fold}))
    predictions = pd.concat(frames, ignore_index=True)
    selected = {("born_again", s, f): "generation=1" for s in range(seeds) for f in range(folds)}
    evidence = build_evidence(predictions, pd.concat(curves, ignore_index=True), CLASSES,
                              selected)
    aggregates = [{"method": "logistic", "split": "val", "nll": {"mean": 1.05}}]
    facts = RunFacts(test_rows_per_fold=(bars,) * folds, majority_share=0.34,
                     majority_class="bull", label_horizon=12)
    return answer_questions(evidence, aggregates, error_flags(predictions, CLASSES),
                            parse_config({}), periods_per_year=8760, facts=facts)


def _answers(block: dict[str, Any]) -> dict[str, str]:
    return {q["id"]: q["answer"] for q in block["questions"]}


def test_a_clear_win_is_a_yes_with_its_numbers() -> None:
    block = _run(candidate=0.60, drift=0.004)
    got = _answers(block)
    assert got["own_baseline"] == "yes"
    assert got["simple_alternative"] == "yes"
    assert block["best_alternative"] == "logistic"
    first = block["questions"][0]
    assert "born_again_selected vs baseline: accuracy +0.1" in first["why"]
    assert "95% CI [" in first["why"]
    assert ", adjusted " in first["why"]
    assert "beats its own hard-label model" in block["overall"]
    assert "supports preferring it" in block["overall"]
    trading = next(q for q in block["questions"] if q["id"] == "trading")
    assert {t["kind"] for t in trading["tests"]} == {"vs_buy_and_hold", "vs_always_flat",
                                                     "vs_random"}
    assert got["trading"] == "yes"


def test_a_clear_loss_is_a_no() -> None:
    block = _run(candidate=0.30, alternative=0.55, drift=-0.004)
    got = _answers(block)
    assert got["own_baseline"] == "no"
    assert got["simple_alternative"] == "no"
    assert got["trading"] == "no"
    assert "is worse than its own hard-label model" in block["overall"]
    assert "does not show" in block["overall"]


def test_no_difference_is_never_called_a_win() -> None:
    block = _run(candidate=0.45, alternative=0.45)
    got = _answers(block)
    assert got["own_baseline"] == "not significant"
    assert got["simple_alternative"] == "not significant"
    assert "beats" not in block["overall"]
    assert all(t["p_adjusted"] >= t["p_value"] for q in block["questions"]
               for t in q["tests"] if t["p_value"] is not None)
    assert block["adjustment"] == "holm"


def test_one_fold_still_tests_the_bars_and_warns() -> None:
    block = _run(candidate=0.60, folds=1, seeds=1)
    assert _answers(block)["own_baseline"] == "yes"
    assert any("1 fold" in w for w in block["warnings"])


@pytest.mark.parametrize(("facts", "expected"), [
    (RunFacts(test_rows_per_fold=(150, 900)), "below 200 (fold 0: 150)"),
    (RunFacts(test_rows_per_fold=(900, 900), majority_share=0.82, majority_class="sideways"),
     "sideways) is 82%"),
    (RunFacts(test_rows_per_fold=(50, 50), label_horizon=60), "label horizon (60 bars)"),
])
def test_warnings_name_the_problem(facts: RunFacts, expected: str) -> None:
    from selfdistill.evaluation.findings_text import warnings_for

    assert any(expected in w for w in warnings_for(facts))


def test_without_self_distillation_or_alternatives_it_says_not_testable() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    p = _proba(rng, y, 0.5)
    frame = pd.DataFrame({"open_time": pd.date_range("2024-01-01", periods=300, freq="h",
                                                     tz="UTC"),
                          "split": "test", "method": "baseline", "member": "-",
                          "p_bull": p[:, 0], "p_bear": p[:, 1], "p_sideways": p[:, 2],
                          "label": y, "seed": 0, "fold": 0})
    evidence = build_evidence(frame, None, CLASSES, {})
    block = answer_questions(evidence, [], [], parse_config({}), periods_per_year=1.0,
                             facts=RunFacts())
    assert set(_answers(block).values()) == {"not testable"}
    assert "cannot say whether self-distillation helps" in block["overall"]

"""The report's tables and plain-language findings, as data first, then HTML / Markdown.

Rows come from the aggregate records of metrics.json (test split) and the
paired comparisons. A cell shows ``mean [ci_low, ci_high]``; verdict columns
use ``+`` (better), ``-`` (worse) and ``=`` (no significant difference).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from selfdistill.evaluation.aggregate import member_keys, member_label

__all__ = [
    "BASELINE_ROWS",
    "HEADLINE_METRICS",
    "comparison_rows",
    "findings",
    "headline_rows",
    "html_table",
    "markdown_table",
]

#: (metric, column title) of the headline table, in order.
HEADLINE_METRICS = (
    ("accuracy", "accuracy"), ("accuracy_true", "acc. vs truth"), ("macro_f1", "macro-F1"),
    ("nll", "NLL"), ("nll_calibrated", "NLL (T)"), ("ece", "ECE"),
    ("ece_calibrated", "ECE (T)"), ("sharpe", "Sharpe"), ("total_return", "total return"),
    ("max_drawdown", "max DD"),
)
BASELINE_ROWS = ("buy_and_hold", "always_flat", "random")
_SHORT = {"accuracy": "acc", "macro_f1": "F1", "nll": "NLL", "ece": "ECE", "sharpe": "Sharpe",
          "accuracy_true": "truth"}
_SIGN = {"better": "+", "worse": "-", "no significant difference": "="}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _interval(agg: Any) -> str:
    if not isinstance(agg, dict):
        return _fmt(agg)
    if agg.get("ci_low") is None:
        return _fmt(agg.get("mean"))
    return f"{_fmt(agg['mean'])} [{_fmt(agg['ci_low'])}, {_fmt(agg['ci_high'])}]"


def _verdicts(comparisons: Sequence[dict[str, Any]], method: str, member: str,
              kind: str) -> str:
    parts = [f"{_SHORT.get(c['metric'], c['metric'])} {_SIGN.get(c['verdict'], '?')}"
             for c in comparisons
             if c["kind"] == kind and c["method"] == method and c["candidate"] == member]
    return ", ".join(parts) or "-"


def headline_rows(metrics: dict[str, Any], *, split: str = "test") -> tuple[list[str],
                                                                            list[list[str]]]:
    """(header, rows) of the per-method / per-member table with intervals and verdicts."""
    aggs = [r for r in metrics.get("records", []) if r.get("aggregate") and r["split"] == split]
    used = [(m, t) for m, t in HEADLINE_METRICS if any(m in r for r in aggs)]
    comparisons = metrics.get("comparisons", [])
    kinds = sorted({c["kind"] for c in comparisons})
    header = ["method", "member", "cells", *(t for _, t in used), *(k.replace("_", " ")
                                                                    for k in kinds)]
    models = [r for r in aggs if r["method"] not in BASELINE_ROWS]
    baselines = [r for r in aggs if r["method"] in BASELINE_ROWS]
    rows = []
    for rec in models + baselines:
        member = member_label(member_keys(rec))
        row = [rec["method"], member, _fmt(rec.get("cells"))]
        row += [_interval(rec.get(m)) for m, _ in used]
        row += [_verdicts(comparisons, rec["method"], member, k) for k in kinds]
        rows.append(row)
    return header, rows


def comparison_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) listing every paired comparison."""
    header = ["comparison", "method", "candidate", "reference", "metric",
              "mean difference [95% CI]", "pairs", "verdict"]
    rows = []
    for c in metrics.get("comparisons", []):
        diff = {"mean": c["mean_diff"], "ci_low": c["ci_low"], "ci_high": c["ci_high"]}
        rows.append([c["kind"].replace("_", " "), c["method"], c["candidate"],
                     f"{c['reference_method']} {c['reference']}".replace(" -", ""),
                     c["metric"], _interval(diff), _fmt(c["n"]), c["verdict"]])
    return header, rows


def findings(metrics: dict[str, Any]) -> list[str]:
    """Plain sentences: does each method beat the baseline, and LightGBM, on test?"""
    out = []
    for c in metrics.get("comparisons", []):
        selected = c["method"].endswith(("_selected", "_ensemble"))
        if c["kind"] not in ("vs_baseline", "vs_lightgbm") or not selected:
            continue
        if c["metric"] not in ("accuracy", "nll", "sharpe"):
            continue
        ref = c["reference_method"]
        said = {"better": "is better than", "worse": "is worse than",
                "no significant difference": "shows no significant difference from"}[c["verdict"]]
        out.append(f"{c['method']} {said} {ref} on test {c['metric']} "
                   f"(mean difference {_interval({'mean': c['mean_diff'], 'ci_low': c['ci_low'], 'ci_high': c['ci_high']})}, "  # noqa: E501
                   f"{c['n']} fold x seed pairs).")
    return out


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], *,
               css_class: str = "table") -> str:
    """An escaped HTML table."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return (f'<table class="{css_class}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])

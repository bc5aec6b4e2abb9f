"""The report's tables and plain-language findings, as data first, then HTML / Markdown.

Rows come from the aggregate records of metrics.json (test split) and the
paired comparisons. A cell shows ``mean [ci_low, ci_high]`` (a Student-t interval
over folds; the mean alone with one fold); verdict columns use ``+`` (better),
``-`` (worse), ``=`` (no significant difference) and ``?`` (not testable), from
Holm-adjusted p-values of per-bar paired tests.
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
    "findings_html",
    "findings_markdown",
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
          "accuracy_true": "truth", "brier": "Brier"}
_SIGN = {"better": "+", "worse": "-", "no significant difference": "=", "not testable": "?"}


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


#: Order of the signs in a verdict cell.
_VERDICT_ORDER = ("accuracy", "nll", "brier", "sharpe", "accuracy_true")


def _verdict_metrics(comparisons: Sequence[dict[str, Any]]) -> list[str]:
    present = {c["metric"] for c in comparisons}
    return [m for m in _VERDICT_ORDER if m in present]


def _verdicts(comparisons: Sequence[dict[str, Any]], method: str, member: str,
              kind: str) -> str:
    """One sign per metric in :func:`_verdict_metrics` order ('.' where not compared)."""
    got = {c["metric"]: _SIGN.get(c["verdict"], "?") for c in comparisons
           if c["kind"] == kind and c["method"] == method and c["candidate"] == member}
    if not got:
        return "-"
    return " ".join(got.get(m, ".") for m in _verdict_metrics(comparisons))


def _headline_kinds(metrics: dict[str, Any]) -> list[str]:
    """Verdict columns of the headline table: vs the first member, the baseline and the
    best simple alternative (every other comparison is in the comparisons table)."""
    kinds = {c["kind"] for c in metrics.get("comparisons", [])}
    best = (metrics.get("findings") or {}).get("best_alternative")
    wanted = ["vs_first_member", "vs_baseline", *([f"vs_{best}"] if best else [])]
    return [k for k in wanted if k in kinds]


def headline_rows(metrics: dict[str, Any], *, split: str = "test") -> tuple[list[str],
                                                                            list[list[str]]]:
    """(header, rows) of the per-method / per-member table with intervals and verdicts."""
    aggs = [r for r in metrics.get("records", []) if r.get("aggregate") and r["split"] == split]
    used = [(m, t) for m, t in HEADLINE_METRICS if any(m in r for r in aggs)]
    comparisons = metrics.get("comparisons", [])
    kinds = _headline_kinds(metrics)
    order = " ".join(_SHORT.get(m, m) for m in _verdict_metrics(comparisons))
    header = ["method", "member", "cells", *(t for _, t in used),
              *(f"{k.replace('_', ' ')} ({order})" for k in kinds)]
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


def _p(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


def comparison_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) listing every paired comparison with its raw and adjusted p-value."""
    header = ["comparison", "method", "candidate", "reference", "metric",
              "difference [95% CI]", "p", "p adj.", "bars x seeds (folds)", "verdict"]
    rows = []
    for c in metrics.get("comparisons", []):
        diff = {"mean": c["mean_diff"], "ci_low": c["ci_low"], "ci_high": c["ci_high"]}
        said = c["verdict"] if not c.get("reason") else f"not testable: {c['reason']}"
        rows.append([c["kind"].replace("_", " "), c["method"], c["candidate"],
                     f"{c['reference_method']} {c['reference']}".replace(" -", ""),
                     c["metric"], _interval(diff), _p(c.get("p_value")),
                     _p(c.get("p_adjusted")),
                     f"{c.get('n_bars', '-')} x {c.get('n_seeds', '-')} ({c.get('n_folds', '-')})",
                     said])
    return header, rows


def findings(metrics: dict[str, Any]) -> list[str]:
    """The findings block as plain lines: the four answers, the overall line, warnings."""
    block = metrics.get("findings") or {}
    lines = [q["line"] for q in block.get("questions", [])]
    if block.get("overall"):
        lines.append(block["overall"])
    lines += [f"Warning: {w}." for w in block.get("warnings", [])]
    return lines


_ANSWER_CLASS = {"yes": "yes", "no": "no", "not significant": "ns", "not testable": "nt"}


def findings_html(metrics: dict[str, Any]) -> str:
    """The findings block as HTML: one line per question, the overall line, warnings."""
    block = metrics.get("findings") or {}
    if not block:
        return '<p class="note">This run has no findings (made by an older version).</p>'
    items = []
    for q in block.get("questions", []):
        word = q["answer"] if q["answer"] != "not testable" else "not testable"
        items.append(f'<li><span class="q">{html.escape(q["question"])}</span> '
                     f'<b class="a {_ANSWER_CLASS.get(q["answer"], "nt")}">'
                     f"{html.escape(word)}</b> — {html.escape(q['why'])}</li>")
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in block.get("warnings", []))
    note = (f"Tests: per-bar paired tests on the test rows; the {len(_family(block))} tests "
            f"behind these answers form one family, {block.get('adjustment', 'holm')}-adjusted; "
            f"primary metric: {block.get('primary_metric', 'accuracy')}.")
    return (f'<ol class="findings">{"".join(items)}</ol>'
            f'<p class="finding">{html.escape(block.get("overall", ""))}</p>'
            + (f'<ul class="warnings">{warn}</ul>' if warn else "")
            + f'<p class="note">{html.escape(note)}</p>')


def _family(block: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for q in block.get("questions", []) for t in q.get("tests", [])]


def findings_markdown(metrics: dict[str, Any]) -> list[str]:
    """The findings block as Markdown lines."""
    block = metrics.get("findings") or {}
    if not block:
        return ["- (no findings: this run was made by an older version)"]
    lines = [f"{i}. **{q['question']}** {q['answer'].upper()} — {q['why']}"
             for i, q in enumerate(block.get("questions", []), start=1)]
    lines += ["", f"**{block.get('overall', '')}**"]
    lines += [f"- Warning: {w}" for w in block.get("warnings", [])]
    return lines


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

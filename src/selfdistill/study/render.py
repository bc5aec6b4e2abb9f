"""study.md and study.html from the study.json payload alone.

Both show the map first (per method: at how many points it beats, loses to, or cannot be
told from its hard-label model and the best simple alternative, after the study-wide
adjustment), then per point the gains with their intervals, the test metrics, members
(generations) where a method has them, and the findings. study.html is one file: the CSS
of the run report inline, figures as base64 PNG, no script, no external URL.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfdistill.atomic import atomic_write_text
from selfdistill.report.figures import to_data_uri
from selfdistill.report.markup import note, table
from selfdistill.report.style import CSS
from selfdistill.study.figures import gains_figure, levels_figure, members_figure
from selfdistill.study.layout import STUDY_HTML, STUDY_MD
from selfdistill.study.results import BETTER, NO_DIFFERENCE, NOT_TESTABLE, WORSE

__all__ = ["gain_rows", "level_rows", "map_rows", "markdown_page", "member_rows",
           "pivot_rows", "study_html", "write_study_pages"]

_SHORT = {BETTER: "better", WORSE: "worse", NO_DIFFERENCE: "n.s.", NOT_TESTABLE: "n/t"}
_ROLES = (("hard_label", "vs hard-label model"), ("best_alternative",
                                                  "vs best simple alternative"))
_METRICS = ("accuracy", "accuracy_true", "nll", "sharpe")


def _num(value: float | None, digits: int = 4, *, signed: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _diff(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    if row["reason"]:
        return f"{_num(row['mean_diff'])} (n/t: {row['reason']})"
    return f"{_num(row['mean_diff'])} [{_num(row['ci_low'])}, {_num(row['ci_high'])}]"


def _verdict(row: dict[str, Any] | None) -> str:
    """'better p=0.003 / study n.s. p=0.08': the run's verdict, then the study-wide one."""
    if row is None:
        return ""
    run = f"{_SHORT.get(row['verdict'] or '', '?')}"
    if row.get("p_adjusted") is not None:
        run += f" p={row['p_adjusted']:.2g}"
    study = row.get("verdict_study")
    if study is None:
        return run
    p = row.get("p_study")
    return f"{run} / study {_SHORT.get(study, '?')}" + (f" p={p:.2g}" if p is not None else "")


def _level(value: dict[str, Any] | None, digits: int = 3) -> str:
    if not value:
        return "-"
    if value.get("ci_low") is None or value.get("ci_high") is None:
        return _num(value["mean"], digits, signed=False)
    mean, low, high = (_num(value[k], digits, signed=False) for k in ("mean", "ci_low",
                                                                        "ci_high"))
    return f"{mean} [{low}, {high}]"


def _setting(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------ tables


def map_rows(payload: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per method: points better / worse / n.s. / not testable, per reference."""
    header = ["method"] + [f"{title}: better / worse / n.s. / n/t" for _, title in _ROLES]
    rows = []
    for method, roles in payload["map"].items():
        cells = [method]
        for role, _ in _ROLES:
            r = roles.get(role)
            cells.append("-" if r is None else " / ".join(str(r[v]) for v in
                                                        (BETTER, WORSE, NO_DIFFERENCE,
                                                         NOT_TESTABLE)))
        rows.append(cells)
    return header, rows


def pivot_rows(payload: dict[str, Any], role: str, metric: str | None = None
               ) -> tuple[list[str], list[list[str]]]:
    """One row per point, one column per method: the gain, marked where significant.

    ``+0.012 (+)``: better after the study-wide adjustment; ``(-)``: worse; no mark: not
    significant; ``n/t``: not testable.
    """
    metric = metric or payload["primary_metric"]
    axes = payload["axes"]
    methods = list(dict.fromkeys(r["method"] for p in payload["points"]
                                 for r in p["comparisons"] if r["role"] == role))
    header = ["point", *[a.rsplit(".", 1)[-1] for a in axes], *methods]
    rows = []
    for p in payload["points"]:
        cells = []
        for method in methods:
            row = _row_for(p, method, role, metric)
            if row is None or row["mean_diff"] is None:
                cells.append("-")
                continue
            study = row.get("verdict_study") if metric == payload["primary_metric"] \
                else row.get("verdict")
            mark = {BETTER: " (+)", WORSE: " (-)"}.get(study or "", "")
            cells.append("n/t" if row["reason"] else f"{row['mean_diff']:+.3f}{mark}")
        rows.append([p["name"], *[_setting(p["settings"].get(a)) for a in axes], *cells])
    return header, rows


def _row_for(point: dict[str, Any], method: str, role: str, metric: str
             ) -> dict[str, Any] | None:
    return next((r for r in point["comparisons"] if r["method"] == method
                 and r["role"] == role and r["metric"] == metric), None)


def gain_rows(payload: dict[str, Any], metric: str | None = None
              ) -> tuple[list[str], list[list[str]]]:
    """One row per (point, method): gain over baseline and over the best alternative."""
    metric = metric or payload["primary_metric"]
    axes = payload["axes"]
    header = ["point", *[a.rsplit(".", 1)[-1] for a in axes], "method",
              f"Δ {metric} vs baseline [95%]", "verdict", "best alternative",
              f"Δ {metric} vs it [95%]", "verdict"]
    rows = []
    for p in payload["points"]:
        alt = p["findings"].get("best_alternative") or "-"
        for method in dict.fromkeys(r["method"] for r in p["comparisons"]):
            hard = _row_for(p, method, "hard_label", metric)
            best = _row_for(p, method, "best_alternative", metric)
            itself = method == alt
            rows.append([p["name"], *[_setting(p["settings"].get(a)) for a in axes], method,
                         _diff(hard), _verdict(hard), alt, "(itself)" if itself else _diff(best),
                         _verdict(best)])
    return header, rows


def level_rows(payload: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Test metrics of each method's headline output per point (mean [95% over folds])."""
    shown = [m for m in _METRICS if any(m in v for p in payload["points"]
                                        for v in p["metrics"].values())]
    header = ["point", "output", *[f"test {m}" for m in shown]]
    rows = []
    for p in payload["points"]:
        for output, values in p["metrics"].items():
            rows.append([p["name"], output, *[_level(values.get(m)) for m in shown]])
    return header, rows


def member_rows(payload: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Each member of methods with ordered members: its test value and gain over the first."""
    primary = payload["primary_metric"]
    header = ["point", "method", "member", f"test {primary}", "truth acc",
              f"Δ {primary} vs first [95%]", "verdict"]
    rows = []
    for p in payload["points"]:
        for method, members in p["members"].items():
            for m in members:
                rows.append([p["name"], method, m["member"], _level(m["metrics"].get(primary)),
                             _level(m["metrics"].get("accuracy_true")), _diff(m["vs_first"]),
                             _verdict(m["vs_first"])])
    return header, rows


def _points_rows(payload: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["point", "dataset", "variant", *payload["axes"], "bars", "folds x seeds",
              "minutes", "resumed"]
    rows = []
    for p in payload["points"]:
        ex = p["experiment"]
        cells = f"{ex.get('folds')} x {len(ex.get('seeds') or [])}"
        minutes = "-" if p["seconds"] is None else f"{p['seconds'] / 60:.1f}"
        rows.append([p["name"], p["dataset"], p["variant"] or "-",
                     *[_setting(p["settings"].get(a)) for a in payload["axes"]],
                     str(p["data"].get("bars", "-")), cells, minutes,
                     "yes" if p["resumed"] else "no"])
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def clean(cell: str) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(clean(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------ pages


def _intro(payload: dict[str, Any]) -> list[str]:
    machine = payload.get("machine") or {}
    family = payload["study_family"]
    compute = sum(p["seconds"] or 0.0 for p in payload["points"])
    state = "complete" if payload["complete"] else \
        f"INCOMPLETE: {payload['points_done']} of {payload['points_total']} points"
    return [
        f"Written {payload['created_at']} by selfdistill {payload['selfdistill_version']} "
        f"on {machine.get('cpus', '?')} CPUs ({machine.get('platform', '?')}); "
        f"{payload['points_total']} points, {state}; the points' runs took "
        f"{compute / 60:.1f} minutes.",
        f"Command: `{payload['command'] or 'selfdistill study'}`.",
        f"Primary metric: {payload['primary_metric']}. Each point is an ordinary run "
        "(its run directory under points/); its gains are per-bar paired tests on its test "
        "rows with a 95% interval, p adjusted over the run's comparisons (verdict: better, "
        "worse, n.s. = no significant difference, n/t = not testable). 'study' verdicts adjust "
        f"the {family['tests']} key comparisons on {family['metric']} of all points together "
        "(Benjamini-Hochberg), so a map of many points does not find wins by chance.",
    ]


def markdown_page(payload: dict[str, Any]) -> str:
    """study.md: the map, gains, metrics, members and findings as Markdown tables."""
    lines = [f"# selfdistill study: {payload['name']}", "", *_intro(payload), "",
             "## Where each method helps (study-wide verdicts, points)", "",
             markdown_table(*map_rows(payload)), ""]
    primary = payload["primary_metric"]
    for role, title in _ROLES:
        header, rows = pivot_rows(payload, role)
        if rows and len(header) > 1 + len(payload["axes"]):
            lines += [f"### Gain in test {primary} {title} ((+) / (-): significant after "
                      "the study-wide adjustment)", "", markdown_table(header, rows), ""]
    header, rows = pivot_rows(payload, "hard_label", "accuracy_true")
    if any(cell != "-" for row in rows for cell in row[1 + len(payload["axes"]):]):
        lines += ["### Gain in test accuracy against the true regimes vs hard-label model "
                  "((+) / (-): significant in the run)", "", markdown_table(header, rows), ""]
    lines += ["## Gains per point", "", markdown_table(*gain_rows(payload)), ""]
    if any(r["metric"] == "accuracy_true" for p in payload["points"] for r in p["comparisons"]):
        lines += ["### Against the true regimes (synthetic market)", "",
                  markdown_table(*gain_rows(payload, "accuracy_true")), ""]
    lines += ["## Test metrics per point", "", markdown_table(*level_rows(payload)), ""]
    header, rows = member_rows(payload)
    if rows:
        lines += ["## Members (generations, snapshots, exits)", "",
                  markdown_table(header, rows), ""]
    lines += ["## Findings per point", ""]
    for p in payload["points"]:
        answers = "; ".join(f"{q['id']}: {q['answer']}" for q in p["findings"]["questions"])
        lines.append(f"- **{p['name']}**: {answers}")
    lines += ["", "## Points", "", markdown_table(*_points_rows(payload)), ""]
    return "\n".join(lines)


def _figure_html(fig: Any, alt: str) -> str:
    return "" if fig is None else f'<img src="{to_data_uri(fig)}" alt="{html.escape(alt)}">'


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    return table(header, rows, lead=1) if rows else note("(none)")


def _html_sections(payload: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(id, title, HTML) of each section of study.html, in order."""
    pivots = "".join(f"<h3>Gain in test {html.escape(payload['primary_metric'])} "
                     f"{html.escape(title)}</h3>" + _html_table(*pivot_rows(payload, role))
                     for role, title in _ROLES)
    header, rows = pivot_rows(payload, "hard_label", "accuracy_true")
    if any(cell != "-" for row in rows for cell in row[1 + len(payload["axes"]):]):
        pivots += ("<h3>Gain in test accuracy against the true regimes vs hard-label model "
                   "((+) / (-): significant in the run)</h3>" + _html_table(header, rows))
    sections = [("map", "Where each method helps",
                 _html_table(*map_rows(payload)) + note(
                     "Points where the method is better / worse / not significantly "
                     "different / not testable, after the study-wide adjustment. In the "
                     "tables below, (+) and (-) mark those verdicts.") + pivots)]
    gains = "".join(_figure_html(gains_figure(payload, role), f"gain {title}")
                    for role, title in _ROLES)
    sections.append(("gains", "Gains per point", gains + _html_table(*gain_rows(payload))))
    levels = _figure_html(levels_figure(payload, payload["primary_metric"]), "test metric")
    if any("accuracy_true" in v for p in payload["points"] for v in p["metrics"].values()):
        levels += _figure_html(levels_figure(payload, "accuracy_true"), "truth accuracy")
    sections.append(("metrics", "Test metrics per point",
                     levels + _html_table(*level_rows(payload))))
    header, rows = member_rows(payload)
    if rows:
        sections.append(("members", "Members (generations, snapshots, exits)",
                         _figure_html(members_figure(payload), "members")
                         + _html_table(header, rows)))
    return [*sections, ("findings", "Findings per point", _findings_html(payload)),
            ("points", "Points", _html_table(*_points_rows(payload)))]


def _findings_html(payload: dict[str, Any]) -> str:
    return "".join(
        f"<h3>{html.escape(p['name'])}</h3><ol class=\"findings\">" + "".join(
            f"<li><span class=\"q\">{html.escape(q['question'])}</span> "
            f"<b>{html.escape(q['answer'].upper())}</b>: {html.escape(q['why'])}</li>"
            for q in p["findings"]["questions"]) + "</ol>" for p in payload["points"])


def study_html(payload: dict[str, Any]) -> str:
    """study.html: one self-contained page."""
    name = html.escape(str(payload["name"]))
    intro = "".join(f"<p class=\"note\">{html.escape(t.replace('`', ''))}</p>"
                    for t in _intro(payload))
    sections = _html_sections(payload)
    nav = "".join(f'<a href="#{sid}">{html.escape(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>'
                   for sid, title, content in sections)
    banner = "" if payload["complete"] else (
        '<p class="banner">This study is INCOMPLETE: run it again with --resume.</p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>selfdistill study: {name}</title><style>{CSS}</style></head><body>"
            f"<header><h1>selfdistill study: {name}</h1>{intro}</header>{banner}"
            f"<nav>{nav}</nav>{body}<footer>Written by selfdistill "
            f"{html.escape(str(payload['selfdistill_version']))} from study.json alone."
            "</footer></body></html>\n")


def write_study_pages(out: Path, payload: dict[str, Any]) -> tuple[Path, Path]:
    """Write study.md and study.html into ``out``."""
    md, page = out / STUDY_MD, out / STUDY_HTML
    atomic_write_text(md, markdown_page(payload))
    atomic_write_text(page, study_html(payload))
    return md, page

"""A self-contained HTML report (and a Markdown summary) from a run directory.

:func:`write_report` reads only the run directory (config.yaml, metrics.json,
predictions.parquet, backtest.parquet, prices.parquet: only the rows and columns it
draws, output by output) and writes
``report.html`` — one file, CSS inline, figures embedded as base64 PNG (drawn
with matplotlib's Agg canvas), no script, no external URL — and
``summary.md`` with the same headline table. timings.json gives the run's
``created_at``; an ``INCOMPLETE`` marker puts a warning banner on the page.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import yaml

from selfdistill._version import __version__
from selfdistill.atomic import atomic_write_text
from selfdistill.errors import DataError
from selfdistill.report.market import identity_strip
from selfdistill.report.runfiles import RunFiles
from selfdistill.report.sections import RunData, build_sections
from selfdistill.report.style import CSS
from selfdistill.report.tables import (
    comparison_rows,
    findings_markdown,
    headline_rows,
    markdown_table,
)
from selfdistill.report.tuning import load_tune
from selfdistill.rundir.layout import CONFIG_FILE, TIMINGS_FILE, damaged
from selfdistill.rundir.lifecycle import incomplete_reason
from selfdistill.rundir.read import read_metrics

__all__ = ["load_run", "render_html", "render_markdown", "write_report"]

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.md"


def load_run(run_dir: str | Path) -> RunData:
    """Read what the report needs from a run directory (nothing else): the small files
    now, the Parquet files' footers now (a damaged file fails here) and their rows when a
    section draws them (:class:`~selfdistill.report.runfiles.RunFiles`)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(f"run directory '{path}' does not exist")
    config_path = path / CONFIG_FILE
    config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    try:
        config = yaml.safe_load(config_text) or {}
    except yaml.YAMLError as exc:
        raise damaged(config_path, exc) from exc  # the message keeps only its first line
    metrics = read_metrics(path)
    files = RunFiles(path)
    files.check()  # runs from before prices.parquet existed report without its sections
    return RunData(metrics=metrics, config=config, config_text=config_text, files=files,
                   created_at=_created_at(path), incomplete=incomplete_reason(path),
                   tune=load_tune(path))


def _created_at(path: Path) -> str | None:
    """timings.json's ``created_at`` (None for runs without it)."""
    timings = path / TIMINGS_FILE
    if not timings.is_file():
        return None
    try:
        value = json.loads(timings.read_text(encoding="utf-8")).get("created_at")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise damaged(timings, exc) from exc
    return None if value is None else str(value)


def render_html(run: RunData) -> str:
    """The whole report page: title and market, then the findings, then the evidence."""
    name = html.escape(str(run.metrics.get("name", "run")))
    sections = build_sections(run)
    nav = "".join(f'<a href="#{sid}">{html.escape(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>'
                   for sid, title, content in sections)
    banner = ("" if run.incomplete is None else
              f'<p class="banner">This run is marked INCOMPLETE ({html.escape(run.incomplete)}'
              "): its results are partial; run the experiment again for complete ones.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>selfdistill report: {name}</title><style>{CSS}</style></head><body>"
            f"<header><h1>selfdistill report: {name}</h1>{identity_strip(run)}</header>"
            f"{banner}<nav>{nav}</nav>{body}"
            f"<footer>Written by selfdistill {html.escape(__version__)} from the run "
            "directory alone; every choice was made on validation rows.</footer>"
            "</body></html>\n")


def render_markdown(run: RunData) -> str:
    """summary.md: the findings and the headline table."""
    header, rows = headline_rows(run.metrics)
    lines = [f"# selfdistill summary: {run.metrics.get('name', 'run')}", "", "## Findings", ""]
    lines += findings_markdown(run.metrics)
    lines += ["", "## Results", "",
              "Test rows: mean [95% interval: Student t over folds, seeds averaged per fold; "
              "none with one fold]. Verdicts from per-bar paired tests on the test rows, "
              "p-values adjusted as one family: + better, - worse, = no significant "
              "difference, ? not testable.", "",
              markdown_table(header, rows), "", "## Comparisons", ""]
    c_header, c_rows = comparison_rows(run.metrics)
    lines += [markdown_table(c_header, c_rows) if c_rows else "(no paired comparisons)", ""]
    return "\n".join(lines)


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` and ``summary.md`` into ``run_dir``; return the HTML path."""
    run = load_run(run_dir)
    out = Path(run_dir) / REPORT_FILE
    atomic_write_text(out, render_html(run))
    atomic_write_text(Path(run_dir) / SUMMARY_FILE, render_markdown(run))
    log.info("report written to %s", out)
    return out

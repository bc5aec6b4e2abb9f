"""A self-contained HTML report (and a Markdown summary) from a run directory.

:func:`write_report` reads only the run directory (config.yaml, metrics.json,
predictions.parquet, backtest.parquet, prices.parquet) and writes
``report.html`` — one file, CSS inline, figures embedded as base64 PNG (drawn
with matplotlib's Agg canvas), no script, no external URL — and
``summary.md`` with the same headline table.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import yaml

from selfdistill._version import __version__
from selfdistill.atomic import atomic_write_text
from selfdistill.errors import DataError
from selfdistill.report.sections import RunData, build_sections
from selfdistill.report.tables import (
    comparison_rows,
    findings_markdown,
    headline_rows,
    markdown_table,
)
from selfdistill.rundir.layout import CONFIG_FILE, PRICES_FILE, damaged
from selfdistill.rundir.read import read_curves, read_metrics, read_predictions, read_prices

__all__ = ["load_run", "render_html", "render_markdown", "write_report"]

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.md"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .82em; margin: .6em 0; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; } .note { color: #555; font-size: .88em; }
.finding { font-weight: 600; margin: .2em 0; } nav a { margin-right: 1em; }
pre { background: #f6f6f6; padding: .8em; font-size: .8em; overflow-x: auto; }
"""


def load_run(run_dir: str | Path) -> RunData:
    """Read what the report needs from a run directory (nothing else)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(f"run directory '{path}' does not exist")
    config_path = path / CONFIG_FILE
    config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    # runs from before prices.parquet existed still report (without the price sections)
    prices = read_prices(path) if (path / PRICES_FILE).is_file() else None
    try:
        config = yaml.safe_load(config_text) or {}
    except yaml.YAMLError as exc:
        raise damaged(config_path, exc) from exc  # the message keeps only its first line
    return RunData(metrics=read_metrics(path), config=config,
                   config_text=config_text, predictions=read_predictions(path),
                   curves=read_curves(path), prices=prices)


def render_html(run: RunData) -> str:
    """The whole report page."""
    name = html.escape(str(run.metrics.get("name", "run")))
    sections = build_sections(run)
    nav = "".join(f'<a href="#{sid}">{html.escape(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>'
                   for sid, title, content in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>selfdistill report: {name}</title><style>{_CSS}</style></head><body>"
            f"<h1>selfdistill report: {name}</h1>"
            f'<p class="note">selfdistill {html.escape(__version__)}</p>'
            f"<nav>{nav}</nav>{body}</body></html>\n")


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

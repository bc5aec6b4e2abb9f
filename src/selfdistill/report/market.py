"""Which market a run covers and what its data looked like: the report's header and its
"Market and data" section (source, symbol or file, interval, first / last bar, rows per
split and fold, class balance per split, when the run was made, by which version).

Everything comes from metrics.json's ``data`` and ``experiment.fold_bounds`` and from
timings.json's ``created_at``; runs written before those existed show what they have.
"""

from __future__ import annotations

import html
from typing import Any

from selfdistill._version import __version__
from selfdistill.report.markup import fmt, note, pct, table
from selfdistill.report.rundata import RunData

__all__ = ["data_section", "identity", "identity_strip", "interval_words"]

_SPLITS = (("train", "train"), ("val", "validation"), ("test", "test"))
_UNITS = {"D": "1 day", "W": "1 week", "M": "1 month"}


def interval_words(interval: Any) -> str:
    """``"60"`` -> ``"60 (1 hour)"``, ``"D"`` -> ``"D (1 day)"``; unknown spellings as is."""
    text = str(interval)
    if text in _UNITS:
        return f"{text} ({_UNITS[text]})"
    if not text.isdigit():
        return text
    minutes = int(text)
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{text} ({hours} hour{'s' if hours > 1 else ''})"
    return f"{text} ({minutes} minute{'s' if minutes > 1 else ''})"


def _time(value: Any) -> str:
    """``2022-01-01 00:00:00+00:00`` -> ``2022-01-01 00:00 UTC``."""
    text = str(value or "-").replace("T", " ")
    if text.endswith("+00:00"):
        text = text.removesuffix("+00:00")
        text = text[:16] + " UTC"
    return text


def identity(run: RunData) -> dict[str, str]:
    """The market and the run, as (label -> value) in display order."""
    data = run.metrics.get("data") or {}
    cfg_data = run.config.get("data") or {}
    source = str(data.get("source") or cfg_data.get("source") or "-")
    if data.get("category"):
        source += f" ({data['category']})"
    market = data.get("symbol") or data.get("path") or cfg_data.get("path") or "-"
    rows = run.metrics.get("rows") or {}
    out = {
        "source": source,
        "symbol / file": str(market),
        "interval": interval_words(data.get("interval", run.metrics.get("interval", "-"))),
        "first bar": _time(data.get("first_bar")),
        "last bar": _time(data.get("last_bar")),
        "bars": fmt(data.get("bars", rows.get("bars"))),
        "labelled rows": fmt(data.get("labelled_rows", rows.get("labelled"))),
        "created": _time(run.created_at) if run.created_at else "-",
        "made with": f"selfdistill {run.metrics.get('selfdistill_version', '?')}",
        "report by": f"selfdistill {__version__}",
    }
    return out


def identity_strip(run: RunData) -> str:
    """One line under the title: symbol, interval, period, bars, when, which version."""
    ident = identity(run)
    market, source = ident["symbol / file"], ident["source"]
    parts = [f"<b>{html.escape(market)}</b>" + ("" if source == market else
                                                f" ({html.escape(source)})"),
             f"{html.escape(ident['interval'])} bars",
             f"{html.escape(ident['first bar'])} → {html.escape(ident['last bar'])}",
             f"{html.escape(ident['bars'])} bars", f"created {html.escape(ident['created'])}",
             html.escape(ident["made with"])]
    return f'<p class="identity">{" · ".join(parts)}</p>'


def _fold_rows(run: RunData) -> list[list[str]]:
    rows = []
    for bounds in (run.metrics.get("experiment") or {}).get("fold_bounds", []):
        row = [str(bounds.get("fold", "-"))]
        for split, _ in _SPLITS:
            b = bounds.get(split) or {}
            span = f"{_time(b.get('first'))} → {_time(b.get('last'))}".replace(" UTC", "")
            row += [fmt(b.get("rows")), span]
        rows.append(row)
    return rows


def _balance_rows(run: RunData) -> list[list[str]]:
    balance = (run.metrics.get("data") or {}).get("class_balance") or {}
    return [[title, *(pct(balance[split].get(c)) for c in run.class_names)]
            for split, title in _SPLITS if split in balance]


def data_section(run: RunData) -> str:
    """Identity table, rows and period of every split in every fold, class balance."""
    ident = identity(run)
    exp = run.metrics.get("experiment") or {}
    scheme = (f"{exp.get('scheme', '-')} ({exp.get('window', '-')}), {exp.get('folds', '-')} "
              f"fold(s) x seeds {exp.get('seeds', '-')}")
    left = "<h3>Market</h3>" + table(
        [], [[k, v] for k, v in ident.items()] + [["evaluation", scheme]],
        css="grid kv", lead=2)
    right = ""
    balance = _balance_rows(run)
    if balance:
        right = ("<h3>Class balance per split</h3>"
                 + table(["split", *run.class_names], balance)
                 + note("Share of the labelled rows of each split, pooled over folds."))
    out = f'<div class="cols"><div>{left}</div><div>{right}</div></div>'
    folds = _fold_rows(run)
    if folds:
        header = ["fold"] + [h for _, t in _SPLITS for h in (f"{t} rows", f"{t} period (UTC)")]
        out += "<h3>Rows per split and fold</h3>" + table(header, folds, lead=1)
        out += note("Chronological splits, purged by the label horizon; every model and "
                    "every choice (generation, temperature, gate threshold) saw the training "
                    "and validation rows only.")
    return out

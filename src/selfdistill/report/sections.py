"""One function per report section: run data in, an HTML fragment out.

Every section has a stable ``id`` (see :data:`SECTION_IDS`) so tests and links can find
it. The findings come first. Which outputs get a figure is decided on validation
numbers only: the *featured* output is the headline output with the lowest mean
validation NLL; every self-distillation method is shown through its selected member
(``<method>_selected``: the member each cell chose on validation), and every panel
says which member that was.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import yaml

from selfdistill.evaluation.aggregate import ORDINAL_KEYS, member_keys
from selfdistill.report import figures as fg
from selfdistill.report.calibration import calibration_section, panel_outputs, subtitle
from selfdistill.report.decimate import MAX_LINE_POINTS, ClassSlices, LineSlices
from selfdistill.report.disagreement import uncertainty_section
from selfdistill.report.folds import folds_section
from selfdistill.report.market import data_section
from selfdistill.report.markup import Raw, fmt, img, note, pct, table
from selfdistill.report.outputs import (
    TRADING_BASELINES,
    Output,
    featured_output,
    headline_outputs,
    self_distillation_outputs,
)
from selfdistill.report.rundata import RunData
from selfdistill.report.tables import comparison_rows, findings_html, headline_rows, html_table
from selfdistill.report.trading import COST_MULTIPLES, equity_curve, summarise_trading
from selfdistill.report.tuning import tuning_section

__all__ = ["SECTION_IDS", "RunData", "build_sections", "panel_outputs"]

#: (id, title) of every section, in page order.
SECTION_IDS = (
    ("findings", "Findings"),
    ("data", "Market and data"),
    ("results", "Results per method and generation"),
    ("folds", "Results per fold"),
    ("trading", "Trading after costs"),
    ("equity", "Equity and drawdown vs baselines"),
    ("generations", "Metrics vs generation"),
    ("calibration", "Reliability before and after temperature scaling"),
    ("confusion", "Confusion matrices"),
    ("regimes", "Price and predicted regimes"),
    ("uncertainty", "Does disagreement flag errors?"),
    ("config", "Configuration"),
)
_WITH_INTERVAL = re.compile(r"^(\S+) (\[\S+, \S+\])$")


def _two_lines(cell: str) -> str:
    """``0.48 [0.46, 0.50]`` -> the mean over its interval, in smaller grey type."""
    found = _WITH_INTERVAL.match(cell)
    if found is None:
        return cell
    return Raw(f"{html.escape(found[1])}<br><span class=\"ci\">{html.escape(found[2])}</span>")


# ------------------------------------------------------------------ sections


def findings_section(run: RunData) -> str:
    return findings_html(run.metrics)


def results_section(run: RunData) -> str:
    header, rows = headline_rows(run.metrics)
    out = note("Test rows: mean [95% interval: Student t over folds, seeds averaged per "
               "fold; none with one fold]. (T) = after temperature scaling fitted on "
               "validation. Verdicts from per-bar paired tests on the test rows, p-values "
               "adjusted as one family: + better, - worse, = no significant difference, "
               "? not testable (lower is better for NLL and Brier).")
    out += table(header, [[_two_lines(c) for c in row] for row in rows], lead=3,
                 css="grid results")
    c_header, c_rows = comparison_rows(run.metrics)
    if c_rows:
        out += ("<details><summary>every paired comparison</summary>"
                f"{html_table(c_header, c_rows)}</details>")
    return out


_BACKTEST_OFF = "The backtest is off (backtest.enabled: false)."
_TRADES = ("open_time", "position", "asset_return")


def trading_section(run: RunData) -> str:
    costs = run.costs
    if not run.files.has_curves or costs is None:
        return note(_BACKTEST_OFF)
    header = ["output", "trades", "avg. holding (bars)", "long", "short", "flat", "exposure",
              *(f"Sharpe {k:g}x costs" for k in COST_MULTIPLES)]
    rows = []
    for output in headline_outputs(run.index, gated=True):
        s = summarise_trading(run.output_rows(output, _TRADES, curves=True), costs)
        if s is None:
            continue
        rows.append([run.index.label(output), f"{s.trades:,.1f}", fmt(s.holding_bars, 1),
                     pct(s.long), pct(s.short), pct(s.flat), pct(s.exposure),
                     *(fmt(s.sharpe[k], 2) for k in COST_MULTIPLES)])
    cost = costs.fee_bps + costs.slippage_bps
    return (table(header, rows)
            + note(f"Recomputed from backtest.parquet, every test block starting flat. "
                   f"Trades: positions opened (a reversal is one trade), summed over folds, "
                   f"mean over seeds. Costs per side: {costs.fee_bps:g} bps fee + "
                   f"{costs.slippage_bps:g} bps slippage = {cost:g} bps on every position "
                   f"change; 1x is the run's own Sharpe ratio (annualised with "
                   f"{costs.periods_per_year:g} periods a year; mean over seeds per fold, "
                   f"then over folds). '+gate': flat where generation disagreement is above "
                   f"the validation threshold."))


def equity_section(run: RunData) -> str:
    seed = run.first_seed
    if not run.files.has_curves or seed is None:
        return note(_BACKTEST_OFF)
    best = run.findings.get("best_alternative")
    models = [*self_distillation_outputs(run.index, run.findings.get("methods")),
              featured_output(run.index), ("baseline", "-"), *([(best, "-")] if best else [])]
    shown = {}
    for output in [*dict.fromkeys(models), *((b, "-") for b in TRADING_BASELINES)]:
        # one output's rows at a time: only its reduced curve is kept
        frame = run.output_rows(output, ("open_time", "net"), curves=True, seed=seed)
        if len(frame):
            shown[run.index.label(output)] = equity_curve(frame["open_time"],
                                                          frame["net"].to_numpy())
    if not shown:
        return note("No backtest rows in backtest.parquet.")
    fig = fg.equity_figure(shown, baselines=TRADING_BASELINES)
    bars = max(c.log10_equity.points for c in shown.values())
    return (img(fg.to_data_uri(fig), "equity and drawdown")
            + note(f"Test blocks of every fold in time order, seed {seed}; each block starts "
                   "flat. Fills at the next bar's open; fees and slippage per side on every "
                   "position change. Selected outputs follow the member each fold chose on "
                   "validation; random: random timing with the baseline's turnover."
                   + _decimated(bars)))


def _decimated(bars: int) -> str:
    """What a long line's figure shows, for its caption (nothing when every bar is drawn)."""
    if bars <= MAX_LINE_POINTS:
        return ""
    return (f" Each line is drawn through at most {MAX_LINE_POINTS:,} of its {bars:,} points: the "
            "first, the last and the lowest and highest of every equal slice (computed "
            "from every bar, so peaks and troughs are exact).")


def _ordinal_series(run: RunData, metrics: tuple[str, ...]
                    ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    series: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rec in run.aggregates("test"):
        keys = member_keys(rec)
        name = next((k for k in ORDINAL_KEYS if type(keys.get(k)) is int), None)
        if name is None or "+gate" in rec["method"]:
            continue
        for metric in metrics:
            agg = rec.get(metric)
            if isinstance(agg, dict):
                series.setdefault(rec["method"], {}).setdefault(metric, []).append(
                    {"x": keys[name], **agg})
    for by_metric in series.values():
        for pts in by_metric.values():
            pts.sort(key=lambda p: p["x"])
    return series


def generations_section(run: RunData) -> str:
    metrics = tuple(m for m in ("accuracy", "nll", "ece", "sharpe", "accuracy_true")
                    if any(m in r for r in run.aggregates("test")))
    series = _ordinal_series(run, metrics)
    if not series:
        return note("No method with generations or snapshots in this run.")
    best = run.findings.get("best_alternative") or "lightgbm"
    refs = {r["method"]: {m: r[m]["mean"] for m in metrics if isinstance(r.get(m), dict)}
            for r in run.aggregates("test") if r["method"] in ("baseline", best)}
    fig = fg.generations_figure(series, refs, metrics)
    return (img(fg.to_data_uri(fig), "metrics vs generation")
            + note(f"Points: mean over folds (seeds averaged per fold) on test rows; bars: "
                   f"95% interval over folds as it is (none with one fold); dashed: the "
                   f"hard-label baseline and {best}."))


def _confusion_table(title: str, subtitle: str, cm: np.ndarray, classes: list[str]) -> str:
    """A row-normalised confusion matrix as a shaded HTML table (rows: true regime)."""
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in classes)
    body = ""
    for i, name in enumerate(classes):
        cells = "".join(
            f'<td style="background: rgba(31, 78, 140, {0.08 + 0.8 * v:.2f}); '
            f'color: {"#fff" if v > 0.55 else "inherit"}">{v:.2f}<br>'
            f"<small>{int(cm[i, j]):,}</small></td>" for j, v in enumerate(norm[i]))
        body += f"<tr><th>{html.escape(name)}</th>{cells}</tr>"
    caption = html.escape(title) + (f"<br><small>{html.escape(subtitle)}</small>"
                                    if subtitle else "")
    return (f'<table class="confusion"><caption>{caption}</caption><thead><tr>'
            f'<th class="corner">true ↓ predicted →</th>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def confusion_section(run: RunData) -> str:
    tables = []
    for output in panel_outputs(run):
        cells = [np.asarray(r["confusion_matrix"], dtype=np.float64)
                 for r in run.index.cells.get(("test", *output), []) if "confusion_matrix" in r]
        if cells:
            name = output[0] if output[1] == "-" else " ".join(output)
            tables.append(_confusion_table(name, subtitle(run, output), np.sum(cells, axis=0),
                                           run.class_names))
    if not tables:
        return note("No confusion matrices in metrics.json.")
    return (f'<div class="cols">{"".join(f"<div>{t}</div>" for t in tables)}</div>'
            + note("Summed over every fold x seed cell; shares normalised per row (the true "
                   "regime), counts underneath."))


def _test_period(run: RunData, output: Output, seed: int) -> tuple[int, int] | None:
    """First and last test bar (int64 ns) of ``output`` in ``seed``; None without rows."""
    ends: list[int] = []
    for chunk in run.prediction_chunks(output, ("open_time",), split="test", seed=seed):
        t = chunk["open_time"].to_numpy(dtype="datetime64[ns]").view(np.int64)
        ends += [int(t.min()), int(t.max())] if len(t) else []
    return (min(ends), max(ends)) if ends else None


def regimes_section(run: RunData) -> str:
    if not run.files.has_prices:
        return note("prices.parquet is missing from the run directory.")
    output, seed = featured_output(run.index), run.first_seed
    period = None if seed is None else _test_period(run, output, seed)
    if seed is None or period is None:
        return note(f"No test predictions of {output[0]} in predictions.parquet.")
    # read chunk by chunk, reduced to time slices: neither series is ever held whole
    predicted = ClassSlices(*period, classes=len(run.class_names))
    for chunk in run.prediction_chunks(output, ("open_time", "pred"), split="test", seed=seed):
        predicted.add(chunk["open_time"].to_numpy(dtype="datetime64[ns]"),
                      chunk["pred"].to_numpy())
    close, truth = LineSlices(*period), ClassSlices(*period, classes=len(run.class_names))
    bounds = [pd.Timestamp(t, tz="UTC") for t in period]
    for chunk in run.files.price_chunks(("open_time", "close", "true_regime"),
                                        [("open_time", ">=", bounds[0]),
                                         ("open_time", "<=", bounds[1])]):
        times = chunk["open_time"].to_numpy(dtype="datetime64[ns]")
        close.add(times, chunk["close"].to_numpy(dtype=np.float64))
        if "true_regime" in chunk:
            known = chunk["true_regime"].notna().to_numpy()
            truth.add(times[known], chunk["true_regime"].to_numpy()[known])
    title = f"{run.index.label(output)}, seed {seed}; lowest validation NLL"
    shadings = [("predicted regime: " + title, predicted.spans()),
                *([("true regime (synthetic market)", truth.spans())] if truth.rows else [])]
    fig = fg.regimes_figure(close.line(), shadings, run.class_names)
    out = img(fg.to_data_uri(fig), "price with regimes")
    if close.rows <= close.exact and predicted.rows <= predicted.exact:
        return out
    return out + note(
        f"{close.rows:,} bars: the close is drawn through its lowest and highest point in "
        f"each of {close.slices:,} equal time slices, and each of {predicted.slices:,} "
        "slices is shaded by its most frequent regime (computed from every bar).")


def config_section(run: RunData) -> str:
    cfg, exp = run.config, run.metrics.get("experiment", {})
    rows = [[name, yaml.safe_dump(cfg.get(name, {}), default_flow_style=True,
                                  width=10_000).strip()]
            for name in ("labels", "features", "model", "training", "backtest")
            if name in cfg]
    rows.insert(0, ["methods", ", ".join(cfg.get("methods", []))])
    rows.append(["evaluation", f"{exp.get('scheme')} ({exp.get('window')}), {exp.get('folds')}"
                               f" folds x seeds {exp.get('seeds')}"])
    return (table(["setting", "value"], rows, css="grid kv", lead=2)
            + "<details><summary>config.yaml</summary><pre>"
              f"{html.escape(run.config_text)}</pre></details>")


BUILDERS: dict[str, Callable[[RunData], str]] = {
    "findings": findings_section, "data": data_section, "results": results_section,
    "folds": folds_section, "trading": trading_section, "equity": equity_section,
    "generations": generations_section, "calibration": calibration_section,
    "confusion": confusion_section, "regimes": regimes_section,
    "uncertainty": uncertainty_section, "config": config_section,
}


def build_sections(run: RunData) -> list[tuple[str, str, str]]:
    """(id, title, HTML body) of every section, in page order."""
    sections = [(sid, title, BUILDERS[sid](run)) for sid, title in SECTION_IDS]
    if run.tune is not None:  # a search: right after the findings
        sections.insert(1, ("tuning", "Hyperparameter search", tuning_section(run.tune)))
    return sections

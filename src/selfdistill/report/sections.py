"""One function per report section: run data in, an HTML fragment out.

Every section has a stable ``id`` (see :data:`SECTION_IDS`) so tests and links
can find it. Which outputs get a figure is decided on validation numbers only:
the *featured* output is the one with the lowest mean validation NLL.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import yaml

from selfdistill.evaluation.aggregate import ORDINAL_KEYS, member_keys
from selfdistill.report import figures as fg
from selfdistill.report.tables import (
    BASELINE_ROWS,
    comparison_rows,
    findings,
    headline_rows,
    html_table,
)

__all__ = ["SECTION_IDS", "RunData", "build_sections", "featured_output"]

#: (id, title) of every section, in page order.
SECTION_IDS = (
    ("config", "Configuration"),
    ("results", "Results per method and generation"),
    ("generations", "Metrics vs generation"),
    ("calibration", "Reliability before and after temperature scaling"),
    ("confusion", "Confusion matrices"),
    ("regimes", "Price and predicted regimes"),
    ("equity", "Equity and drawdown vs baselines"),
    ("uncertainty", "Error rate vs disagreement"),
)
_MAX_PANELS = 6


@dataclass
class RunData:
    """Everything the report reads, all from the run directory."""

    metrics: dict[str, Any]
    config: dict[str, Any]
    config_text: str
    predictions: pd.DataFrame
    curves: pd.DataFrame | None
    prices: pd.DataFrame | None

    @property
    def class_names(self) -> list[str]:
        return list(self.metrics.get("class_names", ["bull", "bear", "sideways"]))

    def aggregates(self, split: str) -> list[dict[str, Any]]:
        return [r for r in self.metrics.get("records", [])
                if r.get("aggregate") and r["split"] == split]


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _mean(rec: dict[str, Any], metric: str) -> float | None:
    value = rec.get(metric)
    return value.get("mean") if isinstance(value, dict) else None


def featured_output(run: RunData) -> tuple[str, str]:
    """(method, member label) with the lowest mean validation NLL (never chosen on test)."""
    best, best_nll = ("baseline", "-"), float("inf")
    for rec in run.aggregates("val"):
        nll = _mean(rec, "nll")
        if rec["method"] in ("majority", *BASELINE_ROWS) or rec["method"].endswith("_selected"):
            continue
        if nll is not None and nll < best_nll:
            keys = member_keys(rec)
            label = ",".join(f"{k}={v}" for k, v in keys.items() if v is not None) or "-"
            best, best_nll = (rec["method"], label), nll
    return best


# ------------------------------------------------------------------ sections


def config_section(run: RunData) -> str:
    cfg, exp = run.config, run.metrics.get("experiment", {})
    data = cfg.get("data", {})
    rows = [
        ["data", f"{data.get('source')} {data.get('path') or ''}".strip()],
        ["bars / labelled rows", f"{run.metrics.get('rows', {}).get('bars', '-')} / "
                                 f"{run.metrics.get('rows', {}).get('labelled', '-')}"],
        ["interval", str(run.metrics.get("interval"))],
        ["labels", yaml.safe_dump(cfg.get("labels", {}), default_flow_style=True).strip()],
        ["model", yaml.safe_dump(cfg.get("model", {}), default_flow_style=True).strip()],
        ["methods", ", ".join(cfg.get("methods", []))],
        ["evaluation", f"{exp.get('scheme')} ({exp.get('window')}), {exp.get('folds')} folds x "
                       f"seeds {exp.get('seeds')}, bootstrap {exp.get('bootstrap')}"],
        ["backtest", yaml.safe_dump(cfg.get("backtest", {}), default_flow_style=True).strip()],
    ]
    folds = [[str(f["fold"]), *(f"{f[s]['first'][:16]} .. {f[s]['last'][:16]} ({f[s]['rows']})"
                               for s in ("train", "val", "test"))]
             for f in exp.get("fold_bounds", [])]
    out = html_table(["setting", "value"], rows)
    if folds:
        out += html_table(["fold", "train", "validation", "test"], folds)
    return out + ("<details><summary>config.yaml</summary><pre>"
                  f"{html.escape(run.config_text)}</pre></details>")


def results_section(run: RunData) -> str:
    header, rows = headline_rows(run.metrics)
    said = findings(run.metrics)
    out = "".join(f"<p class=\"finding\">{html.escape(s)}</p>" for s in said)
    out += _note("Test rows, mean over fold x seed cells with a 95% bootstrap interval. "
                 "(T) = after temperature scaling fitted on validation. Verdicts from a paired "
                 "bootstrap on the same cells: + better, - worse, = no significant "
                 "difference (lower is better for NLL and ECE).")
    out += html_table(header, rows)
    c_header, c_rows = comparison_rows(run.metrics)
    if c_rows:
        out += ("<details><summary>every paired comparison</summary>"
                f"{html_table(c_header, c_rows)}</details>")
    return out


def _ordinal_series(run: RunData, metrics: tuple[str, ...]
                    ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    series: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rec in run.aggregates("test"):
        keys = member_keys(rec)
        name = next((k for k in ORDINAL_KEYS if type(keys.get(k)) is int), None)
        if name is None:
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
        return _note("No method with generations or snapshots in this run.")
    refs = {r["method"]: {m: _mean(r, m) for m in metrics if _mean(r, m) is not None}
            for r in run.aggregates("test") if r["method"] in ("baseline", "lightgbm")}
    fig = fg.generations_figure(series, refs, metrics)  # type: ignore[arg-type]
    return (_img(fg.to_data_uri(fig), "metrics vs generation")
            + _note("Points: mean over cells on test rows; bars: 95% bootstrap interval; "
                    "dashed: the hard-label baseline and LightGBM."))


def _panel_outputs(run: RunData) -> list[tuple[str, str]]:
    """One output per method: its '-' row if any, else its last member (test rows)."""
    test = run.predictions[run.predictions["split"] == "test"]
    chosen: dict[str, str] = {}
    pairs = test[["method", "member"]].drop_duplicates().astype(str).itertuples(index=False)
    for method, member in pairs:
        if method == "majority":
            continue
        if member == "-" or chosen.get(method) != "-":
            chosen[method] = member  # the '-' row wins; otherwise the last member
    return list(chosen.items())[:_MAX_PANELS]


def calibration_section(run: RunData) -> str:
    test = run.predictions[run.predictions["split"] == "test"]
    if "temperature" not in test or test["temperature"].isna().all():
        return _note("Temperature scaling is off (evaluation.calibrate: false).")
    panels = {f"{m} {s}".replace(" -", ""): test[(test["method"] == m) & (test["member"] == s)]
              for m, s in _panel_outputs(run)}
    fig = fg.reliability_figure(panels, run.class_names)
    return (_img(fg.to_data_uri(fig), "reliability diagrams")
            + _note("Test rows of every cell pooled; the temperature of each cell was fitted "
                    "on that cell's validation rows only."))


def confusion_section(run: RunData) -> str:
    matrices: dict[str, np.ndarray] = {}
    wanted = {(m, s) for m, s in _panel_outputs(run)}
    for rec in run.metrics.get("records", []):
        if rec.get("aggregate") or rec["split"] != "test" or "confusion_matrix" not in rec:
            continue
        keys = member_keys(rec)
        label = ",".join(f"{k}={v}" for k, v in keys.items() if v is not None) or "-"
        if (rec["method"], label) in wanted:
            title = f"{rec['method']} {label}".replace(" -", "")
            cm = np.asarray(rec["confusion_matrix"], dtype=np.float64)
            matrices[title] = matrices.get(title, 0) + cm
    if not matrices:
        return _note("No confusion matrices in metrics.json.")
    fig = fg.confusion_figure(matrices, run.class_names)
    return (_img(fg.to_data_uri(fig), "confusion matrices")
            + _note("Summed over every fold x seed cell, rows normalised (true regime)."))


def regimes_section(run: RunData) -> str:
    if run.prices is None:
        return _note("prices.parquet is missing from the run directory.")
    method, member = featured_output(run)
    seed = min(run.predictions["seed"]) if "seed" in run.predictions else None
    test = run.predictions[(run.predictions["split"] == "test")
                           & (run.predictions["method"] == method)
                           & (run.predictions["member"] == member)]
    if seed is not None:
        test = test[test["seed"] == seed]
    title = f"{method} {member} (seed {seed}; lowest validation NLL)".replace(" -", "")
    fig = fg.regimes_figure(run.prices, test.sort_values("open_time"), run.class_names,
                            title=title)
    return _img(fg.to_data_uri(fig), "price with regimes")


def equity_section(run: RunData) -> str:
    if run.curves is None or run.curves.empty:
        return _note("The backtest is off (backtest.enabled: false).")
    method, member = featured_output(run)
    curves = run.curves[run.curves["seed"] == run.curves["seed"].min()]
    wanted = [(method, member), ("baseline", "-"), ("lightgbm", "-"),
              *((b, "-") for b in BASELINE_ROWS)]
    shown = {}
    for m, s in dict.fromkeys(wanted):
        frame = curves[(curves["method"] == m) & (curves["member"] == s)]
        if len(frame):
            shown[f"{m} {s}".replace(" -", "")] = frame.sort_values("open_time")
    fig = fg.equity_figure(shown)
    return (_img(fg.to_data_uri(fig), "equity and drawdown")
            + _note("Test blocks of every fold in time order, first seed; fills at the next "
                    "bar's open; fees and slippage per side on every position change."))


def uncertainty_section(run: RunData) -> str:
    measure = "mutual_information"
    errors: dict[str, list[list[float]]] = {}
    for u in run.metrics.get("uncertainty", []):
        if u["split"] == "test" and u["measure"] == measure:
            errors.setdefault(u["method"], []).append([q["error_rate"] for q in u["quantiles"]])
    if not errors:
        return _note("No method with several members, so no disagreement to measure.")
    curves = {m: np.mean(np.array(v, dtype=np.float64), axis=0).tolist()
              for m, v in errors.items()}
    fig = fg.uncertainty_figure(curves, measure)
    return (_img(fg.to_data_uri(fig), "error vs disagreement")
            + _note("Test rows ranked by the disagreement between a method's members; "
                    "a rising line means disagreement flags the errors."))


BUILDERS: dict[str, Callable[[RunData], str]] = {
    "config": config_section, "results": results_section,
    "generations": generations_section, "calibration": calibration_section,
    "confusion": confusion_section, "regimes": regimes_section,
    "equity": equity_section, "uncertainty": uncertainty_section,
}


def build_sections(run: RunData) -> list[tuple[str, str, str]]:
    """(id, title, HTML body) of every section, in page order."""
    return [(sid, title, BUILDERS[sid](run)) for sid, title in SECTION_IDS]

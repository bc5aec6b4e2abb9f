"""Does disagreement between members flag errors? The report's uncertainty section.

Two tables, both from metrics.json:

* **error rate by bin** (``uncertainty``): per method and measure, test rows binned by
  the measure's *value* in each (fold, seed) cell (ties never split, so a measure that
  is mostly 0 gets one bin for its zeros and fewer than five bins), pooled bin by bin
  over the cells with the same number of bins: rows, value range and error rate. A
  rising error rate means the measure ranks errors.
* **AUROC for predicting an error** (``error_flags``): each disagreement measure next to
  the trivial alternative ``1 - max probability``, each with its 95% interval as it is
  (not symmetric in general), its p-value against 0.5 (chance) and the paired difference
  from ``1 - max probability``; adjusted p-values from the findings family.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from selfdistill.report import figures as fg
from selfdistill.report.markup import Raw, fmt, img, interval, note, table
from selfdistill.report.rundata import RunData

__all__ = ["auroc_rows", "bin_rows", "uncertainty_section"]

_CONFIDENCE = "1 - max probability"


def _pooled_bins(entries: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """Bins pooled by position over cells with the same number of bins: rows, value
    range, row-weighted error rate."""
    out = []
    for b in range(len(entries[0]["quantiles"])):
        bins = [e["quantiles"][b] for e in entries]
        n = np.array([q["n"] for q in bins], dtype=np.float64)
        err = np.array([q["error_rate"] for q in bins], dtype=np.float64)
        out.append({"n": float(n.sum()),
                    "low": float(min(q["low"] for q in bins)),
                    "high": float(max(q["high"] for q in bins)),
                    "error_rate": float((n * err).sum() / n.sum()) if n.sum() else float("nan")})
    return out


def bin_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the error-by-bin table: one row per (method, measure, number of
    bins); cells whose ties left fewer bins are pooled apart, never by position with
    cells whose bins mean something else."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for entry in metrics.get("uncertainty", []):
        if entry.get("split") == "test" and entry.get("quantiles"):
            key = (entry["method"], entry["measure"], len(entry["quantiles"]))
            groups.setdefault(key, []).append(entry)
    width = max((k[2] for k in groups), default=0)
    header = ["method", "measure", "cells",
              *(f"bin {i + 1}{' (least)' if i == 0 else ''}" for i in range(width))]
    rows = []
    for (method, measure, n_bins), entries in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[0][2])):
        cells: list[str] = [
            Raw(f"{fmt(b['error_rate'])}<br><small>{int(b['n']):,} rows · "
                f"{fmt(b['low'], 4)}–{fmt(b['high'], 4)}</small>")
            for b in _pooled_bins(entries)]
        rows.append([method, measure, str(len(entries)), *cells, *([""] * (width - n_bins))])
    return header, rows


def _adjusted(metrics: dict[str, Any]) -> dict[tuple[str, str, str], float]:
    """(kind, method, measure) -> adjusted p of the findings family's AUROC tests."""
    out = {}
    for q in (metrics.get("findings") or {}).get("questions", []):
        for t in q.get("tests", []):
            if t.get("kind", "").startswith("auroc_") and t.get("p_adjusted") is not None:
                out[(t["kind"], t["method"], t["candidate"])] = float(t["p_adjusted"])
    return out


def _p(raw: float | None, adjusted: float | None) -> str:
    if raw is None:
        return "-"
    return f"{raw:.3g}" + (f" ({adjusted:.3g})" if adjusted is not None else "")


def _test_cell(t: dict[str, Any] | None) -> str:
    if not t:
        return "-"
    if t.get("reason"):
        return f"{fmt(t.get('estimate'))} (not testable: {t['reason']})"
    return interval(t.get("estimate"), t.get("ci_low"), t.get("ci_high"))


def auroc_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the AUROC table: each score of each method with its interval."""
    header = ["method", "score", "AUROC [95% CI]", "p vs 0.5 (adj.)",
              f"difference vs {_CONFIDENCE} [95% CI]", "p (adj.)", "bars x seeds (folds)",
              "test error rate"]
    adjusted = _adjusted(metrics)
    rows = []
    for entry in metrics.get("error_flags", []):
        method, scores = entry["method"], entry.get("scores", {})
        for name in sorted(scores, key=lambda s: (s == _CONFIDENCE, s)):
            auc, vs = scores[name].get("auroc"), scores[name].get("vs_reference")
            size = f"{auc.get('n_bars', '-')} x {auc.get('n_seeds', '-')} " \
                   f"({auc.get('n_folds', '-')})" if auc else "-"
            rows.append([method, name, _test_cell(auc),
                         _p((auc or {}).get("p_value"),
                            adjusted.get(("auroc_vs_chance", method, name))),
                         _test_cell(vs) if vs else "(the reference)",
                         _p((vs or {}).get("p_value"),
                            adjusted.get(("auroc_vs_confidence", method, name))),
                         size, fmt(entry.get("error_rate"))])
    return header, rows


def _figure_points(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    points = []
    for entry in metrics.get("error_flags", []):
        for name, score in entry.get("scores", {}).items():
            auc = score.get("auroc") or {}
            if auc.get("estimate") is not None:
                points.append({"label": f"{entry['method']}: {name}", "mean": auc["estimate"],
                               "low": auc.get("ci_low"), "high": auc.get("ci_high"),
                               "reference": name == _CONFIDENCE})
    return points


def uncertainty_section(run: RunData) -> str:
    """AUROC table and chart, then the error-by-bin table."""
    a_header, a_rows = auroc_rows(run.metrics)
    b_header, b_rows = bin_rows(run.metrics)
    if not a_rows and not b_rows:
        return note("No method with several members, so no disagreement to measure.")
    out = ""
    if a_rows:
        out += "<h3>AUROC for predicting a test error</h3>"
        out += table(a_header, a_rows, lead=2)
        points = _figure_points(run.metrics)
        if points:
            out += img(fg.to_data_uri(fg.auroc_figure(points)), "AUROC with intervals")
        out += note("AUROC 0.5 = no better than chance. Each measure is scored on the "
                    "members' mean prediction of every test bar; intervals and tests are "
                    "robust to autocorrelated bars (seeds averaged per bar); adjusted p in "
                    "brackets (the findings family). A measure earns its keep only if it "
                    f"beats {_CONFIDENCE}, the model's own confidence.")
    if b_rows:
        out += "<h3>Test error rate by bin of disagreement</h3>"
        out += table(b_header, b_rows, lead=2)
        out += note("Bins by value in each fold x seed cell (ties never split: a measure "
                    "that is mostly 0 has one bin for its zeros, so fewer bins), pooled over "
                    "the cells with the same number of bins, bin by bin; under each error "
                    "rate: its rows and the measure's range.")
    return out

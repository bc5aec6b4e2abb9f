"""The run directories under a folder, one summary each (``selfdistill runs list``).

A summary is read from metrics.json, timings.json and config.yaml only: the run's
name and date, its data, methods, headline test metrics (each method's validation-chosen
output: accuracy and NLL, the mean over folds) and the findings' answers. A folder that
is not a run directory is skipped; an unfinished or damaged one is listed as such.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from selfdistill.errors import DataError
from selfdistill.rundir.layout import CONFIG_FILE, METRICS_FILE, TIMINGS_FILE
from selfdistill.rundir.lifecycle import incomplete_reason
from selfdistill.rundir.read import read_metrics

__all__ = ["RunSummary", "find_runs", "headline_outputs", "summarise_run"]

log = logging.getLogger(__name__)

_NOT_HEADLINE = ("majority", "buy_and_hold", "always_flat", "random")


@dataclass
class RunSummary:
    """One line of ``runs list``."""

    path: Path
    name: str
    date: str | None = None
    data: str = ""
    methods: list[str] = field(default_factory=list)
    headline: dict[str, dict[str, float]] = field(default_factory=dict)
    findings: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # "INCOMPLETE (why)" or "damaged: ..."


def find_runs(folder: str | Path) -> list[Path]:
    """``folder`` itself if it is a run directory, else its run directories, oldest first."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"'{root}' is not a folder (give the folder that holds run "
                        "directories, e.g. runs)")
    if (root / METRICS_FILE).is_file():
        return [root]
    found = [p for p in root.iterdir() if p.is_dir() and
             ((p / METRICS_FILE).is_file() or incomplete_reason(p) is not None)]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def headline_outputs(metrics: dict[str, Any]) -> list[str]:
    """Each method's validation-chosen output (``born_again_selected``) or its only one."""
    test = [r for r in metrics.get("records", []) if r.get("aggregate")
            and r.get("split") == "test" and "+" not in str(r["method"])]
    names = list(dict.fromkeys(str(r["method"]) for r in test))
    out = []
    for name in names:
        if name in _NOT_HEADLINE or name.endswith("_selected"):
            continue
        out.append(f"{name}_selected" if f"{name}_selected" in names else name)
    return list(dict.fromkeys(out))


def _metric(metrics: dict[str, Any], output: str, name: str) -> float | None:
    for rec in metrics.get("records", []):
        value = rec.get(name)
        if rec.get("aggregate") and rec.get("split") == "test" and rec["method"] == output \
                and rec.get("generation") is None and isinstance(value, dict):
            return float(value["mean"])
    return None


def _data_text(data: dict[str, Any]) -> str:
    if not data:
        return "?"
    what = data.get("symbol") or data.get("path") or data.get("source", "?")
    first, last = str(data.get("first_bar", "?"))[:10], str(data.get("last_bar", "?"))[:10]
    return f"{what} {data.get('interval') or '?'} {first}..{last} ({data.get('bars', '?')} bars)"


def _date(path: Path) -> str | None:
    try:
        stamp = json.loads((path / TIMINGS_FILE).read_text(encoding="utf-8")).get("created_at")
    except (OSError, ValueError, AttributeError):
        return None
    return None if stamp is None else str(stamp)[:16].replace("T", " ")


def _methods(path: Path) -> list[str]:
    try:
        config = yaml.safe_load((path / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    methods = config.get("methods") if isinstance(config, dict) else None
    return [str(m) for m in methods] if isinstance(methods, list) else []


def summarise_run(path: Path) -> RunSummary:
    """The ``runs list`` line of one run directory (never raises for a bad directory)."""
    summary = RunSummary(path, path.name, date=_date(path), methods=_methods(path))
    why = incomplete_reason(path)
    if why is not None:
        summary.problem = f"INCOMPLETE ({why})"
    if not (path / METRICS_FILE).is_file():
        return summary
    try:
        metrics = read_metrics(path)
    except DataError as exc:
        summary.problem = f"damaged: {exc}"
        return summary
    summary.name = str(metrics.get("name", path.name))
    summary.data = _data_text(metrics.get("data") or {})
    for output in headline_outputs(metrics):
        values = {m: v for m in ("accuracy", "nll") if (v := _metric(metrics, output, m))
                  is not None}
        if values:
            summary.headline[output] = values
    findings = metrics.get("findings") or {}
    summary.findings = {str(q["id"]): str(q.get("answer"))
                        for q in findings.get("questions", [])}
    return summary

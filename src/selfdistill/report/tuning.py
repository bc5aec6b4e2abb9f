"""The report's "Hyperparameter search" section, for runs written by ``selfdistill tune``.

It shows, from ``tune.json`` (:mod:`selfdistill.tuning.summary`): the warning about
selection (test read once; the best validation score is optimistic), the best
parameters, each parameter's importance, and the search history trial by trial.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from selfdistill.report.markup import note, table
from selfdistill.rundir.layout import TUNE_FILE, damaged

__all__ = ["load_tune", "tuning_section"]


def load_tune(run_dir: Path) -> dict[str, Any] | None:
    """tune.json of a run directory (None for runs that were not a search)."""
    path = run_dir / TUNE_FILE
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(path, exc) from exc
    return payload if isinstance(payload, dict) else None


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                     for k, v in params.items())


def tuning_section(tune: dict[str, Any]) -> str:
    """HTML of the search: warning, best point, importances, history."""
    study, best = tune.get("study", {}), tune.get("best", {})
    dev = study.get("development", {})
    parts = [f'<p class="banner">{html.escape(str(tune.get("warning", "")))}</p>',
             note(f"Study '{study.get('name')}' ({study.get('storage')}): "
                  f"{study.get('direction')} validation {study.get('metric')} of "
                  f"{study.get('method')}, pruning: {study.get('pruning')}; on "
                  f"{dev.get('rows')} development rows ({dev.get('folds')} folds) before the "
                  f"first test bar {dev.get('first_test_bar')}."),
             table(["best trial", f"validation {study.get('metric')}",
                    f"test {study.get('metric')}", "parameters"],
                   [[str(best.get("number")), _number(best.get("value")),
                     _number(tune.get("test_value")), _params(best.get("params") or {})]])]
    found = tune.get("importances") or {}
    if found:
        parts.append(table(["parameter", "importance (fANOVA share of the variance)"],
                           [[k, f"{v:.3f}"] for k, v in
                            sorted(found.items(), key=lambda kv: -kv[1])]))
    else:
        parts.append(note(f"No parameter importances: {tune.get('importances_note')}."))
    rows = [[str(t["number"]), str(t["state"]), _number(t.get("value")),
             " ".join(_number(v) for v in t.get("fold_values") or []) or "-",
             _params(t.get("params") or {})] for t in tune.get("trials", [])]
    parts.append(table(["trial", "state", "value", "per fold", "parameters"], rows))
    return "".join(parts)

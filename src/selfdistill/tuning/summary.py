"""What a search leaves in its run directory: ``tune.json``.

::

    {"study": {name, storage, direction, metric, method, space, development},
     "trials": [{number, state, value, fold_values, params, seconds}, ...],
     "best": {number, value, params}, "test_value": the same metric on test (read once),
     "importances": {key: share of the variance explained (fANOVA)}, "warning": "..."}

The report shows it as the search history, the parameter importances and the warning
about selection (:mod:`selfdistill.report.tuning`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from selfdistill.config import RunConfig
from selfdistill.rundir.layout import TUNE_FILE
from selfdistill.rundir.write import write_json
from selfdistill.tuning.objective import SearchData, tuned_method

__all__ = ["importances", "selection_warning", "study_summary", "trial_rows",
           "write_tune_file"]

log = logging.getLogger(__name__)


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """Every trial: number, state, value, per-fold values, config parameters, seconds."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = ((t.datetime_complete - t.datetime_start).total_seconds()
                   if t.datetime_complete is not None and t.datetime_start is not None
                   else None)
        folds = t.user_attrs.get("fold_values") or [
            v for _, v in sorted(t.intermediate_values.items())]
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": t.value,
                     "fold_values": folds, "params": t.user_attrs.get("params", t.params),
                     "seconds": seconds})
    return rows


def importances(study: Any, seed: int) -> tuple[dict[str, float], str | None]:
    """fANOVA importance of each searched key (a share of the objective's variance), or
    ({}, why not)."""
    import optuna

    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(done) < 2:
        return {}, "fewer than 2 finished trials"
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError) as exc:  # e.g. every trial had the same parameters
        return {}, str(exc).splitlines()[0]
    return {str(k): float(v) for k, v in found.items()}, None


def selection_warning(n_trials: int, metric: str, best: float | None,
                      test: float | None) -> str:
    """The caution a reader needs: the best of many trials flatters its validation score."""
    text = (f"These parameters are the best of {n_trials} trials, chosen by validation "
            f"{metric} on bars before the first test bar; the test rows were read once, "
            "for this run. The best trial's validation score is optimistic (the maximum of "
            "many noisy scores); the test numbers of this report are the honest estimate.")
    if best is not None and test is not None:
        text += f" Validation {metric} of the best trial: {best:.4f}; on test: {test:.4f}."
    return text


def _test_value(metrics: dict[str, Any], method: str, metric: str) -> float | None:
    for name in (f"{method}_selected", method):
        for rec in metrics.get("records", []):
            value = rec.get(metric)
            if rec.get("aggregate") and rec.get("split") == "test" and rec["method"] == name \
                    and isinstance(value, dict):
                return float(value["mean"])
    return None


def study_summary(study: Any, cfg: RunConfig, data: SearchData, *, best: dict[str, Any],
                  storage: str, study_name: str, final_metrics: dict[str, Any]
                  ) -> dict[str, Any]:
    """tune.json's content (see the module docstring)."""
    rows = trial_rows(study)
    method = tuned_method(cfg)
    found, why = importances(study, cfg.tune.seed if cfg.tune.seed is not None else cfg.seed)
    best_trial = study.best_trial
    test = _test_value(final_metrics, method, cfg.tune.metric)
    return {
        "study": {"name": study_name, "storage": storage or "in memory",
                  "direction": study.direction.name.lower(), "metric": cfg.tune.metric,
                  "method": method,
                  "space": {k: v if isinstance(v, list) else v.model_dump(mode="json")
                            for k, v in cfg.tune.space.items()},
                  "pruning": "median across folds" if cfg.tune.pruning else "none",
                  "development": {"rows": data.ds.n_rows, "folds": len(data.splits),
                                  "first_test_bar": data.first_test_time}},
        "trials": rows,
        "counts": {state: sum(r["state"] == state for r in rows)
                   for state in ("complete", "pruned", "fail", "running")},
        "best": {"number": best_trial.number, "value": best_trial.value, "params": best},
        "test_value": test,
        "importances": found,
        "importances_note": why,
        "warning": selection_warning(len(rows), cfg.tune.metric, best_trial.value, test),
    }


def write_tune_file(run_dir: Path, summary: dict[str, Any]) -> Path:
    path = Path(run_dir) / TUNE_FILE
    write_json(path, summary)
    return path

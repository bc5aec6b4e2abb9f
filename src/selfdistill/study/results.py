"""What study.json says: each point's results, read from its run's metrics.json.

Nothing is re-estimated here. A point's numbers are its run's: the test aggregates
(mean and 95% interval over folds), the findings' answers, and the *key comparisons*
from the run's ``comparisons`` (per-bar paired tests, p adjusted over the run's
comparisons with ``evaluation.adjust``):

* each method's headline output (``<method>_selected``, the member chosen on validation,
  where the method has several; else the method) against ``baseline``, the hard-label
  model, and against the best simple alternative the run's findings chose on validation
  NLL (``logistic`` / ``lightgbm`` / ``hmm``);
* for methods with ordered members (generations, snapshots, exits) every member against
  the first one (``members``).

A study is many runs, so it adds one thing: the key comparisons on the primary metric
of all points form one more family, adjusted with Benjamini-Hochberg (the engine's own
:func:`~selfdistill.evaluation.aggregate.adjust_family`, applied to the runs' raw
p-values): ``p_study`` and ``verdict_study``. The map of where a method helps counts
those study-wide verdicts, so that 100 points do not find 5 wins by chance.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from selfdistill._version import __version__
from selfdistill.evaluation.aggregate import ORDINAL_KEYS, adjust_family, member_keys, member_label
from selfdistill.evaluation.statistics import BETTER, NO_DIFFERENCE, NOT_TESTABLE, WORSE
from selfdistill.study.spec import Point, Study

__all__ = ["SCHEMA_VERSION", "SUMMARY_METRICS", "VERDICTS", "headline_outputs",
           "point_summary", "study_summary"]

SCHEMA_VERSION = 1
#: Test metrics each point reports per output (those the run has).
SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "nll", "brier", "ece",
                   "accuracy_true", "sharpe")
VERDICTS = (BETTER, WORSE, NO_DIFFERENCE, NOT_TESTABLE)
#: Methods that are not compared as candidates (the reference and the floor).
_NOT_CANDIDATES = ("majority", "baseline")
_ROW_FIELDS = ("mean_diff", "ci_low", "ci_high", "p_value", "p_adjusted", "adjustment",
               "verdict", "reason", "test", "df", "n_bars", "n_seeds", "n_folds")


def headline_outputs(methods: Sequence[str], metrics: dict[str, Any]) -> dict[str, str]:
    """Method -> the output that speaks for it: ``<method>_selected`` where it exists."""
    names = {r["method"] for r in metrics.get("records", [])}
    return {m: (f"{m}_selected" if f"{m}_selected" in names else m) for m in methods
            if m in names or f"{m}_selected" in names}


def _interval(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or value.get("mean") is None:
        return None
    return {k: value.get(k) for k in ("mean", "ci_low", "ci_high", "folds")}


def _test_aggregates(metrics: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(output, member label) -> its test aggregate record."""
    return {(r["method"], member_label(member_keys(r))): r for r in metrics.get("records", [])
            if r.get("aggregate") and r.get("split") == "test"}


def _output_metrics(record: dict[str, Any] | None) -> dict[str, Any]:
    if record is None:
        return {}
    shown = {m: _interval(record.get(m)) for m in SUMMARY_METRICS}
    return {m: v for m, v in shown.items() if v is not None}


def _row(comparison: dict[str, Any], role: str, method: str) -> dict[str, Any]:
    return {"method": method, "output": comparison["method"], "role": role,
            "reference": comparison["reference_method"], "metric": comparison["metric"],
            **{k: comparison.get(k) for k in _ROW_FIELDS}}


def _find(comparisons: Sequence[dict[str, Any]], kind: str, output: str, candidate: str,
          metric: str) -> dict[str, Any] | None:
    return next((c for c in comparisons if c["kind"] == kind and c["method"] == output
                 and c["candidate"] == candidate and c["metric"] == metric), None)


def _key_comparisons(outputs: dict[str, str], metrics: dict[str, Any], alternative: str | None,
                     primary: str) -> list[dict[str, Any]]:
    comparisons = metrics.get("comparisons", [])
    rows = []
    for method, output in outputs.items():
        if method in _NOT_CANDIDATES:
            continue
        refs = [("hard_label", "baseline")]
        if alternative is not None and method != alternative:
            refs.append(("best_alternative", alternative))
        for role, ref in refs:
            for metric in (primary, "accuracy_true"):
                found = _find(comparisons, f"vs_{ref}", output, "-", metric)
                if found is not None:
                    rows.append(_row(found, role, method))
    return rows


def _ordinal(label: str) -> tuple[str, int] | None:
    key, _, value = label.partition("=")
    if key in ORDINAL_KEYS and "," not in value and value.lstrip("-").isdigit():
        return key, int(value)
    return None


def _members(methods: Sequence[str], metrics: dict[str, Any], primary: str
             ) -> dict[str, list[dict[str, Any]]]:
    """Per method with ordered members: each member's test metrics and its comparison with
    the first member on the primary metric (e.g. generation k vs generation 0)."""
    out: dict[str, list[dict[str, Any]]] = {}
    comparisons = metrics.get("comparisons", [])
    for (output, label), rec in _test_aggregates(metrics).items():
        ordinal = _ordinal(label) if output in methods else None
        if ordinal is None:
            continue
        found = _find(comparisons, "vs_first_member", output, label, primary)
        out.setdefault(output, []).append({
            "member": label, "key": ordinal[0], "index": ordinal[1],
            "metrics": _output_metrics(rec),
            "vs_first": None if found is None else _row(found, "first_member", output)})
    for members in out.values():
        members.sort(key=lambda m: m["index"])
    return out


def _findings(block: dict[str, Any]) -> dict[str, Any]:
    return {"best_alternative": block.get("best_alternative"),
            "methods": block.get("methods", []), "overall": block.get("overall"),
            "warnings": block.get("warnings", []),
            "questions": [{"id": q["id"], "question": q["question"], "answer": q["answer"],
                           "why": q["why"]} for q in block.get("questions", [])]}


def point_summary(point: Point, metrics: dict[str, Any], *, run_dir: str,
                  seconds: float | None, skipped: bool = False) -> dict[str, Any]:
    """Everything study.json says about one point, from its run's metrics.json."""
    block = metrics.get("findings") or {}
    primary = block.get("primary_metric", point.config.evaluation.primary_metric)
    methods = list(point.config.methods)
    outputs = headline_outputs(methods, metrics)
    aggregates = _test_aggregates(metrics)
    experiment = metrics.get("experiment", {})
    data = metrics.get("data", {})
    return {
        "name": point.name, "dataset": point.dataset, "variant": point.variant,
        "settings": point.settings, "run_dir": run_dir, "seconds": seconds,
        "resumed": skipped, "primary_metric": primary, "methods": methods,
        "data": {k: data.get(k) for k in ("source", "symbol", "path", "interval", "bars",
                                          "labelled_rows", "first_bar", "last_bar")
                 if k in data},
        "experiment": {k: experiment.get(k) for k in ("scheme", "folds", "seeds", "window")},
        "label_noise": point.config.labels.noise.model_dump(mode="json"),
        "outputs": outputs,
        "metrics": {out: _output_metrics(aggregates.get((out, "-"))) for out in
                    outputs.values()},
        "members": _members(methods, metrics, primary),
        "findings": _findings(block),
        "comparisons": _key_comparisons(outputs, metrics, block.get("best_alternative"),
                                        primary),
    }


# ------------------------------------------------------------------ the study


def _adjust_study(points: Sequence[dict[str, Any]], primary: str) -> int:
    """BH over every point's key comparisons on the primary metric; p_study / verdict_study
    set in place (None on the other rows). Returns the family's size."""
    family = [row for p in points for row in p["comparisons"] if row["metric"] == primary]
    copies = [copy.deepcopy(row) for row in family]
    adjust_family(copies, method="bh")
    for row, adjusted in zip(family, copies, strict=True):
        row["p_study"], row["verdict_study"] = adjusted["p_adjusted"], adjusted["verdict"]
    for p in points:
        for row in p["comparisons"]:
            row.setdefault("p_study", None)
            row.setdefault("verdict_study", None)
    return len(family)


def _map(points: Sequence[dict[str, Any]], primary: str) -> dict[str, Any]:
    """Per method and reference role: points by study-wide verdict on the primary metric."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for p in points:
        for row in p["comparisons"]:
            if row["metric"] != primary:
                continue
            role = out.setdefault(row["method"], {}).setdefault(
                row["role"], {**dict.fromkeys(VERDICTS, 0), "better_at": [], "worse_at": []})
            verdict = row["verdict_study"] or NOT_TESTABLE
            role[verdict] += 1
            if verdict in (BETTER, WORSE):
                role[f"{verdict}_at"].append(p["name"])
    return out


def study_summary(study: Study, points: Sequence[dict[str, Any]], *, complete: bool,
                  seconds: float, created_at: str, command: str = "") -> dict[str, Any]:
    """The study.json payload."""
    points = [copy.deepcopy(p) for p in points]
    primaries = {p["primary_metric"] for p in points}
    primary = primaries.pop() if len(primaries) == 1 else study.points[0].config.evaluation\
        .primary_metric
    size = _adjust_study(points, primary)
    return {
        "schema_version": SCHEMA_VERSION, "name": study.spec.name, "source": study.source,
        "selfdistill_version": __version__, "created_at": created_at, "command": command,
        "complete": complete, "points_total": len(study.points), "points_done": len(points),
        "seconds": seconds, "axes": study.axes,
        "datasets": list(dict.fromkeys(p.dataset for p in study.points)),
        "variants": [v for v in dict.fromkeys(p.variant for p in study.points) if v],
        "primary_metric": primary,
        "study_family": {"adjustment": "bh", "metric": primary, "tests": size,
                         "what": "every point's key comparisons on the primary metric, "
                                 "adjusted together (the runs' raw p-values)"},
        "map": _map(points, primary),
        "points": points,
    }

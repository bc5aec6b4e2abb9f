"""The report's reliability diagrams: calibration before and after temperature scaling.

A panel pools the test rows of every cell of one output (a ``<method>_selected`` output:
each cell's chosen member) in equal-width confidence bins. The rows are read one row
group at a time (:meth:`~selfdistill.report.rundata.RunData.prediction_chunks`) and each
bin's rows, summed confidence and summed correctness are added up over the chunks, so a
10M-bar run's panel holds one row group's probabilities, not all of them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from selfdistill.evaluation.metrics import reliability_curve
from selfdistill.report import figures as fg
from selfdistill.report.markup import img, note
from selfdistill.report.outputs import (
    TRADING_BASELINES,
    Output,
    featured_output,
    headline_outputs,
    self_distillation_outputs,
)
from selfdistill.report.rundata import RunData
from selfdistill.softmax import log_probabilities, softmax

__all__ = ["RELIABILITY_BINS", "calibration_section", "merge_curves", "panel_outputs",
           "subtitle"]

#: Confidence bins of every panel.
RELIABILITY_BINS = 10
_MAX_PANELS = 8
Curve = dict[str, list[float]]


def panel_outputs(run: RunData) -> list[Output]:
    """Outputs that get a reliability / confusion panel: the hard-label baseline, every
    self-distillation method's selected member, the best simple alternative, the
    featured output, then the other headline models (at most eight)."""
    best = run.findings.get("best_alternative")
    wanted = [("baseline", "-"), *self_distillation_outputs(run.index, run.findings.get("methods")),
              *([(best, "-")] if best else []), featured_output(run.index),
              *headline_outputs(run.index)]
    present = set(run.index.outputs())
    chosen = [o for o in dict.fromkeys(wanted) if o in present
              and o[0] not in ("majority", *TRADING_BASELINES)]
    return chosen[:_MAX_PANELS]


def subtitle(run: RunData, output: Output) -> str:
    """What a panel of ``output`` shows: the selected member(s), or the member."""
    picked = run.index.selected_from(output)
    if picked is not None:
        return f"selected: {picked}"
    return "" if output[1] == "-" else f"member {output[1]}"


def merge_curves(curves: Iterable[Curve]) -> Curve | None:
    """One reliability curve from the curves of disjoint chunks of rows (same bins):
    rows add up, confidence and accuracy are row-weighted means. A single curve is
    returned as it is; None for none.

    >>> a = {"bin_lower": [0.5], "bin_upper": [0.6], "confidence": [0.55],
    ...      "accuracy": [1.0], "count": [2.0]}
    >>> b = {"bin_lower": [0.5, 0.9], "bin_upper": [0.6, 1.0], "confidence": [0.52, 0.95],
    ...      "accuracy": [0.0, 1.0], "count": [2.0, 1.0]}
    >>> merge_curves([a, b])["accuracy"], merge_curves([a, b])["count"]
    ([0.5, 1.0], [4.0, 1.0])
    """
    given = list(curves)
    if len(given) <= 1:
        return given[0] if given else None
    bins: dict[tuple[float, float], np.ndarray] = {}  # (lower, upper) -> rows, conf, correct
    for curve in given:
        for i, edges in enumerate(zip(curve["bin_lower"], curve["bin_upper"], strict=True)):
            n = curve["count"][i]
            add = np.array([n, n * curve["confidence"][i], n * curve["accuracy"][i]])
            bins[edges] = bins.get(edges, np.zeros(3)) + add
    ordered = sorted(bins.items())
    return {"bin_lower": [lo for (lo, _), _ in ordered],
            "bin_upper": [hi for (_, hi), _ in ordered],
            "confidence": [float(v[1] / v[0]) for _, v in ordered],
            "accuracy": [float(v[2] / v[0]) for _, v in ordered],
            "count": [float(v[0]) for _, v in ordered]}


def _after_temperature(proba: np.ndarray, temps: np.ndarray) -> np.ndarray:
    """(N, C) probabilities after each row's temperature (rows without one unchanged)."""
    fitted = np.unique(temps[np.isfinite(temps)])  # one temperature per cell
    if len(fitted) == 1 and np.all(temps == fitted[0]):  # one cell: no row selection
        return softmax(log_probabilities(proba), temperature=float(fitted[0]))
    after = proba.copy()
    for t in fitted:
        at = temps == t
        after[at] = softmax(log_probabilities(proba[at]), temperature=float(t))
    return after


def _reliability_panel(run: RunData, output: Output) -> fg.ReliabilityPanel | None:
    """The output's reliability before (and after) temperature scaling on its test rows,
    chunk by chunk; None without rows."""
    probas = [f"p_{c}" for c in run.class_names]
    has_t = "temperature" in run.files.prediction_columns
    columns = [*probas, "label", *(["temperature"] if has_t else [])]
    before, after = [], []
    for rows in run.prediction_chunks(output, columns, split="test"):
        if rows.empty:
            continue
        proba = rows[probas].to_numpy(dtype=np.float64)  # (N, C)
        y = rows["label"].to_numpy()
        before.append(reliability_curve(y, proba, RELIABILITY_BINS))
        temps = rows["temperature"].to_numpy(dtype=np.float64) if has_t else np.array([np.nan])
        if np.isfinite(temps).any():  # calibration was on for this output
            after.append(reliability_curve(y, _after_temperature(proba, temps),
                                           RELIABILITY_BINS))
    pooled = merge_curves(before)
    if pooled is None:
        return None
    return fg.ReliabilityPanel(output[0] if output[1] == "-" else " ".join(output),
                               subtitle(run, output), pooled, merge_curves(after))


def calibration_section(run: RunData) -> str:
    """One reliability diagram per panel output (test rows of every cell pooled)."""
    panels = [p for p in (_reliability_panel(run, o) for o in panel_outputs(run))
              if p is not None]
    if not panels:
        return note("No test predictions in predictions.parquet.")
    said = ("the temperature of each cell was fitted on that cell's validation rows only"
            if any(p.after is not None for p in panels)
            else "temperature scaling is off (evaluation.calibrate: false)")
    return (img(fg.to_data_uri(fg.reliability_figure(panels)), "reliability diagrams")
            + note(f"Test rows of every cell pooled, {RELIABILITY_BINS} confidence bins; "
                   f"bars: rows per bin; hollow grey points and grey bars: bins with fewer "
                   f"than {fg.MIN_BIN_ROWS} rows. Selected outputs show the member each cell "
                   f"chose on validation; {said}."))

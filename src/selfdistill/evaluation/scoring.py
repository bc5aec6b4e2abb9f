"""Scoring one cell's fitted methods: records, calibration, backtest, rows, evidence.

Every output of every method (a member, or a derived row such as an ensemble) gets

* a metrics record per split (train, val, test);
* a temperature fitted on its **validation** rows only and applied to its validation and
  test rows: ``temperature``, ``nll_calibrated``, ``ece_calibrated`` and
  ``brier_calibrated`` join its val / test records;
* a backtest on its **test** rows (positions from the calibrated probabilities when
  calibration is on, so confidence sizing uses calibrated confidence; the argmax is the
  same either way): the trading metrics of
  :func:`selfdistill.evaluation.backtest.trading_metrics` join its test record, plus
  ``random_sharpe`` / ``random_total_return`` of random timing with exactly its own
  turnover. With ``backtest.uncertainty_gate``, every output of a method whose members
  disagree is backtested a second time, flat where the test mutual information is above
  that quantile of the *validation* one, as an output of its own, ``<method>+gate``: a
  gated strategy is compared only with the same strategy ungated (like for like).

Baseline rows ``buy_and_hold``, ``always_flat`` and ``random`` (random timing with the
turnover of the hard-label ``baseline``, or of the first output) are added as test
records. Test rows are read only here, after every method has finished fitting.

Memory is bounded by one method at a time: its members' probabilities on one split,
its prediction and backtest rows written in pieces of :data:`ROWS_PER_PIECE` to a
:class:`~selfdistill.rundir.frames.FrameWriter`, and per test bar only the float32
scores the verdicts need (:class:`~selfdistill.evaluation.evidence.CellEvidence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from selfdistill.evaluation.calibration import apply_temperature, fit_temperature, logits_from_proba
from selfdistill.evaluation.evidence import MEASURES, CellEvidence
from selfdistill.evaluation.fold import Dataset
from selfdistill.evaluation.metrics import MetricTotals
from selfdistill.evaluation.scorestate import BacktestSettings, CellState, OutputProbs
from selfdistill.evaluation.scoring_trades import (
    GATE_MEASURE,
    GATED,
    ROWS_PER_PIECE,
    baseline_results,
    gate_of,
    trade,
    write_curve,
)
from selfdistill.evaluation.uncertainty import disagreement, error_by_quantile
from selfdistill.methods import Lineage
from selfdistill.rundir.frames import FrameWriter
from selfdistill.splits import Split

__all__ = ["GATED", "GATE_MEASURE", "ROWS_PER_PIECE", "BacktestSettings", "CellScores",
           "score_lineages"]

SPLITS = ("train", "val", "test")
_CALIBRATED = ("nll", "ece", "brier")
_BASELINES = ("buy_and_hold", "always_flat", "random")


@dataclass
class CellScores:
    """A cell's records, disagreement summaries, evidence and fitted temperatures."""

    records: list[dict[str, Any]]
    uncertainty: list[dict[str, Any]]
    evidence: CellEvidence
    temperatures: dict[tuple[str, str], float] = field(default_factory=dict)


def _outputs(lineage: Lineage, member_probs: Sequence[np.ndarray]) -> list[OutputProbs]:
    """Every member and derived row of a lineage, with its probabilities."""
    out = []
    for i, (m, p) in enumerate(zip(lineage.members, member_probs, strict=True)):
        extra = {"selected": i == lineage.selected} if len(lineage.members) > 1 else {}
        out.append(OutputProbs(i, lineage.method, dict(m.keys), p, extra))
    for j, d in enumerate(lineage.derived, len(out)):
        extra = d.extras(member_probs) if d.extras is not None else {}
        out.append(OutputProbs(j, d.method, dict(d.keys), d.combine(member_probs), extra))
    return out


def _metrics(cell: CellState, y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """:func:`classification_metrics`, the rows taken :data:`ROWS_PER_PIECE` at a time."""
    totals = MetricTotals(len(cell.ds.labels.class_names))
    for a in range(0, max(len(y), 1), ROWS_PER_PIECE):
        totals.add(y[a:a + ROWS_PER_PIECE], proba[a:a + ROWS_PER_PIECE])
    return totals.result()


def _record(cell: CellState, out: OutputProbs, split: str, y: np.ndarray,
            truth: np.ndarray | None) -> dict[str, Any]:
    rec: dict[str, Any] = {"method": out.method, "generation": None, **out.keys,
                           "split": split, **cell.base}
    rec.update(_metrics(cell, y, out.proba))
    if truth is not None:
        rec["accuracy_true"] = float((out.proba.argmax(axis=1) == truth).mean())
    return {**rec, **out.extra}


def _calibrate(cell: CellState, out: OutputProbs, split: str, y: np.ndarray,
               rec: dict[str, Any]) -> tuple[float | None, np.ndarray]:
    """Fit T on validation (or take it) and add the calibrated metrics: (T, calibrated
    probabilities); (None, the probabilities) when calibration is off."""
    key = (out.method, out.member)
    if not cell.settings.calibrate or (split == "test" and key not in cell.temperatures):
        return None, out.proba
    logits = logits_from_proba(out.proba)
    if split == "val":
        cell.temperatures[key] = fit_temperature(logits, y)
    t = cell.temperatures[key]
    calibrated = apply_temperature(logits, t)
    del logits
    scores = _metrics(cell, y, calibrated)
    rec["temperature"] = t
    rec.update({f"{m}_calibrated": scores[m] for m in _CALIBRATED})
    return t, calibrated


def _write_predictions(cell: CellState, out: OutputProbs, split: str, rows: np.ndarray,
                       temperature: float | None, measures: dict[str, np.ndarray]) -> None:
    """The output's rows of one split, piece by piece."""
    ds = cell.ds
    y_all = ds.labels.y.to_numpy()
    gen = out.keys.get("generation")
    for a in range(0, len(rows), ROWS_PER_PIECE):
        r = rows[a:a + ROWS_PER_PIECE]
        p = out.proba[a:a + ROWS_PER_PIECE]
        frame = pd.DataFrame({"open_time": ds.times[r], "split": split, "method": out.method,
                              "member": out.member})
        frame["generation"] = pd.arrays.IntegerArray(
            np.full(len(r), 0 if gen is None else int(gen), dtype=np.int64),
            np.full(len(r), gen is None))  # nullable Int64: missing for non-generations
        for c, name in enumerate(ds.labels.class_names):
            frame[f"p_{name}"] = p[:, c]
        frame["pred"] = p.argmax(axis=1).astype(np.int64)
        frame["label"] = y_all[r].astype(np.int64)
        if ds.truth is not None:
            frame["true_regime"] = ds.truth[r].astype(np.int64)
        for k, v in cell.base.items():
            frame[k] = v
        frame["temperature"] = np.nan if temperature is None else temperature
        for name in MEASURES if cell.flagged else ():
            frame[name] = measures[name][a:a + ROWS_PER_PIECE] if measures else np.nan
        cell.predictions.write(frame)


def _measures(cell: CellState, lineage: Lineage, li: int, split: str, si: int,
              member_probs: Sequence[np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-bar disagreement of a lineage's members, and its error rate per quantile."""
    if not (lineage.disagreement and len(member_probs) > 1 and split != "train"):
        return {}
    n = len(y)
    measures = {name: np.empty(n) for name in MEASURES}
    correct = np.empty(n, dtype=bool)
    for a in range(0, n, ROWS_PER_PIECE):  # row by row: pieces keep (M, N, C) small
        probs = np.stack([p[a:a + ROWS_PER_PIECE] for p in member_probs])  # (M, n, C)
        piece = disagreement(probs)
        for name in MEASURES:
            measures[name][a:a + ROWS_PER_PIECE] = piece[name]
        correct[a:a + ROWS_PER_PIECE] = probs.mean(axis=0).argmax(axis=1) == y[a:a + ROWS_PER_PIECE]
    cell.uncertainty[(si, li)] = [
        {"method": lineage.method, "split": split, "measure": name, **cell.base,
         "quantiles": error_by_quantile(measures[name], correct)} for name in MEASURES]
    return measures


def _predict(cell: CellState, lineage: Lineage, rows: np.ndarray) -> list[np.ndarray]:
    x = cell.x
    assert x is not None, "every split is predicted before the inputs are let go"
    rows_t = torch.as_tensor(rows, dtype=torch.int64, device=x.device)
    return [np.asarray(m.predict_proba(x, rows_t), dtype=np.float64) for m in lineage.members]


def _score_train(cell: CellState, lineage: Lineage, li: int) -> None:
    """Training-split records, the rows taken :data:`ROWS_PER_PIECE` at a time (every
    metric is a sum over rows, :class:`MetricTotals`)."""
    ds = cell.ds
    rows = cell.rows("train")
    y_all = ds.labels.y.to_numpy()
    n_classes = len(ds.labels.class_names)
    totals: list[MetricTotals] = []
    hits: list[int] = []
    outputs: list[OutputProbs] = []
    for a in range(0, len(rows), ROWS_PER_PIECE):
        r = rows[a:a + ROWS_PER_PIECE]
        outputs = _outputs(lineage, _predict(cell, lineage, r))
        if not totals:
            totals = [MetricTotals(n_classes) for _ in outputs]
            hits = [0] * len(outputs)
        for out in outputs:
            totals[out.index].add(y_all[r], out.proba)
            if ds.truth is not None:
                hits[out.index] += int((out.proba.argmax(axis=1) == ds.truth[r]).sum())
    for out in outputs:
        rec: dict[str, Any] = {"method": out.method, "generation": None, **out.keys,
                               "split": "train", **cell.base, **totals[out.index].result()}
        if ds.truth is not None:
            rec["accuracy_true"] = hits[out.index] / len(rows)
        cell.records[(0, li, out.index)] = {**rec, **out.extra}


@dataclass
class _Pending:
    """A method's test split, predicted while the inputs were alive, scored afterwards."""

    member_probs: list[np.ndarray]
    gate_values: np.ndarray | None


def _score_split(cell: CellState, lineage: Lineage, li: int, si: int,
                 member_probs: list[np.ndarray], gate_values: np.ndarray | None
                 ) -> np.ndarray | None:
    """Records, calibration, rows (and on test: evidence, backtest) of one split of a
    method; returns the validation disagreement the gate thresholds (on val)."""
    ds, split = cell.ds, SPLITS[si]
    rows = cell.rows(split)
    y = ds.labels.y.to_numpy()[rows]
    truth = None if ds.truth is None else ds.truth[rows]
    measures = _measures(cell, lineage, li, split, si, member_probs, y)
    for out in _outputs(lineage, member_probs):
        rec = _record(cell, out, split, y, truth)
        cell.records[(si, li, out.index)] = rec
        if split == "train":
            continue
        temperature, calibrated = _calibrate(cell, out, split, y, rec)
        _write_predictions(cell, out, split, rows, temperature, measures)
        if split != "test":
            del calibrated
            continue
        times = cell.test_times()
        cell.evidence.add_scores((out.method, out.member), times, out.proba, y, truth)
        if measures:  # members only (ordinal labels): their mean flags errors
            cell.evidence.add_member(out.method, out.member, times, out.proba, y, measures)
        if cell.settings.enabled:
            gate = gate_of(measures, gate_values, cell.settings.uncertainty_gate)
            trade(cell, out, rec, calibrated, gate)
        del calibrated
    return measures.get(GATE_MEASURE) if split == "val" else None


def _score_fitted_splits(cell: CellState, lineage: Lineage, li: int) -> _Pending:
    """Train and validation of one method, and its test probabilities (not yet scored)."""
    if all(d.extras is None for d in lineage.derived) and len(cell.rows("train")):
        _score_train(cell, lineage, li)
    else:
        _score_split(cell, lineage, li, 0, _predict(cell, lineage, cell.rows("train")), None)
    gate_values = _score_split(cell, lineage, li, 1, _predict(cell, lineage, cell.rows("val")),
                               None)
    return _Pending(_predict(cell, lineage, cell.rows("test")), gate_values)


def score_lineages(ds: Dataset, split: Split, lineages: Sequence[Lineage],
                   x: torch.Tensor | list[torch.Tensor], *,
                   settings: BacktestSettings, seed: int, fold: int,
                   predictions: FrameWriter, curves: FrameWriter) -> CellScores:
    """Score every fitted method of one cell (see the module docstring).

    Args:
        ds / split: the cell's dataset and split.
        x: the (R, F) inputs, or a one-element list holding them: the list is emptied once
            every split is predicted, so the inputs are freed (if nothing else holds them)
            before the test split, the heaviest part, is scored. Test rows are predicted
            for every method first, then scored method by method.
        lineages: the fitted methods, in config order.
        settings: calibration, costs, sizing, gate and annualisation.
        seed / fold: the cell (seeds the random baselines).
        predictions / curves: where the val / test prediction rows and the test backtest
            rows go.

    Returns:
        Records (train, val, test per output in the order split, method, output; then
        gated outputs, then the baselines), disagreement summaries, the cell's evidence
        and the fitted temperatures by (method, member label).
    """
    base = {"seed": seed, "fold": fold}
    cell = CellState(ds, split, x[0] if isinstance(x, list) else x, settings, base,
                 int(np.random.SeedSequence([seed, fold]).generate_state(1)[0]),
                 predictions, curves, CellEvidence(fold, seed),
                 any(lin.disagreement and len(lin.members) > 1 for lin in lineages))
    pending = [_score_fitted_splits(cell, lineage, li) for li, lineage in enumerate(lineages)]
    cell.x = None  # every prediction is made: the inputs go before the heaviest part
    if isinstance(x, list):
        x.clear()  # the caller handed them over
    for li, lineage in enumerate(lineages):
        todo = pending[li]
        pending[li] = _Pending([], None)  # its probabilities go once scored
        _score_split(cell, lineage, li, 2, todo.member_probs, todo.gate_values)
        del todo
        cell.evidence.finish()  # its members' sums become flags now, not at the end
    records = [cell.records[k] for k in sorted(cell.records)] + cell.gated
    if cell.reference is not None:
        baselines = baseline_results(cell)
        records += [{"method": name, "generation": None, "split": "test", **base,
                     **baselines[name].metrics} for name in _BASELINES]
        for name in _BASELINES:
            write_curve(cell, name, "-", baselines[name], None)
            cell.evidence.add_trades((name, "-"), cell.test_times(), baselines[name].net)
    uncertainty = [u for k in sorted(cell.uncertainty) for u in cell.uncertainty[k]]
    return CellScores(records, uncertainty, cell.evidence.finish(), dict(cell.temperatures))

"""One fold x seed cell: fit every method, then score it (temperature, backtest).

:func:`run_cell` runs :func:`selfdistill.evaluation.fold.run_fold` on the cell's split
and seed, scores it with :func:`score_cell` and, in the cell that keeps its models,
saves them into the run directory (:func:`selfdistill.rundir.write.save_lineage_models`).

:func:`score_cell` takes what ``run_fold`` returns for one cell: its metrics records
and its validation / test predictions. Every output (a member or a derived row of a
method) gets

* a temperature fitted on its **validation** rows only and applied to its
  validation and test rows: ``temperature``, ``nll_calibrated``,
  ``ece_calibrated`` and ``brier_calibrated`` join its records;
* a backtest on its **test** rows (positions from the calibrated
  probabilities when calibration is on, so confidence sizing uses calibrated
  confidence; the argmax is the same either way): the trading metrics of
  :func:`selfdistill.evaluation.backtest.trading_metrics` join its test record, plus
  ``random_sharpe`` / ``random_total_return`` of random timing with exactly its
  own turnover (the per-bar ``random_net`` joins its curve). With
  ``backtest.uncertainty_gate``, every output of a method whose members disagree
  (generations, snapshots) is backtested a second time, flat where the test
  mutual information is above that quantile of the *validation* one, as an output
  of its own, ``<method>+gate``: a gated strategy is compared only with the same
  strategy ungated, never with another model (like for like).

Baseline rows ``buy_and_hold``, ``always_flat`` and ``random`` (random timing
with the turnover of the hard-label ``baseline``, or of the first output) are
added as test records, and every backtest's per-decision series is returned
for the equity and drawdown curves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from selfdistill.config import RunConfig
from selfdistill.evaluation.backtest import (
    BacktestResult,
    backtest_with_baselines,
    disagreement_gate,
    holding_returns,
    positions_from_proba,
)
from selfdistill.evaluation.calibration import apply_temperature, fit_temperature, logits_from_proba
from selfdistill.evaluation.fold import Dataset, FoldResult, member_name, run_fold
from selfdistill.evaluation.metrics import classification_metrics
from selfdistill.rundir.cellcache import CellParts
from selfdistill.rundir.write import model_metadata, save_lineage_models
from selfdistill.splits import Split
from selfdistill.training.callbacks import Callback

__all__ = ["GATED", "GATE_MEASURE", "BacktestSettings", "Cell", "CellResult", "CellScores",
           "run_cell", "score_cell"]

log = logging.getLogger(__name__)

#: The disagreement measure the uncertainty gate thresholds.
GATE_MEASURE = "mutual_information"
#: Suffix of a gated strategy's output name (``born_again+gate``).
GATED = "+gate"
_CALIBRATED = ("nll", "ece", "brier")
_OUTPUT = ["split", "method", "member"]


@dataclass(frozen=True)
class BacktestSettings:
    """What a cell's backtest needs besides the predictions."""

    enabled: bool
    fee_bps: float
    slippage_bps: float
    allow_short: bool
    sizing: Literal["fixed", "confidence"]
    uncertainty_gate: float | None
    periods_per_year: float
    calibrate: bool = True


@dataclass
class CellScores:
    """The cell's records (extended), predictions (with ``temperature``) and curves."""

    records: list[dict[str, Any]]
    predictions: pd.DataFrame
    curves: pd.DataFrame


def _proba(frame: pd.DataFrame, class_names: tuple[str, ...]) -> np.ndarray:
    return frame[[f"p_{c}" for c in class_names]].to_numpy(dtype=np.float64)  # (N, C)


def _pair_outputs(records: list[dict[str, Any]], predictions: pd.DataFrame
                  ) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Each val / test record with its prediction rows (both come in output order)."""
    recs = [r for r in records if r["split"] in ("val", "test")]
    groups = [g for _, g in predictions.groupby(_OUTPUT, sort=False)]
    if len(recs) != len(groups):
        raise AssertionError(f"{len(recs)} val/test records but {len(groups)} prediction groups")
    for rec, g in zip(recs, groups, strict=True):
        first = g.iloc[0]
        assert (rec["method"], rec["split"]) == (first["method"], first["split"])
        assert rec["n"] == len(g), "records and predictions disagree on rows"
    return list(zip(recs, groups, strict=True))


def _calibrate(pairs: list[tuple[dict[str, Any], pd.DataFrame]], predictions: pd.DataFrame,
               class_names: tuple[str, ...]) -> dict[tuple[str, str], float]:
    """Fit T per output on its validation rows; add calibrated metrics to val / test records."""
    temps: dict[tuple[str, str], float] = {}
    for rec, g in pairs:  # validation comes first in output order
        key = (rec["method"], g["member"].iloc[0])
        if rec["split"] == "val":
            temps[key] = fit_temperature(logits_from_proba(_proba(g, class_names)),
                                         g["label"].to_numpy())
        t = temps[key]
        calibrated = apply_temperature(logits_from_proba(_proba(g, class_names)), t)
        scores = classification_metrics(g["label"].to_numpy(), calibrated,
                                        n_classes=len(class_names))
        rec["temperature"] = t
        rec.update({f"{m}_calibrated": scores[m] for m in _CALIBRATED})
        predictions.loc[g.index, "temperature"] = t
    return temps


def _curve(table: dict[str, BacktestResult], times: pd.Index, rets: np.ndarray, method: str,
           member: str) -> pd.DataFrame:
    """Per-decision series of a model's backtest, with its own random-timing twin."""
    model = table["model"]
    return pd.DataFrame({"open_time": times, "method": method, "member": member,
                         "position": model.positions, "asset_return": rets,
                         "net": model.net, "random_net": table["random"].net})


def _baseline_curve(result: BacktestResult, times: pd.Index, rets: np.ndarray,
                    name: str) -> pd.DataFrame:
    return pd.DataFrame({"open_time": times, "method": name, "member": "-",
                         "position": result.positions, "asset_return": rets,
                         "net": result.net, "random_net": np.nan})


def _gate(predictions: pd.DataFrame, method: str, test: pd.DataFrame,
          quantile: float | None) -> np.ndarray | None:
    if quantile is None or GATE_MEASURE not in test or test[GATE_MEASURE].isna().all():
        return None
    val = predictions[(predictions["split"] == "val") & (predictions["method"] == method)]
    val_values = val[GATE_MEASURE].dropna().to_numpy()
    if val_values.size == 0:
        return None
    return disagreement_gate(test[GATE_MEASURE].to_numpy(), val_values, quantile)


def _trading_fields(table: dict[str, BacktestResult]) -> dict[str, Any]:
    return {**table["model"].metrics, "random_sharpe": table["random"].metrics["sharpe"],
            "random_total_return": table["random"].metrics["total_return"]}


def _gated_record(rec: dict[str, Any], table: dict[str, BacktestResult], quantile: float
                  ) -> dict[str, Any]:
    """The gated strategy as an output of its own (``<method>+gate``): trading fields only,
    so it is compared with the same output ungated, never with another model."""
    keep = {k: v for k, v in rec.items()
            if k in ("generation", "split", "seed", "fold", "selected")
            or (k not in ("method", "n") and (v is None or isinstance(v, str)
                                              or type(v) is int))}
    return {"method": f"{rec['method']}{GATED}", **keep, "gate_quantile": quantile,
            **_trading_fields(table)}


def _backtest_outputs(pairs: list[tuple[dict[str, Any], pd.DataFrame]],
                      predictions: pd.DataFrame, opens: pd.Series,
                      settings: BacktestSettings, class_names: tuple[str, ...],
                      seed: int) -> tuple[list[pd.DataFrame], list[dict[str, Any]],
                                          dict[str, BacktestResult]]:
    """Backtest every test output ungated and, where the gate applies, gated too."""
    curves: list[pd.DataFrame] = []
    gated: list[dict[str, Any]] = []
    reference: dict[str, BacktestResult] = {}
    tests = [(rec, g) for rec, g in pairs if rec["split"] == "test"]
    if not tests:
        return curves, gated, reference
    times = pd.Index(tests[0][1]["open_time"])
    rets = holding_returns(opens, times)

    def backtest(proba: np.ndarray, gate: np.ndarray | None) -> dict[str, BacktestResult]:
        positions = positions_from_proba(proba, allow_short=settings.allow_short,
                                         sizing=settings.sizing, gate=gate)
        return backtest_with_baselines(
            positions, rets, fee_bps=settings.fee_bps, slippage_bps=settings.slippage_bps,
            periods_per_year=settings.periods_per_year, allow_short=settings.allow_short,
            seed=seed, times=times)

    for rec, g in tests:
        proba = _proba(g, class_names)
        if settings.calibrate and "temperature" in rec:
            proba = apply_temperature(logits_from_proba(proba), rec["temperature"])
        member = str(g["member"].iloc[0])
        table = backtest(proba, None)
        rec.update(_trading_fields(table))
        curves.append(_curve(table, times, rets, rec["method"], member))
        gate = _gate(predictions, rec["method"], g, settings.uncertainty_gate)
        if gate is not None and settings.uncertainty_gate is not None:
            gated_table = backtest(proba, gate)
            gated.append(_gated_record(rec, gated_table, settings.uncertainty_gate))
            curves.append(_curve(gated_table, times, rets, f"{rec['method']}{GATED}", member))
        if not reference or rec["method"] == "baseline":
            reference = table
    curves += [_baseline_curve(reference[name], times, rets, name)
               for name in ("buy_and_hold", "always_flat", "random")]
    return curves, gated, reference


def _baseline_records(reference: dict[str, BacktestResult], base: dict[str, Any]
                      ) -> list[dict[str, Any]]:
    return [{"method": name, "generation": None, "split": "test", **base,
             **reference[name].metrics} for name in ("buy_and_hold", "always_flat", "random")]


def score_cell(records: list[dict[str, Any]], predictions: pd.DataFrame, *,
               opens: pd.Series, settings: BacktestSettings,
               class_names: tuple[str, ...], seed: int, fold: int) -> CellScores:
    """Calibrate and backtest every output of one cell (see the module docstring).

    Args:
        records: the cell's records (train / val / test), extended in place.
        predictions: the cell's val / test rows (``run_fold``'s predictions).
        opens: open prices of every bar, indexed by open time.
        settings: costs, sizing, gate and annualisation.
        class_names: the label classes, in column order.
        seed / fold: the cell (seeds the random baseline).
    """
    predictions = predictions.copy()
    predictions["temperature"] = np.nan
    pairs = _pair_outputs(records, predictions)
    if settings.calibrate:
        _calibrate(pairs, predictions, class_names)
    curves: list[pd.DataFrame] = []
    out = list(records)
    if settings.enabled:
        rng_seed = int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])
        curves, gated, reference = _backtest_outputs(pairs, predictions, opens, settings,
                                                     class_names, rng_seed)
        out += gated
        if reference:
            out += _baseline_records(reference, {"seed": seed, "fold": fold})
    frame = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    if len(frame):
        frame["seed"], frame["fold"] = seed, fold
    return CellScores(out, predictions, frame)


# ------------------------------------------------------------------ one cell


@dataclass(frozen=True)
class Cell:
    """One unit of work: every method on one split with one seed."""

    fold: int
    seed: int
    split: Split
    save_models: bool = False


#: One finished cell: its records, predictions, uncertainty, backtest curves and timings.
#: The run directory's cell cache stores exactly these fields, so it is the same class.
CellResult = CellParts


def run_cell(ds: Dataset, cell: Cell, cfg: RunConfig, *, settings: BacktestSettings,
             run_dir: Path | None = None, callbacks: Sequence[Callback] = ()) -> CellResult:
    """Fit, evaluate, calibrate and backtest every method on one cell."""
    t0 = time.perf_counter()
    result = run_fold(ds, cell.split, cfg, seed=cell.seed, fold=cell.fold, callbacks=callbacks)
    scores = score_cell(result.records, result.predictions, opens=ds.candles["open"],
                        settings=settings, class_names=tuple(ds.labels.class_names),
                        seed=cell.seed, fold=cell.fold)
    if cell.save_models and run_dir is not None:
        _save_models(run_dir, ds, cfg, result, _temperatures(scores.predictions))
    return CellResult(cell.fold, cell.seed, scores.records, scores.predictions,
                      result.uncertainty, scores.curves, result.timings,
                      time.perf_counter() - t0)


def _temperatures(predictions: Any) -> dict[tuple[str, str], float]:
    """(method, member) -> the temperature fitted on its validation rows (if any)."""
    if "temperature" not in predictions.columns:
        return {}
    firsts = predictions.groupby(["method", "member"], sort=False)["temperature"].first()
    return {key: float(t) for key, t in firsts.items() if t == t}  # t == t drops NaN


def _save_models(run_dir: Path, ds: Dataset, cfg: RunConfig, result: FoldResult,
                 temperatures: dict[tuple[str, str], float]) -> None:
    """Every lineage as a model directory; its selected member's calibration goes along."""
    common = model_metadata(cfg, scaler=result.scaler.to_dict(),
                            feature_names=list(ds.feature_names),
                            class_names=list(ds.labels.class_names), interval=ds.interval,
                            gaps=ds.candles.attrs.get("gap_policy"),
                            time_format=ds.candles.attrs.get("time_format"))
    for lineage in result.lineages:
        chosen = member_name(lineage.members[lineage.selected].keys)
        save_lineage_models(run_dir, lineage, common,
                            temperature=temperatures.get((lineage.method, chosen), 1.0))

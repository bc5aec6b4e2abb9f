"""Evaluation: from a config to scored, compared results.

::

    fold.py        one split x one seed: dataset -> every method -> records, predictions
    cell.py        one cell: fit every method (run_fold), then score it (scoring.py)
    experiment.py  folds x seeds in a process pool, summarised in memory, then
                   written by selfdistill.rundir (the one writer)
    summary.py     a run's statistics: aggregates, comparisons, error flags, findings
    aggregate.py   per-cell records -> aggregates (t over folds); the run's comparisons
    evidence.py    per-bar scores and returns of every output, paired by bar
    statistics.py  the verdict engine: per-bar paired tests (EWC long-run variance),
                   fold intervals, Holm / BH adjustment, verdict words   (no torch)
    ranking.py     AUROC with intervals for dependent bars               (no torch)
    nullsim.py     simulations of the engine under the null (tests, benchmarks)
    error_flags.py does disagreement flag errors, better than 1 - max probability?
    findings.py    the four questions, answered (findings_text.py: the words)
    metrics.py  calibration.py  uncertainty.py  backtest.py   (NumPy; no torch)
    pretrain_compare.py   does EMA-teacher pretraining help (probes, few labels)

``from selfdistill.evaluation import run_experiment`` is the entry point. The names in
``__all__`` are imported on first use (PEP 562), so ``import selfdistill.evaluation.metrics``
stays light (no torch, no methods).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selfdistill.evaluation.cell import Cell, CellResult, run_cell
    from selfdistill.evaluation.experiment import (
        ExperimentCallback,
        ExperimentResult,
        backtest_settings,
        experiment_seeds,
        plan_cells,
        plan_splits,
        run_experiment,
        summarise,
    )

__all__ = [
    "Cell",
    "CellResult",
    "ExperimentCallback",
    "ExperimentResult",
    "backtest_settings",
    "experiment_seeds",
    "plan_cells",
    "plan_splits",
    "run_cell",
    "run_experiment",
    "summarise",
]

_FROM_CELL = frozenset({"Cell", "CellResult", "run_cell"})


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'selfdistill.evaluation' has no attribute {name!r}")
    # imported on first use: these load torch and the methods
    from selfdistill.evaluation import cell, experiment

    return getattr(cell if name in _FROM_CELL else experiment, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

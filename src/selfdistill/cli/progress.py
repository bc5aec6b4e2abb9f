"""Rich progress and result tables for the CLI (the library itself never prints)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from selfdistill.training.callbacks import ExperimentCallback

__all__ = ["PlainProgress", "ProgressCallback", "console", "findings_lines", "progress_callback",
           "results_table"]

console = Console(stderr=True)
stdout = Console(width=None if Console().is_terminal else 200)

_SHOWN_KEYS = ("generation", "exit", "snapshot")
_METRICS = ("accuracy", "macro_f1", "nll", "ece")
_SHORT = {"accuracy": "acc", "macro_f1": "F1", "nll": "NLL", "ece": "ECE"}


def _shown_metrics(aggregated: bool) -> list[tuple[str, str]]:
    """(split, metric) columns: all four on val and test, or, with intervals
    (which are wide), validation NLL (what selection uses) and the test metrics."""
    if aggregated:
        return [("val", "nll")] + [("test", k) for k in _METRICS]
    return [(split, k) for split in ("val", "test") for k in _METRICS]


class ProgressCallback(ExperimentCallback):
    """A bar over the experiment's cells and one for the training call in progress."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._cells: Any = None
        self._fit: Any = None

    @classmethod
    def make_progress(cls) -> Progress:
        return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                        transient=True, disable=not console.is_terminal)  # no bars in logs

    def on_experiment_begin(self, n_cells: int, workers: int) -> None:
        what = f"{n_cells} cell{'s' if n_cells > 1 else ''} (fold x seed)"
        self._cells = self.progress.add_task(what, total=n_cells,
                                             info=f"{workers} worker{'s' * (workers > 1)}")

    def on_cell_end(self, done: int, total: int, info: dict[str, Any]) -> None:
        acc = info.get("baseline_test_accuracy")  # the key the experiment sends
        shown = f"fold {info.get('fold')} seed {info.get('seed')}"
        if isinstance(acc, float):
            shown += f": baseline test acc {acc:.3f}"
        self.progress.update(self._cells, completed=done, info=shown)

    def on_fit_begin(self, label: str, epochs: int) -> None:
        if self._fit is None:
            self._fit = self.progress.add_task(label, total=epochs, info="")
        else:
            self.progress.reset(self._fit, total=epochs, description=label, info="")

    def on_epoch_end(self, label: str, record: dict[str, float]) -> None:
        self.progress.update(self._fit, advance=1,
                             info=f"val loss {record.get('val_loss', float('nan')):.4f}")

    def on_fit_end(self, label: str, history: list[dict[str, float]]) -> None:
        self.progress.update(self._fit, total=len(history), completed=len(history))


# ------------------------------------------------- progress without a terminal (CI, nohup)

#: Seconds between two plain progress lines about training (cells always get one).
PLAIN_EVERY = 10.0


class PlainProgress(ExperimentCallback):
    """Plain progress lines on stderr when it is not a terminal (CI, nohup, a log file).

    Every finished cell gets a line; training (generation / epoch) gets one at most every
    ``every`` seconds, so a log shows the run is alive without flooding it.
    """

    def __init__(self, every: float = PLAIN_EVERY, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.stream, self.clock = every, stream, clock
        self._start = self._last = clock()
        self._epochs: dict[str, int] = {}

    def _line(self, text: str) -> None:
        elapsed = self.clock() - self._start
        print(f"[{elapsed:7.1f} s] {text}", file=self.stream or sys.stderr, flush=True)
        self._last = self.clock()

    def on_experiment_begin(self, n_cells: int, workers: int) -> None:
        self._line(f"run: {n_cells} cell{'s' * (n_cells > 1)} (fold x seed) on {workers} "
                   f"worker{'s' * (workers > 1)}")

    def on_cell_end(self, done: int, total: int, info: dict[str, Any]) -> None:
        acc = info.get("baseline_test_accuracy", info.get("test_accuracy"))
        shown = f": baseline test acc {acc:.3f}" if isinstance(acc, float) else ""
        self._line(f"cells {done}/{total} done (fold {info.get('fold')} seed "
                   f"{info.get('seed')}{shown})")

    def on_fit_begin(self, label: str, epochs: int) -> None:
        self._epochs[label] = epochs

    def on_epoch_end(self, label: str, record: dict[str, float]) -> None:
        if self.clock() - self._last < self.every:
            return
        epoch = int(record["epoch"]) if "epoch" in record else "?"  # 1-based in the history
        loss = record.get("val_loss", float("nan"))
        self._line(f"{label}: epoch {epoch}/{self._epochs.get(label, '?')}, "
                   f"val loss {loss:.4f}")

    def on_fit_end(self, label: str, history: list[dict[str, float]]) -> None:
        if self.clock() - self._last >= self.every:
            self._line(f"{label}: done after {len(history)} epochs")


def progress_callback(progress: Progress) -> ExperimentCallback:
    """The rich bars when stderr is a terminal, plain periodic lines otherwise."""
    return ProgressCallback(progress) if console.is_terminal else PlainProgress()


def _member(rec: dict[str, Any]) -> str:
    return ", ".join(f"{k}={rec[k]}" for k in _SHOWN_KEYS if rec.get(k) is not None)


def _cell(value: Any) -> str:
    """A metric as text: a number; for aggregates mean ± half the 95% interval when the
    interval is symmetric (Student t over folds), else mean [low, high]."""
    if isinstance(value, dict):
        mean, lo, hi = value.get("mean"), value.get("ci_low"), value.get("ci_high")
        if mean is None:
            return "-"
        if lo is None or hi is None:
            return f"{mean:.3f}"
        if abs((hi - mean) - (mean - lo)) <= 1e-9 * max(1.0, abs(mean)):
            return f"{mean:.3f}±{(hi - mean):.3f}"
        return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
    return "-" if value is None else f"{value:.3f}"


_SIGNS = {"better": "+", "worse": "-", "no significant difference": "=", "not testable": "?"}


def _verdicts(comparisons: list[dict[str, Any]], metric: str) -> dict[tuple[str, str], str]:
    """Verdict of each (method, member) against the hard-label baseline on ``metric``,
    with its adjusted p-value: '+ p=0.003', '= p=0.41', '? (why)'."""
    out = {}
    for c in comparisons:
        if c.get("kind") == "vs_baseline" and c.get("metric") == metric:
            member = "" if c["candidate"] == "-" else c["candidate"].replace(",", ", ")
            sign = _SIGNS.get(c.get("verdict") or "", "?")
            p = c.get("p_adjusted")
            out[(c["method"], member)] = f"{sign} p={p:.2g}" if p is not None else sign
    return out


def findings_lines(metrics: dict[str, Any]) -> list[str]:
    """The findings block for the terminal: four answers, the overall line, warnings."""
    block = metrics.get("findings") or {}
    lines = [f"{i}. {q['question']} {q['answer'].upper()}: {q['why']}"
             for i, q in enumerate(block.get("questions", []), start=1)]
    if block.get("overall"):
        lines.append(block["overall"])
    lines += [f"warning: {w}" for w in block.get("warnings", [])]
    return lines


def results_table(metrics: dict[str, Any], *, title: str) -> Table:
    """One row per method / member: val and test accuracy, macro-F1, NLL, ECE.

    With several cells (folds x seeds) the cells show the mean and its 95% interval
    over folds; a column gives the paired per-bar verdict against ``baseline`` on the
    findings' primary metric (adjusted p-value), for one cell too.
    """
    records = metrics["records"]
    aggregated = any(r.get("aggregate") and r.get("cells", 1) > 1 for r in records)
    by_key: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for rec in records:
        if rec["split"] == "train" or bool(rec.get("aggregate")) != aggregated:
            continue
        if not aggregated and rec.get("fold") not in (0, None):
            continue
        by_key.setdefault((rec["method"], _member(rec)), {})[rec["split"]] = rec
    primary = (metrics.get("findings") or {}).get("primary_metric", "accuracy")
    verdicts = _verdicts(metrics.get("comparisons", []), primary)
    has_truth = any("accuracy_true" in r for row in by_key.values() for r in row.values())
    has_sharpe = any("sharpe" in r for row in by_key.values() for r in row.values())
    table = Table(title=title, header_style="bold")
    table.add_column("method", no_wrap=True)
    table.add_column("member", no_wrap=True)
    shown = _shown_metrics(aggregated)
    for split, key in shown:
        table.add_column(f"{split} {_SHORT[key]}", justify="right", no_wrap=True)
    if has_truth:
        table.add_column("truth acc", justify="right", no_wrap=True)
    if has_sharpe:
        table.add_column("Sharpe", justify="right", no_wrap=True)
    if verdicts:
        table.add_column(f"vs baseline ({_SHORT.get(primary, primary)})", justify="left",
                         no_wrap=True)
    for (method, member), splits in by_key.items():
        if "val" not in splits and "test" not in splits:
            continue
        chosen = any(r.get("selected") is True for r in splits.values())
        cells = [method, member + (" *" if chosen else "")]
        cells += [_cell(splits.get(split, {}).get(k)) for split, k in shown]
        if has_truth:
            cells.append(_cell(splits.get("test", {}).get("accuracy_true")))
        if has_sharpe:
            cells.append(_cell(splits.get("test", {}).get("sharpe")))
        if verdicts:
            cells.append(verdicts.get((method, member), ""))
        table.add_row(*cells, style="bold" if chosen else None)
    notes = (["mean ± half the 95% interval: Student t over folds, seeds averaged per fold"]
             if aggregated else
             ["* chosen on validation NLL; test rows were not used for any choice"])
    if verdicts:
        notes.append("vs baseline: per-bar paired test on the test rows, + better, - worse, "
                     "= no significant difference, ? not testable; p adjusted over the run's "
                     "comparisons (evaluation.adjust)")
    if has_truth:
        notes.append("truth acc: test accuracy against the synthetic market's true regimes")
    if has_sharpe:
        notes.append("Sharpe: test rows, annualised, after fees and slippage")
    table.caption = "; ".join(notes)
    return table

"""Rich progress and result tables for the CLI (the library itself never prints)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from selfdistill.training.callbacks import ExperimentCallback

__all__ = ["ProgressCallback", "console", "results_table"]

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
        acc = info.get("test_accuracy")
        shown = f"fold {info.get('fold')} seed {info.get('seed')}"
        if isinstance(acc, float):
            shown += f": test acc {acc:.3f}"
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


def _member(rec: dict[str, Any]) -> str:
    return ", ".join(f"{k}={rec[k]}" for k in _SHOWN_KEYS if rec.get(k) is not None)


def _cell(value: Any) -> str:
    """A metric as text: plain number, or mean ± half the 95% interval for aggregates."""
    if isinstance(value, dict):
        mean, lo, hi = value.get("mean"), value.get("ci_low"), value.get("ci_high")
        if mean is None:
            return "-"
        if lo is None or hi is None or value.get("n", 1) < 2:
            return f"{mean:.3f}"
        return f"{mean:.3f}±{(hi - lo) / 2:.3f}"
    return "-" if value is None else f"{value:.3f}"


def _verdicts(comparisons: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Test-accuracy verdict of each (method, member) against the hard-label baseline."""
    short = {"better": "better", "worse": "worse", "no significant difference": "n.s."}
    out = {}
    for c in comparisons:
        if c.get("kind") == "vs_baseline" and c.get("metric") == "accuracy":
            member = "" if c["candidate"] == "-" else c["candidate"].replace(",", ", ")
            out[(c["method"], member)] = short.get(c.get("verdict") or "", "-")
    return out


def results_table(metrics: dict[str, Any], *, title: str) -> Table:
    """One row per method / member: val and test accuracy, macro-F1, NLL, ECE.

    With several cells (folds x seeds) the cells show mean ± half the 95% interval
    and a column gives the paired verdict on test accuracy against ``baseline``.
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
    verdicts = _verdicts(metrics.get("comparisons", [])) if aggregated else {}
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
        table.add_column("vs baseline", justify="center")
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
    notes = (["mean ± half the 95% bootstrap interval over folds x seeds",
              "verdict: paired bootstrap on test accuracy"] if aggregated else
             ["* chosen on validation NLL; test rows were not used for any choice"])
    if has_truth:
        notes.append("truth acc: test accuracy against the synthetic market's true regimes")
    if has_sharpe:
        notes.append("Sharpe: test rows, annualised, after fees and slippage")
    table.caption = "; ".join(notes)
    return table

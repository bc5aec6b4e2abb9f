"""Rich progress and result tables for the CLI (the library itself never prints)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from selfdistill.training.callbacks import Callback

__all__ = ["ProgressCallback", "console", "results_table"]

console = Console(stderr=True)
stdout = Console(width=max(Console().width, 132))


class ProgressCallback(Callback):
    """One bar per training call (generation, method), advancing per epoch."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._task: Any = None

    @classmethod
    def make_progress(cls) -> Progress:
        return Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                        transient=False)

    def on_fit_begin(self, label: str, epochs: int) -> None:
        self._task = self.progress.add_task(label, total=epochs, info="")

    def on_epoch_end(self, label: str, record: dict[str, float]) -> None:
        self.progress.update(self._task, advance=1,
                             info=f"val loss {record.get('val_loss', float('nan')):.4f}")

    def on_fit_end(self, label: str, history: list[dict[str, float]]) -> None:
        task = self.progress.tasks[-1]
        self.progress.update(self._task, total=task.completed)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _member(rec: dict[str, Any]) -> str:
    keys = [f"{k}={rec[k]}" for k in ("generation", "exit", "snapshot") if rec.get(k) is not None]
    return ", ".join(keys)


def results_table(records: Iterable[dict[str, Any]], *, title: str) -> Table:
    """One row per method / member with val and test accuracy, macro-F1, NLL, ECE."""
    by_key: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for rec in records:
        if rec.get("fold") not in (0, None) or rec["split"] == "train":
            continue
        by_key.setdefault((rec["method"], _member(rec)), {})[rec["split"]] = rec
    has_truth = any("accuracy_true" in r for row in by_key.values() for r in row.values())
    table = Table(title=title, header_style="bold")
    table.add_column("method", no_wrap=True)
    table.add_column("member", no_wrap=True)
    for split in ("val", "test"):
        for name in ("acc", "F1", "NLL", "ECE"):
            table.add_column(f"{split} {name}", justify="right")
    if has_truth:
        table.add_column("test acc (truth)", justify="right")
    for (method, member), splits in by_key.items():
        chosen = any(r.get("selected") for r in splits.values())
        cells = [method, member + (" *" if chosen else "")]
        for split in ("val", "test"):
            r = splits.get(split, {})
            cells += [_fmt(r.get(k)) for k in ("accuracy", "macro_f1", "nll", "ece")]
        if has_truth:
            cells.append(_fmt(splits.get("test", {}).get("accuracy_true")))
        table.add_row(*cells, style="bold" if chosen else None)
    table.caption = "* chosen on validation NLL; test rows were not used for any choice"
    return table

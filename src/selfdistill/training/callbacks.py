"""Training callbacks (torch-free, so the CLI can import them without torch)."""

from __future__ import annotations

from typing import Any

__all__ = ["Callback", "ExperimentCallback"]


class Callback:
    """Hooks the loop calls; the CLI turns them into a progress bar. No-ops by default."""

    def on_fit_begin(self, label: str, epochs: int) -> None:
        """A call to :func:`fit` starts; ``label`` names it (e.g. "born_again gen 2")."""

    def on_epoch_end(self, label: str, record: dict[str, float]) -> None:
        """An epoch finished; ``record`` is its history row."""

    def on_fit_end(self, label: str, history: list[dict[str, float]]) -> None:
        """A call to :func:`fit` ended (early stop included)."""


class ExperimentCallback(Callback):
    """Progress of a whole experiment (cells finish in any order when parallel)."""

    def on_experiment_begin(self, n_cells: int, workers: int) -> None:
        """The experiment starts ``n_cells`` cells on ``workers`` processes."""

    def on_cell_end(self, done: int, total: int, info: dict[str, Any]) -> None:
        """A cell finished; ``info`` has its fold, seed, seconds and test accuracy."""

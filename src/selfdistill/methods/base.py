"""What every method consumes and produces.

A method is ``fit(data, cfg, *, seed, callbacks) -> Lineage``. A
:class:`Lineage` holds one or more fitted :class:`Member` models (Born-Again
generations, BYOT exits, snapshots) plus :class:`Derived` rows (ensembles,
early exit) computed from the members' probabilities. Evaluation, uncertainty
and the run directory treat every method alike through this type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from selfdistill.config import RunConfig
from selfdistill.nn.multi_exit import ExitSelect
from selfdistill.training.loop import Callback, predict_logits, probabilities

__all__ = ["Derived", "Lineage", "Member", "Method", "TrainData"]


@dataclass
class TrainData:
    """Everything a method may train on. Test rows are deliberately absent.

    Attributes:
        x: (N, F) scaled features, or (N, F, W) strided window views; row i is bar i
            of the labelled dataset. Batches are ``x[rows]``.
        y: (N,) int64 labels, 0 = bull, 1 = bear, 2 = sideways.
        train_rows / val_rows: int64 indices into ``x``.
        unlabeled_rows: rows a self-supervised method may use without labels
            (training bars only; never validation or test).
        positions: (N,) int64 bar position of each row in the candles (``LabelSet.start``),
            or None when unknown; a jump of more than one bar between consecutive rows
            marks dropped bars (a gap), where a sequence model starts a new sequence.
    """

    x: Tensor
    y: Tensor
    train_rows: Tensor
    val_rows: Tensor
    n_classes: int = 3
    class_names: tuple[str, ...] = ("bull", "bear", "sideways")
    feature_names: tuple[str, ...] = ()
    unlabeled_rows: Tensor | None = None
    positions: Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])


@dataclass
class Member:
    """One fitted model of a lineage.

    Attributes:
        keys: what identifies it in metrics, e.g. ``{"generation": 2}``,
            ``{"exit": 1}``, ``{"snapshot": 3, "cycle": 3}``.
        model: the network. ``output`` picks one output of a multi-exit network
            whose ``forward`` returns a sequence of logits (None: plain logits).
        history: per-epoch records of its training.
    """

    keys: dict[str, Any]
    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    output: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def logits(self, x: Tensor, rows: Tensor | None = None) -> Tensor:
        """(B, C) logits of this member for ``x[rows]``.

        A ``sequential`` model (the causal HMM) reads the rows of ``x`` as one time
        series, row t from rows <= t: it runs once over every row of ``x`` and the
        requested rows are picked from that, so a row's output never depends on the
        batch or on which other rows were asked for.
        """
        if getattr(self.model, "sequential", False):
            with torch.no_grad():
                out: Tensor = self.model.eval()(x)  # (N, C), all rows in time order
            return out if rows is None else out[rows]
        if self.output is None:
            return predict_logits(self.model, x, rows)
        return predict_logits(ExitSelect(self.model, self.output), x, rows)

    def predict_proba(self, x: Tensor, rows: Tensor | None = None) -> np.ndarray:
        """(B, C) float64 class probabilities."""
        return probabilities(self.logits(x, rows))


@dataclass
class Derived:
    """A row computed from member probabilities (an ensemble, early exit, ...).

    ``combine`` maps the list of member probability arrays, each (B, C), to (B, C).
    ``extras`` (optional) maps the same arrays to extra record fields, e.g. the
    share of samples leaving at each exit for an early-exit row.
    """

    method: str
    keys: dict[str, Any]
    combine: Callable[[Sequence[np.ndarray]], np.ndarray]
    extras: Callable[[Sequence[np.ndarray]], dict[str, Any]] | None = None


@dataclass
class Lineage:
    """A method's fitted models, the one chosen on validation, and derived rows."""

    method: str
    members: list[Member]
    selected: int = 0
    derived: list[Derived] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    #: whether disagreement between members measures uncertainty (generations, snapshots)
    disagreement: bool = False


class Method(Protocol):
    def __call__(self, data: TrainData, cfg: RunConfig, *, seed: int,
                 callbacks: Sequence[Callback] = ()) -> Lineage: ...

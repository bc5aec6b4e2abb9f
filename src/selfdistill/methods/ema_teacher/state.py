"""The state of an EMA-teacher pretraining run: everything a checkpoint must hold to resume.

Its own module so that :mod:`~selfdistill.methods.ema_teacher.checkpoint` (which saves
and restores it) and :mod:`~selfdistill.methods.ema_teacher.pretraining` (which
advances it) both import it, and neither imports the other's user.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from selfdistill.losses.contrastive import KeyQueue
from selfdistill.methods.ema_teacher.networks import PretrainNetwork
from selfdistill.nn.heads import MultiHead

__all__ = ["PretrainState"]


@dataclass
class PretrainState:
    """Everything a pretraining run changes; all of it goes into the checkpoint."""

    student: PretrainNetwork
    teacher: PretrainNetwork
    predictors: MultiHead | None  # BYOL's, one per consistency head
    dino: nn.ModuleList | None  # one DINOLoss (with its center) per head
    online: nn.ModuleDict  # student-only heads of the other objectives (contrastive, masked)
    queue: KeyQueue | None  # contrastive negatives
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # batches and augmentations
    steps_per_epoch: int
    total_steps: int
    step: int = 0
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def trained(self) -> nn.ModuleList:
        """The trained modules: student, predictors and online heads (never the teacher)."""
        return nn.ModuleList([self.student, *([self.predictors] if self.predictors else []),
                              self.online])

"""Pure loss functions, one module per family; shapes in each docstring."""

from __future__ import annotations

from selfdistill.losses.distillation import (
    FusedDistillation,
    distillation_loss,
    fused_distillation_loss,
    kd_kl,
    soft_targets,
)

__all__ = [
    "FusedDistillation",
    "distillation_loss",
    "fused_distillation_loss",
    "kd_kl",
    "soft_targets",
]

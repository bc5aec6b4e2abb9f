"""Pure loss functions, one module per family; shapes in each docstring."""

from __future__ import annotations

from selfdistill.losses.byot import ByotTerms, byot_loss, byot_terms
from selfdistill.losses.consistency import (
    DINOLoss,
    byol_loss,
    consistency,
    cosine_distance,
    dino_loss,
    kl_consistency,
    l2_normalised,
)
from selfdistill.losses.distillation import (
    DistillationTargets,
    distillation_loss,
    fused_distillation_loss,
    kd_kl,
    soft_targets,
)

__all__ = [
    "ByotTerms",
    "DINOLoss",
    "DistillationTargets",
    "byol_loss",
    "byot_loss",
    "byot_terms",
    "consistency",
    "cosine_distance",
    "dino_loss",
    "distillation_loss",
    "fused_distillation_loss",
    "kd_kl",
    "kl_consistency",
    "l2_normalised",
    "soft_targets",
]

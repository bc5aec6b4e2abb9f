"""Pure loss functions, one module per family; shapes in each docstring."""

from __future__ import annotations

from selfdistill.losses.byot import ByotTerms, byot_loss, byot_terms
from selfdistill.losses.clustering import cluster_usage, sinkhorn_knopp, swapped_prediction
from selfdistill.losses.consistency import (
    DINOLoss,
    byol_loss,
    consistency,
    cosine_distance,
    dino_loss,
    kl_consistency,
    l2_normalised,
)
from selfdistill.losses.contrastive import KeyQueue, info_nce, moco_loss
from selfdistill.losses.distillation import (
    DistillationTargets,
    distillation_loss,
    fused_distillation_loss,
    kd_kl,
    soft_targets,
)
from selfdistill.losses.masked import masked_prediction_loss, normalised_targets

__all__ = [
    "ByotTerms",
    "DINOLoss",
    "DistillationTargets",
    "KeyQueue",
    "byol_loss",
    "byot_loss",
    "byot_terms",
    "cluster_usage",
    "consistency",
    "cosine_distance",
    "dino_loss",
    "distillation_loss",
    "fused_distillation_loss",
    "info_nce",
    "kd_kl",
    "kl_consistency",
    "l2_normalised",
    "masked_prediction_loss",
    "moco_loss",
    "normalised_targets",
    "sinkhorn_knopp",
    "soft_targets",
    "swapped_prediction",
]

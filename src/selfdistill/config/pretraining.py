"""The ``ema_teacher`` section: self-supervised EMA-teacher pretraining and its views.

Objectives (consistency, masked, contrastive, clustering) with their weights, the
form (BYOL / DINO), the augmentations of a window, and the ranges the literature
recommends (outside them a :class:`HyperparameterWarning`, not an error).
:mod:`selfdistill.config.sections` re-exports every name here.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from selfdistill.config.types import PositiveFloat, PositiveInt, Probability, Section

__all__ = ["EMA_TEACHER_RANGES", "OBJECTIVES", "AugmentConfig", "EmaTeacherConfig",
           "HyperparameterWarning", "Objective", "ObjectiveWeights"]


class AugmentConfig(Section):
    """Views of a window for ``ema_teacher`` pretraining; 0 (crop_min 1) turns one off."""

    jitter: Annotated[float, Field(ge=0.0)] = 0.05  # std of additive noise (scaled units)
    scaling: Annotated[float, Field(ge=0.0)] = 0.1  # std of a per-feature factor around 1
    magnitude_warp: Annotated[float, Field(ge=0.0)] = 0.1  # std of a smooth factor curve
    warp_knots: PositiveInt = 4
    time_mask: Probability = 0.1  # largest fraction of the window masked to 0
    crop_min: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8  # smallest crop, fraction of W


#: The ema_teacher objectives; ``objective`` weights any combination of them.
OBJECTIVES = ("consistency", "masked", "contrastive", "clustering")
Objective = Literal["consistency", "masked", "contrastive", "clustering"]

#: Where the self-distillation literature puts these ema_teacher settings; outside, a
#: HyperparameterWarning (not an error). Keys name fields; "objective" is each weight.
EMA_TEACHER_RANGES: dict[str, tuple[float, float]] = {
    "tau_base": (0.99, 0.9999), "lr": (1e-4, 1e-3), "student_temperature": (0.1, 1.0),
    "contrastive_temperature": (0.1, 1.0), "objective": (0.5, 2.0)}


class HyperparameterWarning(UserWarning):
    """A setting is valid but outside the range the literature recommends."""


def _objective_weights(value: object) -> object:
    return {value: 1.0} if isinstance(value, str) else value  # "masked" -> {masked: 1.0}


def _consistency_only() -> dict[Objective, float]:
    return {"consistency": 1.0}


#: ``masked`` (weight 1) or a mapping of objectives to weights, ``{consistency: 1, masked: 0.5}``
ObjectiveWeights = Annotated[dict[Objective, PositiveFloat], BeforeValidator(_objective_weights),
                             Field(min_length=1)]


class EmaTeacherConfig(Section):
    """Self-supervised EMA-teacher pretraining (BYOL / DINO forms) and its comparison."""

    form: Literal["byol", "dino"] = "byol"
    #: consistency (the form's loss) | masked | contrastive | clustering, or weights of several
    objective: ObjectiveWeights = Field(default_factory=_consistency_only)
    #: objectives `selfdistill pretrain` compares (besides ``objective``); [] = objective only
    compare_objectives: list[ObjectiveWeights] = Field(default_factory=list)
    #: both: probe and fine-tune the student and the teacher encoder of each objective;
    #: downstream: probe both, fine-tune only the one ``encoder`` picks (cheaper)
    compare_encoders: Literal["both", "downstream"] = "both"
    mask_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.3  # masked: bars masked per window
    masked_loss: Literal["l2", "smooth_l1"] = "l2"
    queue_size: PositiveInt = 1024  # contrastive: negatives kept from earlier batches
    contrastive_temperature: PositiveFloat = 0.2
    sinkhorn_epsilon: PositiveFloat = 0.05  # clustering: entropic regularisation
    sinkhorn_iterations: PositiveInt = 3
    accumulation_steps: PositiveInt = 1  # micro-batches per optimizer step (batch_size / k each)
    activation_checkpointing: bool = False  # recompute encoder blocks in backward (less memory)
    divergence: Literal["l2", "kl", "cosine"] = "cosine"
    tau_base: Annotated[float, Field(ge=0.9, lt=1.0)] = 0.996
    heads: PositiveInt = 1
    projection_dim: PositiveInt = 64
    prototypes: PositiveInt = 64
    student_temperature: PositiveFloat = 0.1
    teacher_temperature: PositiveFloat = 0.04
    teacher_temperature_final: PositiveFloat = 0.07
    teacher_temperature_warmup_epochs: Annotated[int, Field(ge=0)] = 5
    center_momentum: Probability = 0.9
    centering: bool = True
    epochs: PositiveInt = 20
    lr: PositiveFloat = 1e-3
    checkpoint: str | None = None  # start supervised methods from this pretrained encoder
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    batch_size: PositiveInt = 256
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4
    grad_clip: PositiveFloat | None = 3.0
    projection_hidden: PositiveInt = 128
    predictor_hidden: PositiveInt = 128
    bottleneck: PositiveInt = 32  # DINO head width before the prototypes
    head_norm: Literal["layer", "batch", "none"] = "layer"
    buffers: Literal["ema", "copy"] = "ema"  # teacher policy for normalisation buffers
    #: which encoder downstream uses; auto: student (online) for byol, teacher for dino
    encoder: Literal["auto", "teacher", "student"] = "auto"
    monitor_rows: PositiveInt = 1024  # fixed training windows for the collapse metrics
    label_fractions: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        default_factory=lambda: [0.05, 0.2, 1.0])  # labelled train rows in the comparison

    def downstream_encoder(self) -> Literal["teacher", "student"]:
        """``encoder`` with ``auto`` resolved: BYOL keeps the online encoder, DINO the teacher."""
        if self.encoder != "auto":
            return self.encoder
        return "student" if self.form == "byol" else "teacher"

    @model_validator(mode="after")
    def _recommended_ranges(self) -> EmaTeacherConfig:
        for key, (low, high) in EMA_TEACHER_RANGES.items():
            values = (self.objective if key == "objective"
                      else {key: getattr(self, key)})
            for name, value in values.items():
                if not low <= value <= high:
                    label = f"objective.{name}" if key == "objective" else key
                    # shown as "<config>:1: HyperparameterWarning: ...", not pydantic's frame
                    warnings.warn_explicit(
                        f"ema_teacher.{label} = {value:g} is outside the recommended range "
                        f"[{low:g}, {high:g}] (see docs/ema-teacher.md)",
                        HyperparameterWarning, "<config>", 1, module="selfdistill.config")
        if self.accumulation_steps > self.batch_size:
            raise ValueError(f"accumulation_steps ({self.accumulation_steps}) must be <= "
                             f"batch_size ({self.batch_size}): each micro-batch needs a window")
        return self

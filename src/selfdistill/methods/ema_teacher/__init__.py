"""The EMA-teacher method: self-supervised pretraining of a window encoder, then fine-tuning.

- :mod:`~selfdistill.methods.ema_teacher.pretraining`: the pretraining loop (BYOL / DINO
  forms; consistency, masked, contrastive and clustering objectives, gradient
  accumulation) and :func:`fit_ema_teacher`, the method a run calls;
- :mod:`~selfdistill.methods.ema_teacher.networks`: the student's encoder and heads;
- :mod:`~selfdistill.methods.ema_teacher.objectives`: one step's teacher targets,
  student terms and once-per-step updates;
- :mod:`~selfdistill.methods.ema_teacher.state`: :class:`PretrainState`, what a resume needs;
- :mod:`~selfdistill.methods.ema_teacher.checkpoint`: resumable checkpoints (safetensors +
  JSON) and loading a pretrained encoder;
- :mod:`~selfdistill.methods.ema_teacher.collapse`: representation-collapse metrics;
- :mod:`~selfdistill.methods.ema_teacher.monitor`: those metrics for each objective in use.

Whether pretraining helps (linear probes, fine-tuning with few labels) is measured by
:mod:`selfdistill.evaluation.pretrain_compare`.
"""

from __future__ import annotations

from selfdistill.methods.ema_teacher.checkpoint import (
    init_from_pretrained,
    load_pretrained_encoder,
)
from selfdistill.methods.ema_teacher.pretraining import (
    PretrainResult,
    build_state,
    fit_ema_teacher,
    objective_name,
    pretrain,
    pretrain_rows,
    windowed,
)
from selfdistill.methods.ema_teacher.state import PretrainState

__all__ = [
    "PretrainResult",
    "PretrainState",
    "build_state",
    "fit_ema_teacher",
    "init_from_pretrained",
    "load_pretrained_encoder",
    "objective_name",
    "pretrain",
    "pretrain_rows",
    "windowed",
]

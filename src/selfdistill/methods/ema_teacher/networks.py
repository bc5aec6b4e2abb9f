"""The networks of EMA-teacher pretraining, built from the config for its objectives.

The student is a :class:`PretrainNetwork`: a window encoder, the consistency heads
of the form (BYOL projectors or DINO prototype heads; absent when the objective
has no consistency term) and ``aux`` heads for the other objectives that the
teacher mirrors (``contrastive``: a projector to keys / queries; ``clustering``:
prototype scores). The teacher is an EMA copy of the whole network.

Student-only modules (never copied to the teacher) are built alongside:

- BYOL predictors, one per consistency head;
- ``online["contrastive"]``: MoCo v3's predictor from the projection to the query;
- ``online["masked"]``: :class:`MaskedPredictor`, the mask token and the per-bar
  regressor from the student's features to the teacher's.

Loss state (DINO centers, the contrastive key queue) lives in the losses' own
modules (:class:`~selfdistill.losses.consistency.DINOLoss`,
:class:`~selfdistill.losses.contrastive.KeyQueue`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from selfdistill.config import RunConfig
from selfdistill.errors import ConfigError
from selfdistill.losses.consistency import DINOLoss
from selfdistill.losses.contrastive import KeyQueue
from selfdistill.nn.encoders import ENCODER_KINDS, GRUEncoder, TCNEncoder, build_encoder
from selfdistill.nn.heads import DINOHead, MLPHead, MultiHead

__all__ = ["MaskedPredictor", "Networks", "Outputs", "PretrainNetwork", "build_networks"]


@dataclass
class Outputs:
    """One forward of a :class:`PretrainNetwork`.

    Attributes:
        z: (N, D) embeddings.
        sequence: (N, D, W) per-bar features, when asked for (masked modeling).
        heads: H consistency-head outputs (N, P); empty without a consistency term.
        aux: the other objectives' head outputs by name, (N, P) each.
    """

    z: Tensor
    sequence: Tensor | None
    heads: list[Tensor]
    aux: dict[str, Tensor]


class PretrainNetwork(nn.Module):
    """Encoder, consistency heads and the teacher-mirrored heads of the other objectives.

    Its state-dict keys ``encoder.*`` and ``heads.*`` are those of
    :class:`~selfdistill.nn.heads.EncoderWithHeads`, so older checkpoints still load.
    """

    def __init__(self, encoder: TCNEncoder | GRUEncoder, heads: MultiHead | None,
                 aux: nn.ModuleDict) -> None:
        super().__init__()
        self.encoder, self.heads, self.aux = encoder, heads, aux

    def outputs(self, x: Tensor, *, sequence: bool = False) -> Outputs:
        """Embeddings and every head's output for windows ``x`` (N, F, W)."""
        h = self.encoder.sequence(x) if sequence else None  # (N, D, W)
        z = self.encoder.pool(h) if h is not None else self.encoder(x)  # (N, D)
        heads = self.heads(z) if self.heads is not None else []
        return Outputs(z, h, heads, {name: head(z) for name, head in self.aux.items()})

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        out = self.outputs(x)
        return out.z, out.heads


class MaskedPredictor(nn.Module):
    """The mask token (F,) and a per-bar MLP (B, D, W) -> (B, D, W) (1x1 convolutions)."""

    def __init__(self, n_features: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(n_features))  # 0: the scaled features' mean
        self.net = nn.Sequential(nn.Conv1d(dim, hidden, 1), nn.GELU(), nn.Conv1d(hidden, dim, 1))

    def forward(self, h: Tensor) -> Tensor:
        out: Tensor = self.net(h)  # (B, D, W)
        return out


@dataclass
class Networks:
    """What :func:`build_networks` builds (the teacher is copied from ``student`` later)."""

    student: PretrainNetwork
    predictors: MultiHead | None
    dino: nn.ModuleList | None
    online: nn.ModuleDict
    queue: KeyQueue | None


def _consistency_heads(dim: int, cfg: RunConfig) -> tuple[MultiHead, MultiHead | None,
                                                          nn.ModuleList | None]:
    e = cfg.ema_teacher
    if e.form == "byol":
        heads = MultiHead(lambda h: MLPHead(dim, e.projection_dim, hidden=e.projection_hidden,
                                            norm=e.head_norm), e.heads)
        preds = MultiHead(lambda h: MLPHead(e.projection_dim, e.projection_dim,
                                            hidden=e.predictor_hidden, norm=e.head_norm), e.heads)
        return heads, preds, None
    heads = MultiHead(lambda h: DINOHead(dim, e.prototypes, hidden=e.projection_hidden,
                                         bottleneck=e.bottleneck, norm=e.head_norm), e.heads)
    dino = nn.ModuleList(DINOLoss(e.prototypes, center_momentum=e.center_momentum,
                                  centering=e.centering) for _ in range(e.heads))
    return heads, None, dino


def build_networks(n_features: int, cfg: RunConfig) -> Networks:
    """The student and its student-only modules for ``cfg.ema_teacher.objective``."""
    m, e = cfg.model, cfg.ema_teacher
    if m.kind not in ENCODER_KINDS:
        raise ConfigError(f"ema_teacher pretrains a window encoder: model.kind must be one of "
                          f"{', '.join(ENCODER_KINDS)}, got '{m.kind}'")
    enc = build_encoder(m.kind, n_features, hidden=m.hidden, activation=m.activation,
                        dropout=m.dropout, checkpoint_activations=e.activation_checkpointing)
    heads, preds, dino = (_consistency_heads(enc.dim, cfg) if "consistency" in e.objective
                          else (None, None, None))
    aux, online, queue = nn.ModuleDict(), nn.ModuleDict(), None
    if "contrastive" in e.objective:
        aux["contrastive"] = MLPHead(enc.dim, e.projection_dim, hidden=e.projection_hidden,
                                     norm=e.head_norm)
        online["contrastive"] = MLPHead(e.projection_dim, e.projection_dim,
                                        hidden=e.predictor_hidden, norm=e.head_norm)
        queue = KeyQueue(e.queue_size, e.projection_dim)
    if "clustering" in e.objective:
        aux["clustering"] = DINOHead(enc.dim, e.prototypes, hidden=e.projection_hidden,
                                     bottleneck=e.bottleneck, norm=e.head_norm)
    if "masked" in e.objective:
        online["masked"] = MaskedPredictor(n_features, enc.dim, e.projection_hidden)
    return Networks(PretrainNetwork(enc, heads, aux), preds, dino, online, queue)

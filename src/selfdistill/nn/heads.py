"""Heads for self-supervised pretraining: projection / predictor MLPs, DINO, multi-head.

- :class:`MLPHead`: Linear -> norm -> activation blocks, then Linear. BYOL's
  projector (embedding -> projection) and predictor (projection -> projection).
- :class:`DINOHead`: MLP to a bottleneck, L2-normalise, then cosine scores
  against K L2-normalised prototypes (DINO's weight-normalised last layer with
  its gain fixed at 1), so logits lie in [-1, 1] before the temperatures.
- :class:`MultiHead`: H independent heads on one embedding; returns H outputs.
- :class:`EncoderWithHeads`: an encoder and a :class:`MultiHead`, the student (and,
  copied, the teacher) of self-supervised pretraining.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfdistill.nn.mlp import ACTIVATIONS

__all__ = ["HEAD_NORMS", "DINOHead", "EncoderWithHeads", "MLPHead", "MultiHead"]

HEAD_NORMS = ("layer", "batch", "none")


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"head norm '{kind}' is not one of: {', '.join(HEAD_NORMS)}")


class MLPHead(nn.Module):
    """(B, D_in) -> (B, D_out) through ``layers - 1`` hidden blocks of width ``hidden``.

    Args:
        in_dim: D_in.
        out_dim: D_out.
        hidden: width of the hidden blocks.
        layers: number of Linear layers (>= 1; 2 is BYOL's projector / predictor).
        norm: ``layer`` (default, no running statistics), ``batch`` or ``none``.
        activation: one of relu, gelu, silu, tanh.
    """

    def __init__(self, in_dim: int, out_dim: int, *, hidden: int = 128, layers: int = 2,
                 norm: str = "layer", activation: str = "relu") -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"an MLP head needs >= 1 layer, got {layers}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation '{activation}' is not one of: {', '.join(ACTIVATIONS)}")
        blocks: list[nn.Module] = []
        width = in_dim
        for _ in range(layers - 1):
            blocks += [nn.Linear(width, hidden), _norm(norm, hidden), ACTIVATIONS[activation]()]
            width = hidden
        blocks.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*blocks)
        self.out_dim = out_dim

    def forward(self, z: Tensor) -> Tensor:
        out: Tensor = self.net(z)  # (B, D_out)
        return out


class DINOHead(nn.Module):
    """(B, D) -> (B, K) cosine scores against K learnable prototypes.

    Args:
        in_dim: D.
        prototypes: K.
        hidden: MLP width.
        bottleneck: width before the prototypes.
        layers: Linear layers of the MLP before the bottleneck (>= 1).
        norm: normalisation inside the MLP, as :class:`MLPHead`.
    """

    def __init__(self, in_dim: int, prototypes: int, *, hidden: int = 128, bottleneck: int = 32,
                 layers: int = 2, norm: str = "layer", activation: str = "gelu") -> None:
        super().__init__()
        self.mlp = MLPHead(in_dim, bottleneck, hidden=hidden, layers=layers, norm=norm,
                           activation=activation)
        self.prototypes = nn.Parameter(torch.randn(prototypes, bottleneck) / bottleneck**0.5)
        self.out_dim = prototypes

    def forward(self, z: Tensor) -> Tensor:
        h = F.normalize(self.mlp(z), dim=-1)  # (B, bottleneck)
        return h @ F.normalize(self.prototypes, dim=-1).T  # (B, K)


class MultiHead(nn.Module):
    """H heads built by ``make_head(h)`` over one embedding.

    Shapes: ``forward(z)`` maps (B, D) to a list of H tensors (B, D_out).
    """

    def __init__(self, make_head: Callable[[int], nn.Module], heads: int) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"need at least one head, got {heads}")
        self.heads = nn.ModuleList(make_head(h) for h in range(heads))

    def __len__(self) -> int:
        return len(self.heads)

    def forward(self, z: Tensor) -> list[Tensor]:
        return [head(z) for head in self.heads]


class EncoderWithHeads(nn.Module):
    """An encoder followed by H heads.

    Shapes: ``forward(x)`` maps windows (B, F, W) to ``(z, outs)``: the (B, D)
    embedding and a list of H head outputs (B, P).
    """

    def __init__(self, encoder: nn.Module, heads: MultiHead) -> None:
        super().__init__()
        self.encoder, self.heads = encoder, heads

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        z = self.encoder(x)  # (B, D)
        return z, self.heads(z)

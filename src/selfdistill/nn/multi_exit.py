"""A multi-exit network for Be Your Own Teacher: one classifier after every block.

The backbone is the MLP's stack of ``Linear -> activation -> dropout`` blocks.
After each shallow block ``i`` sits a small head: a bottleneck
``Linear(width_i, bottleneck) -> activation`` whose output is that exit's
*features*, then ``Linear(bottleneck, C)`` to logits. The deepest exit is the
backbone's own linear head on the last block (its features are the last
block's output), so exit ``depth`` is exactly an :class:`~selfdistill.nn.mlp.MLP`
of the same sizes. ``forward`` returns every exit; there are no hooks.

Learned *adapters* map each shallow exit's features to the deepest width for
the L2 hint (``Linear`` where the widths differ, identity where they match);
they live here because they hold parameters, while the loss stays pure.

References:
    Zhang et al. Be Your Own Teacher: Improve the Performance of Convolutional
    Neural Networks via Self Distillation. ICCV 2019.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from selfdistill.nn.mlp import ACTIVATIONS

__all__ = ["ExitSelect", "MultiExitMLP", "MultiExitOutput"]


class MultiExitOutput(NamedTuple):
    """Every exit's output, shallowest first.

    Attributes:
        logits: ``depth`` tensors of shape (B, C).
        features: ``depth`` tensors; (B, bottleneck) for shallow exits and
            (B, hidden[-1]) for the deepest.
    """

    logits: list[Tensor]
    features: list[Tensor]


class MultiExitMLP(nn.Module):
    """MLP backbone with a classifier exit after every hidden block.

    Args:
        n_features: input width F.
        n_classes: number of classes C.
        hidden: widths of the backbone blocks; the number of exits is ``len(hidden)``.
        activation: one of ``relu``, ``gelu``, ``silu``, ``tanh``.
        dropout: dropout probability after each block.
        bottleneck: width of the shallow exits' bottleneck layer.

    Shapes: ``forward(x)`` maps (B, F) to :class:`MultiExitOutput`.
    """

    def __init__(self, n_features: int, n_classes: int, hidden: Sequence[int] = (64, 64),
                 activation: str = "relu", dropout: float = 0.0, bottleneck: int = 32) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation '{activation}' is not one of: {', '.join(ACTIVATIONS)}")
        if not hidden:
            raise ValueError("hidden must name at least one block width")
        self.n_features, self.n_classes = int(n_features), int(n_classes)
        self.hidden, self.activation = tuple(int(h) for h in hidden), activation
        self.dropout, self.bottleneck = float(dropout), int(bottleneck)
        act = ACTIVATIONS[activation]
        widths = (self.n_features, *self.hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(w_in, w_out), act(),
                          *([nn.Dropout(dropout)] if dropout > 0 else []))
            for w_in, w_out in itertools.pairwise(widths))
        shallow = self.hidden[:-1]
        self.bottlenecks = nn.ModuleList(
            nn.Sequential(nn.Linear(w, self.bottleneck), act()) for w in shallow)
        self.classifiers = nn.ModuleList(
            [*(nn.Linear(self.bottleneck, self.n_classes) for _ in shallow),
             nn.Linear(self.hidden[-1], self.n_classes)])
        deep = self.hidden[-1]
        self.adapters = nn.ModuleList(
            nn.Identity() if self.bottleneck == deep else nn.Linear(self.bottleneck, deep)
            for _ in shallow)

    @property
    def depth(self) -> int:
        """Number of exits (= number of backbone blocks)."""
        return len(self.hidden)

    def _exit(self, i: int, h: Tensor) -> tuple[Tensor, Tensor]:
        """(logits (B, C), features) of exit ``i`` (0-based) from block output ``h``."""
        feat = self.bottlenecks[i](h) if i < self.depth - 1 else h
        return self.classifiers[i](feat), feat

    def forward(self, x: Tensor) -> MultiExitOutput:
        logits, features = [], []
        h = x  # (B, F)
        for i, block in enumerate(self.blocks):
            h = block(h)  # (B, hidden[i])
            z, feat = self._exit(i, h)
            logits.append(z)  # (B, C)
            features.append(feat)
        return MultiExitOutput(logits, features)

    def forward_exit(self, x: Tensor, index: int) -> Tensor:
        """(B, C) logits of exit ``index`` (0-based), computing only the blocks it needs."""
        if not 0 <= index < self.depth:
            raise IndexError(f"exit index {index} is outside 0..{self.depth - 1}")
        h = x
        for block in self.blocks[:index + 1]:
            h = block(h)
        return self._exit(index, h)[0]

    def hint_features(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Shallow features mapped to the deepest width by the adapters; deepest unchanged.

        Returns ``depth`` tensors of shape (B, hidden[-1]).
        """
        adapted = [adapter(f) for adapter, f in zip(self.adapters, features[:-1], strict=True)]
        return [*adapted, features[-1]]

    @torch.no_grad()
    def early_exit(self, x: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
        """Stop each sample at the first exit whose max probability is >= ``threshold``.

        Samples that never pass leave at the deepest exit. Only the samples still
        undecided go through the next block, so confident samples cost less.

        Returns:
            (B, C) logits of the exit each sample left at, and (B,) int64 exit
            index (0-based).
        """
        out = x.new_empty(x.shape[0], self.n_classes)
        where = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
        live = torch.arange(x.shape[0], device=x.device)
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)  # (B_live, hidden[i])
            z = self._exit(i, h)[0]  # (B_live, C)
            if i == self.depth - 1:
                out[live], where[live] = z, i
                break
            done = torch.softmax(z.float(), dim=-1).amax(dim=-1) >= threshold
            n_done = int(done.sum())
            if n_done == len(live):  # everyone left: no indexing needed
                out[live], where[live] = z, i
                break
            if n_done:
                out[live[done]], where[live[done]] = z[done], i
                live, h = live[~done], h[~done]
        return out, where

    def spec(self) -> dict[str, Any]:
        """The constructor arguments, for JSON model metadata."""
        return {"kind": "multi_exit", "n_features": self.n_features,
                "n_classes": self.n_classes, "hidden": list(self.hidden),
                "activation": self.activation, "dropout": self.dropout,
                "bottleneck": self.bottleneck}


class ExitSelect(nn.Module):
    """One exit of a multi-exit network as a plain (B, F) -> (B, C) module.

    Uses the network's ``forward_exit`` (only the blocks that exit needs) when it
    has one, else its full ``forward`` and picks the exit's logits.
    """

    def __init__(self, network: nn.Module, index: int) -> None:
        super().__init__()
        self.network, self.index = network, index

    def forward(self, x: Tensor) -> Tensor:
        forward_exit = getattr(self.network, "forward_exit", None)
        if forward_exit is not None:
            out: Tensor = forward_exit(x, self.index)
            return out
        outputs = self.network(x)
        logits = outputs.logits if hasattr(outputs, "logits") else outputs
        chosen: Tensor = logits[self.index]
        return chosen

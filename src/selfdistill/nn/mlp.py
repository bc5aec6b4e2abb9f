"""The default regime classifier: a multilayer perceptron returning logits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "MLP", "ConstantClassifier"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


class MLP(nn.Module):
    """Linear -> activation -> dropout blocks, then a linear head to logits.

    Args:
        n_features: input width F.
        n_classes: number of classes C.
        hidden: widths of the hidden layers, e.g. ``(64, 64)``.
        activation: one of ``relu``, ``gelu``, ``silu``, ``tanh``.
        dropout: dropout probability after each hidden layer.

    Shapes: ``forward(x)`` maps (B, F) to (B, C) logits.
    """

    def __init__(self, n_features: int, n_classes: int, hidden: Sequence[int] = (64, 64),
                 activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation '{activation}' is not one of: {', '.join(ACTIVATIONS)}")
        self.n_features, self.n_classes = int(n_features), int(n_classes)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation, self.dropout = activation, dropout
        layers: list[nn.Module] = []
        width = self.n_features
        for h in self.hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, self.n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))  # (B, C)

    def spec(self) -> dict[str, Any]:
        """The constructor arguments, for JSON model metadata."""
        return {"kind": "mlp", "n_features": self.n_features, "n_classes": self.n_classes,
                "hidden": list(self.hidden), "activation": self.activation,
                "dropout": self.dropout}


class ConstantClassifier(nn.Module):
    """Predicts fixed class log-probabilities for every input (the majority baseline).

    Shapes: (B, ...) -> (B, C).
    """

    log_probs: Tensor

    def __init__(self, log_probs: Tensor) -> None:
        super().__init__()
        self.register_buffer("log_probs", log_probs.detach().clone().float())

    def forward(self, x: Tensor) -> Tensor:
        return self.log_probs.expand(x.shape[0], -1).clone()

    def spec(self) -> dict[str, Any]:
        return {"kind": "constant", "n_classes": int(self.log_probs.shape[0])}

    @classmethod
    def from_labels(cls, y: Tensor, n_classes: int) -> ConstantClassifier:
        """Class frequencies of ``y`` (smoothed), as log-probabilities."""
        counts = torch.bincount(y.cpu(), minlength=n_classes).double() + 1e-3
        return cls((counts / counts.sum()).log())

"""Model definitions only: no training logic lives here."""

from __future__ import annotations

from selfdistill.nn.mlp import MLP, ConstantClassifier

__all__ = ["MLP", "ConstantClassifier"]

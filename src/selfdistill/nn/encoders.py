"""Temporal encoders over windows of per-bar features, and a classifier on top.

Inputs are windows (B, F, W) of causal per-bar features, oldest bar first
(see :func:`selfdistill.nn.windows.make_windows`). Encoders return (B, D)
embeddings; :class:`WindowClassifier` adds a linear head to (B, C) logits and
is what the supervised methods train when ``model.kind`` is ``cnn`` or ``gru``.

- :class:`TCNEncoder`: residual blocks of two dilated *causal* 1-D convolutions
  (left padding only; block ``i`` has dilation ``2**i``), so every time step
  sees only bars at or before it. The embedding averages the last time step
  (the freshest summary) with the mean over the window (which also covers bars
  beyond the receptive field).
- :class:`GRUEncoder`: stacked GRUs over time; the embedding is the last hidden state.

Both also give per-bar features, ``sequence(x)`` (B, D, W), causal like the
embedding (masked modeling predicts them), and ``pool`` maps those to the
embedding. With ``checkpoint_activations=True`` each TCN block / GRU layer is
recomputed in the backward pass instead of keeping its activations (less memory,
about one more forward of compute; only while training with gradients on).

Neither uses BatchNorm, so an EMA teacher of either has no running statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from selfdistill.nn.mlp import ACTIVATIONS

__all__ = [
    "ENCODER_KINDS",
    "GRUEncoder",
    "TCNEncoder",
    "WindowClassifier",
    "build_encoder",
    "window_classifier_from_spec",
]

ENCODER_KINDS = ("cnn", "gru")


def _check_windows(x: Tensor, n_features: int) -> None:
    if x.dim() != 3 or x.shape[1] != n_features:
        raise ValueError(
            f"expected windows of shape (B, {n_features}, W), got {tuple(x.shape)}; "
            "build them with selfdistill.nn.windows.make_windows(x, window)")


def _run(layer: Callable[[Tensor], Tensor], x: Tensor, *, checkpointed: bool,
         training: bool) -> Tensor:
    """``layer(x)``, recomputed in the backward pass when ``checkpointed`` and training."""
    if checkpointed and training and torch.is_grad_enabled():
        out: Tensor = checkpoint(layer, x, use_reentrant=False)  # RNG state kept for dropout
        return out
    return layer(x)


def _gru_layer(gru: nn.Module, drop: nn.Module | None, h: Tensor) -> Tensor:
    """Dropout (between layers) then one GRU: (B, W, H_in) -> (B, W, H_out)."""
    out, _ = gru(h if drop is None else drop(h))
    result: Tensor = out
    return result


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation '{name}' is not one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class _CausalConv(nn.Conv1d):
    """Conv1d padded on the left only: output step t sees inputs t - (k-1)*d .. t."""

    def forward(self, x: Tensor) -> Tensor:
        left = (self.kernel_size[0] - 1) * self.dilation[0]
        return super().forward(nn.functional.pad(x, (left, 0)))  # (B, C_out, W)


class _TCNBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, *, kernel_size: int, dilation: int,
                 activation: str, dropout: float) -> None:
        super().__init__()
        self.conv1 = _CausalConv(c_in, c_out, kernel_size, dilation=dilation)
        self.conv2 = _CausalConv(c_out, c_out, kernel_size, dilation=dilation)
        self.act1, self.act2 = _activation(activation), _activation(activation)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.drop(self.act1(self.conv1(x)))  # (B, C_out, W)
        h = self.drop(self.act2(self.conv2(h)))
        out: Tensor = h + self.skip(x)
        return out


class TCNEncoder(nn.Module):
    """Dilated causal CNN (TCN-style): (B, F, W) -> (B, D), D = ``hidden[-1]``.

    Args:
        n_features: F.
        hidden: channels of each residual block; block i has dilation 2**i.
        kernel_size: taps per convolution (>= 2).
        activation: one of relu, gelu, silu, tanh.
        dropout: dropout after each convolution.
        checkpoint_activations: recompute each block in the backward pass (saves memory).
    """

    kind = "cnn"

    def __init__(self, n_features: int, hidden: Sequence[int] = (64, 64), *,
                 kernel_size: int = 3, activation: str = "relu", dropout: float = 0.0,
                 checkpoint_activations: bool = False) -> None:
        super().__init__()
        if not hidden or kernel_size < 2:
            raise ValueError(f"TCN needs >= 1 block and kernel_size >= 2, got hidden={hidden}, "
                             f"kernel_size={kernel_size}")
        self.n_features, self.dim = int(n_features), int(hidden[-1])
        self.checkpoint_activations = checkpoint_activations
        widths = [self.n_features, *(int(h) for h in hidden)]
        self.blocks = nn.Sequential(*(
            _TCNBlock(widths[i], widths[i + 1], kernel_size=kernel_size, dilation=2**i,
                      activation=activation, dropout=dropout)
            for i in range(len(hidden))))

    def sequence(self, x: Tensor) -> Tensor:
        """Per-bar features (B, F, W) -> (B, D, W); bar t reads bars <= t only."""
        _check_windows(x, self.n_features)
        for block in self.blocks:
            x = _run(block, x, checkpointed=self.checkpoint_activations,
                     training=self.training)  # (B, C_i, W)
        return x

    def pool(self, h: Tensor) -> Tensor:
        """(B, D, W) per-bar features -> (B, D): the last bar averaged with the window mean."""
        return 0.5 * (h[:, :, -1] + h.mean(dim=2))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.sequence(x))  # (B, D)


class GRUEncoder(nn.Module):
    """Stacked GRUs over time: (B, F, W) -> (B, D), D = ``hidden[-1]``.

    Args:
        n_features: F.
        hidden: width of each GRU layer.
        dropout: dropout between layers.
        checkpoint_activations: recompute each layer in the backward pass (saves memory).
    """

    kind = "gru"

    def __init__(self, n_features: int, hidden: Sequence[int] = (64,), *,
                 dropout: float = 0.0, checkpoint_activations: bool = False) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("GRU encoder needs at least one layer width in hidden")
        self.n_features, self.dim = int(n_features), int(hidden[-1])
        self.checkpoint_activations = checkpoint_activations
        widths = [self.n_features, *(int(h) for h in hidden)]
        self.layers = nn.ModuleList(nn.GRU(widths[i], widths[i + 1], batch_first=True)
                                    for i in range(len(hidden)))
        self.drop = nn.Dropout(dropout)

    def sequence(self, x: Tensor) -> Tensor:
        """Per-bar hidden states (B, F, W) -> (B, D, W); bar t reads bars <= t only."""
        _check_windows(x, self.n_features)
        h = x.transpose(1, 2)  # (B, W, F): time-major for the GRU
        for i, gru in enumerate(self.layers):
            layer = partial(_gru_layer, gru, self.drop if i else None)
            h = _run(layer, h, checkpointed=self.checkpoint_activations,
                     training=self.training)  # (B, W, H_i)
        return h.transpose(1, 2)  # (B, D, W)

    def pool(self, h: Tensor) -> Tensor:
        """(B, D, W) per-bar states -> (B, D): the last hidden state."""
        return h[:, :, -1]

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.sequence(x))  # (B, D)


def build_encoder(kind: str, n_features: int, *, hidden: Sequence[int] = (64, 64),
                  activation: str = "relu", dropout: float = 0.0, kernel_size: int = 3,
                  checkpoint_activations: bool = False) -> TCNEncoder | GRUEncoder:
    """An encoder of ``kind`` ``cnn`` or ``gru`` (the ``model.kind`` values)."""
    if kind == "cnn":
        return TCNEncoder(n_features, hidden, kernel_size=kernel_size, activation=activation,
                          dropout=dropout, checkpoint_activations=checkpoint_activations)
    if kind == "gru":
        return GRUEncoder(n_features, hidden, dropout=dropout,
                          checkpoint_activations=checkpoint_activations)
    raise ValueError(f"encoder kind '{kind}' is not one of: {', '.join(ENCODER_KINDS)}")


class WindowClassifier(nn.Module):
    """An encoder plus a linear head: (B, F, W) windows -> (B, C) logits.

    Args:
        n_features: F.
        n_classes: C.
        kind: ``cnn`` or ``gru``.
        window: W the model is meant for (kept in the spec; the layers accept any W).
        hidden, activation, dropout, kernel_size: see :func:`build_encoder`.
    """

    def __init__(self, n_features: int, n_classes: int, *, kind: str = "cnn",
                 window: int = 32, hidden: Sequence[int] = (64, 64), activation: str = "relu",
                 dropout: float = 0.0, kernel_size: int = 3) -> None:
        super().__init__()
        self.encoder = build_encoder(kind, n_features, hidden=hidden, activation=activation,
                                     dropout=dropout, kernel_size=kernel_size)
        self.head = nn.Linear(self.encoder.dim, int(n_classes))
        self._spec: dict[str, Any] = {
            "kind": kind, "n_features": int(n_features), "n_classes": int(n_classes),
            "window": int(window), "hidden": [int(h) for h in hidden],
            "activation": activation, "dropout": float(dropout), "kernel_size": int(kernel_size)}

    def embed(self, x: Tensor) -> Tensor:
        """(B, F, W) -> (B, D) encoder embedding."""
        out: Tensor = self.encoder(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))  # (B, C)

    def spec(self) -> dict[str, Any]:
        """The constructor arguments, for JSON model metadata."""
        return dict(self._spec)


def window_classifier_from_spec(spec: dict[str, Any]) -> WindowClassifier:
    """Rebuild a :class:`WindowClassifier` from its spec (a ``model`` config dump works too)."""
    return WindowClassifier(
        spec["n_features"], spec["n_classes"], kind=spec.get("kind", "cnn"),
        window=spec.get("window", 32), hidden=spec.get("hidden", (64, 64)),
        activation=spec.get("activation", "relu"), dropout=spec.get("dropout", 0.0),
        kernel_size=spec.get("kernel_size", 3))

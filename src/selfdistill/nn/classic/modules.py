"""The classic models as ``nn.Module`` s, so they are evaluated, saved and served like networks.

Each module holds its fitted arrays as float64 buffers (saved through safetensors,
never pickled), rebuilds the checked NumPy parameters when it is created or loaded,
and returns (B, C) float64 log-probabilities, like
:class:`~selfdistill.nn.booster.BoosterClassifier`. Window inputs (B, F, W) use
their last bar, which is row t's.

:class:`HMMClassifier` is *sequential*: its rows are one chronological sequence and
row t's probabilities depend on rows <= t (the forward filter), so it must see all
rows at once, in time order. ``sequential = True`` tells
:meth:`selfdistill.methods.base.Member.logits` to call it once on every row and pick
the requested rows from that, instead of feeding it batches of ``x[rows]`` (a filter
restarted on every batch, or fed only the test rows, would be another model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from selfdistill.errors import DataError, ModelFileError
from selfdistill.nn.classic import hmm, logistic

__all__ = ["HMMClassifier", "LogisticClassifier", "last_bar"]


def last_bar(x: Tensor) -> np.ndarray:
    """(B, F) float64 features; windows (B, F, W) use their last bar, which is row t's."""
    if x.ndim == 3:
        x = x[:, :, -1]
    # C order whatever the view: a strided copy would sum features in another order, and the
    # probabilities would differ in the last bits from those of the same rows given flat
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float64)


def _log_proba(fn: Callable[[Any, np.ndarray], np.ndarray], params: Any, x: Tensor) -> Tensor:
    """(B, C) float64 log-probabilities of ``fn(params, features)`` on ``x``'s device."""
    try:
        out = fn(params, last_bar(x))
    except ValueError as exc:  # wrong width, NaN: the caller's input, named by the check
        raise DataError(f"cannot predict: {exc}") from exc
    return torch.as_tensor(out, dtype=torch.float64, device=x.device)


class _ArrayModule(nn.Module):
    """Float64 buffers named after the fields of a frozen NumPy parameter class."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        super().__init__()
        for name, value in arrays.items():
            self.register_buffer(name, torch.as_tensor(np.array(value)))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {name: buf.detach().cpu().numpy() for name, buf in self.named_buffers()}

    def _rebuild(self) -> None:
        """Check the buffers as parameters (ValueError when they are not a valid model)."""
        raise NotImplementedError

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        try:
            self._rebuild()
        except ValueError as exc:
            raise ModelFileError(f"the stored {type(self).__name__} arrays are not a valid "
                                 f"model: {exc}") from exc


class HMMClassifier(_ArrayModule):
    """A fitted causal Gaussian HMM: (T, F) or (T, F, W) rows in time order -> (T, C) log-probs.

    Args:
        params: the fitted model, or None for an empty shell of the given sizes that
            :meth:`load_state_dict` fills (placeholder values until then).
        n_states / n_features / n_classes: the shell's sizes (ignored with ``params``).
    """

    #: rows are one chronological sequence: call once on all rows (see the module docstring)
    sequential = True

    def __init__(self, params: hmm.HMMParams | None = None, *, n_states: int = 3,
                 n_features: int = 1, n_classes: int = 3) -> None:
        if params is None:
            k, f, c = int(n_states), int(n_features), int(n_classes)
            params = hmm.HMMParams(
                startprob=np.full(k, 1.0 / k), transmat=np.full((k, k), 1.0 / k),
                means=np.zeros((k, f)), variances=np.ones((k, f)),
                state_to_class=np.full((k, c), 1.0 / c))
        super().__init__(hmm.to_arrays(params))
        self.params = params

    def _rebuild(self) -> None:
        self.params = hmm.from_arrays(self._arrays())

    def forward(self, x: Tensor) -> Tensor:
        """(T, C) log P(class | rows 0..t) for every row t of ``x`` (one sequence, filtered)."""
        return _log_proba(hmm.predict_proba, self.params, x)

    def spec(self) -> dict[str, Any]:
        p = self.params
        return {"kind": "hmm", "n_states": p.n_states, "n_features": p.n_features,
                "n_classes": p.n_classes, "covariance": "diag"}


class LogisticClassifier(_ArrayModule):
    """A fitted multinomial logistic regression: (B, F) or (B, F, W) -> (B, C) log-probs.

    Args:
        params: the fitted model, or None for an empty shell of the given sizes.
        n_features / n_classes / n_grid: the shell's sizes (ignored with ``params``).
    """

    sequential = False

    def __init__(self, params: logistic.LogisticParams | None = None, *, n_features: int = 1,
                 n_classes: int = 3, n_grid: int = 1) -> None:
        if params is None:
            f, c, g = int(n_features), int(n_classes), int(n_grid)
            params = logistic.LogisticParams(
                coef=np.zeros((c, f)), intercept=np.zeros(c), present=np.ones(c, dtype=bool),
                floor=np.array(1.0 / (c + 1)), chosen_c=np.array(1.0), grid=np.ones(g),
                val_nll=np.zeros(g))
        super().__init__(logistic.to_arrays(params))
        self.params = params

    def _rebuild(self) -> None:
        self.params = logistic.from_arrays(self._arrays())

    def forward(self, x: Tensor) -> Tensor:
        return _log_proba(logistic.log_proba, self.params, x)

    def spec(self) -> dict[str, Any]:
        p = self.params
        return {"kind": "logistic", "n_features": p.n_features, "n_classes": p.n_classes,
                "n_grid": int(p.grid.shape[0])}

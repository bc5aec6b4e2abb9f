"""A fitted LightGBM booster as an ``nn.Module``, so it is saved and served like a network.

:class:`BoosterClassifier` returns log-probabilities, so evaluation, the run
directory and model files treat it like any network. Its "weights" are the
booster in LightGBM's own text format, stored as a uint8 tensor: saving goes
through safetensors and loading parses text, never a pickle. LightGBM itself is
imported only when a booster is built. Fitting lives in
:mod:`selfdistill.methods.lightgbm`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from selfdistill.errors import TrainingError
from selfdistill.softmax import log_probabilities

__all__ = ["BoosterClassifier", "flat_features"]


def flat_features(x: Tensor) -> np.ndarray:
    """(B, F) float32 features; windows (B, F, W) use their last bar, which is row t's."""
    if x.ndim == 3:
        x = x[:, :, -1]
    return x.detach().cpu().numpy().astype(np.float32, copy=False)


class BoosterClassifier(nn.Module):
    """A fitted LightGBM booster as a module: (B, F) or (B, F, W) -> (B, C) log-probabilities.

    Args:
        model_text: the booster in LightGBM's text format ('' for an empty shell
            that :meth:`load_state_dict` fills).
        n_classes: number of classes C.
    """

    def __init__(self, model_text: str = "", n_classes: int = 3) -> None:
        super().__init__()
        self.n_classes = int(n_classes)
        self.register_buffer("model_bytes", torch.zeros(0, dtype=torch.uint8))
        self.booster: Any = None
        if model_text:
            self._set_text(model_text)

    def _set_text(self, text: str) -> None:
        import lightgbm as lgb

        self.model_bytes = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8)
        self.booster = lgb.Booster(model_str=text)

    def forward(self, x: Tensor) -> Tensor:
        if self.booster is None:
            raise TrainingError("BoosterClassifier has no fitted booster")
        proba = np.asarray(self.booster.predict(flat_features(x), num_threads=1), dtype=np.float64)
        proba = proba.reshape(len(x), self.n_classes)
        log_p = log_probabilities(proba)  # (B, C)
        return torch.as_tensor(log_p, dtype=torch.float32, device=x.device)

    def spec(self) -> dict[str, Any]:
        return {"kind": "lightgbm", "n_classes": self.n_classes}

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        key = prefix + "model_bytes"
        if key in state_dict:  # resize the shell's buffer first; the copy below then fits
            data = state_dict[key].cpu().numpy().astype(np.uint8).tobytes()
            self._set_text(data.decode("utf-8"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

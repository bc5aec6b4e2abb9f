"""Causal features and the train-fitted scaler (NumPy and pandas; no torch).

- :mod:`selfdistill.features.causal`: :func:`compute_features` (row ``t`` reads
  bars ``<= t`` only), the same columns one at a time (:func:`feature_columns`),
  :func:`feature_names`, :func:`feature_warmup`;
- :mod:`selfdistill.features.scaler`: :class:`Scaler`, fitted on training rows only.

``from selfdistill.features import Scaler, compute_features`` covers most uses.
"""

from __future__ import annotations

from selfdistill.features.causal import (
    compute_features,
    feature_columns,
    feature_names,
    feature_warmup,
    features_config,
    pin_volume,
    resolve_volume,
)
from selfdistill.features.scaler import SCALER_KINDS, Scaler, ScalerKind

__all__ = ["SCALER_KINDS", "Scaler", "ScalerKind", "compute_features", "feature_columns",
           "feature_names", "feature_warmup", "features_config", "pin_volume", "resolve_volume"]

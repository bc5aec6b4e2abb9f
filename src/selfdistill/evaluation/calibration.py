"""Post-hoc temperature scaling, fitted on validation rows only.

One scalar ``T > 0`` divides the logits: ``p = softmax(z / T)``. It is chosen
to minimise the negative log-likelihood of the *validation* labels (a bounded
search over ``log T``), then applied unchanged to validation and test rows.
``T > 1`` softens over-confident predictions, ``T < 1`` sharpens timid ones;
the argmax, and so accuracy, never changes.

Probabilities work as inputs too: ``log p`` are logits up to a per-row
constant, which the softmax ignores.

References:
    Guo et al. On Calibration of Modern Neural Networks. ICML 2017.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import minimize_scalar

from selfdistill.errors import DataError
from selfdistill.softmax import log_probabilities, nll_of_logits, softmax

__all__ = [
    "TEMPERATURE_BOUNDS",
    "apply_temperature",
    "fit_temperature",
    "logits_from_proba",
]

log = logging.getLogger(__name__)

#: The search range of T; the ends are far outside what a sane model needs.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def logits_from_proba(proba: np.ndarray) -> np.ndarray:
    """(N, C) log-probabilities (clipped at 1e-12), usable as logits."""
    return log_probabilities(proba)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising validation NLL.

    Args:
        logits: (N, C) validation logits (or :func:`logits_from_proba` of probabilities).
        y: (N,) int validation labels in [0, C).

    Returns:
        T in :data:`TEMPERATURE_BOUNDS`.

    Raises:
        DataError: empty input, mismatched lengths, or labels outside [0, C).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    if z.ndim != 2 or len(z) == 0 or len(z) != len(y):
        raise DataError(f"temperature scaling needs (N, C) logits and N labels, got "
                        f"{z.shape} and {y.shape}")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise DataError(f"labels must be in [0, {z.shape[1]}), got {y.min()}..{y.max()}")
    y = y.astype(np.int64)
    lo, hi = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    result = minimize_scalar(lambda log_t: nll_of_logits(z, y, temperature=float(np.exp(log_t))),
                             bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    temperature = float(np.exp(result.x))
    log.debug("temperature %.4f (val NLL %.4f -> %.4f)", temperature, nll_of_logits(z, y),
              float(result.fun))
    return temperature


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """(N, C) probabilities ``softmax(logits / temperature)``, float64."""
    if not temperature > 0:
        raise DataError(f"temperature must be > 0, got {temperature}")
    return softmax(logits, temperature=temperature)

"""Schedules as pure functions of the step (or generation) index.

Temperature and alpha schedules are indexed by distilled generation k >= 1;
learning-rate and EMA schedules by global optimizer step. Each is a closed
form, so tests compare values at chosen steps with the formula.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "alpha_at",
    "cosine_restart_lr",
    "cosine_tau",
    "temperature_at",
]

TEMPERATURE_SCHEDULES = ("constant", "exponential", "linear", "step")


def temperature_at(k: int, *, t0: float, schedule: str = "exponential", decay: float = 1.0,
                   t_min: float = 1.0, step: int = 1, total: int = 1) -> float:
    """Temperature of distilled generation ``k`` (k = 1 is the first student).

    - constant:    T_k = t0
    - exponential: T_k = max(t_min, t0 * decay^(k-1))
    - linear:      T_k from t0 at k = 1 to t_min at k = total, linearly
    - step:        T_k = max(t_min, t0 * decay^floor((k-1) / step))
    """
    if k < 1:
        raise ValueError(f"generation index must be >= 1, got {k}")
    if schedule == "constant":
        return t0
    if schedule == "exponential":
        return max(t_min, t0 * decay ** (k - 1))
    if schedule == "linear":
        if total <= 1:
            return t0
        frac = min(1.0, (k - 1) / (total - 1))
        return t0 + (t_min - t0) * frac
    if schedule == "step":
        return max(t_min, t0 * decay ** ((k - 1) // max(step, 1)))
    raise ValueError(f"temperature schedule '{schedule}' is not one of: "
                     f"{', '.join(TEMPERATURE_SCHEDULES)}")


def alpha_at(k: int, alpha: float | Sequence[float]) -> float:
    """Hard-label weight of generation ``k`` (k >= 1).

    A float is used for every generation; a list gives one value per
    generation and is repeated cyclically when shorter (so ``[0.2, 0.2, 1.0]``
    returns to pure hard labels every third generation: a hard-label curriculum).
    """
    if k < 1:
        raise ValueError(f"generation index must be >= 1, got {k}")
    if isinstance(alpha, int | float):
        return float(alpha)
    values = list(alpha)
    if not values:
        raise ValueError("alpha list must not be empty")
    return float(values[(k - 1) % len(values)])


def cosine_restart_lr(step: int, *, base_lr: float, steps_per_cycle: int,
                      min_lr: float = 0.0) -> float:
    """Cosine-annealed learning rate restarted every ``steps_per_cycle`` steps (SGDR)."""
    if steps_per_cycle < 1:
        raise ValueError(f"steps_per_cycle must be >= 1, got {steps_per_cycle}")
    frac = (step % steps_per_cycle) / steps_per_cycle
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * frac))


def cosine_tau(step: int, *, total_steps: int, tau_base: float) -> float:
    """EMA momentum from ``tau_base`` at step 0 to 1 at ``total_steps`` (BYOL):
    ``1 - (1 - tau_base) * (cos(pi * step / total) + 1) / 2``."""
    frac = min(1.0, step / max(total_steps, 1))
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * frac) + 1.0) / 2.0

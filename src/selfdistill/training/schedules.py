"""Schedules as pure functions of the step (or generation) index.

Learning-rate and EMA schedules are indexed by the global optimizer step.
Temperature and alpha schedules are indexed by generation, and this is the one
place the indexing is defined:

* generation ``k = 0`` is the hard-label start (no teacher, no schedule);
* distilled generations are ``k = 1, 2, ..., K``; a schedule sees the index
  ``i = k - 1``, so ``i = 0`` is the first student.

With that index every schedule is a closed form in ``i``:

=============  ==============================================================
constant       ``v_i = v0``
exponential    ``v_i = v0 * decay**i``, never past ``end``
linear         ``v_i = v0 + (end - v0) * min(1, i / (K - 1))``
step           ``v_i = v0 * decay**floor(i / step)``, never past ``end``
=============  ==============================================================

The Be-Your-Own-Teacher issue writes the exponential temperature as
``T_k = T0 * decay^k`` with ``k`` counting from 0 for the first student; the
foundation issue writes ``max(T_min, T0 * decay^(k-1))`` for generation
``k >= 1``. Both are ``T0 * decay**i`` above (``end = T_min``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "SCHEDULES",
    "alpha_at",
    "cosine_restart_lr",
    "cosine_tau",
    "scheduled_value",
    "temperature_at",
]

SCHEDULES = ("constant", "exponential", "linear", "step")


def _clamp_towards(value: float, end: float | None, *, rising: bool) -> float:
    """``value`` never passes ``end`` in the direction the schedule moves."""
    if end is None:
        return value
    return min(value, end) if rising else max(value, end)


def scheduled_value(i: int, *, start: float, schedule: str = "constant", decay: float = 1.0,
                    end: float | None = None, step: int = 1, total: int = 1) -> float:
    """Value of a schedule at index ``i >= 0`` (see the module docstring for the forms).

    Args:
        i: schedule index, 0 for the first scheduled item (the first student).
        start: the value at ``i = 0``.
        schedule: one of ``constant``, ``exponential``, ``linear``, ``step``.
        decay: multiplier per index (exponential) or per ``step`` indices (step);
            below 1 the value falls towards ``end``, above 1 it rises towards it.
        end: bound the exponential / step forms never pass, and the value the
            linear form reaches at ``i = total - 1`` (None: unbounded / constant).
        step: indices per step of the step form.
        total: number of scheduled items (the linear form's length).
    """
    if i < 0:
        raise ValueError(f"schedule index must be >= 0, got {i}")
    if schedule == "constant":
        return float(start)
    if schedule == "exponential":
        return _clamp_towards(start * decay**i, end, rising=decay > 1.0)
    if schedule == "linear":
        if end is None or total <= 1:
            return float(start)
        return start + (end - start) * min(1.0, i / (total - 1))
    if schedule == "step":
        if step < 1:
            raise ValueError(f"step must be >= 1, got {step}")
        return _clamp_towards(start * decay ** (i // step), end, rising=decay > 1.0)
    raise ValueError(f"schedule '{schedule}' is not one of: {', '.join(SCHEDULES)}")


def _check_generation(k: int) -> int:
    if k < 1:
        raise ValueError(f"distilled generation must be >= 1 (0 is the hard-label start), got {k}")
    return k - 1


def temperature_at(k: int, *, t0: float, schedule: str = "exponential", decay: float = 1.0,
                   t_min: float = 1.0, step: int = 1, total: int = 1) -> float:
    """Temperature of distilled generation ``k >= 1`` (index ``i = k - 1``).

    - constant:    ``T = t0``
    - exponential: ``T = max(t_min, t0 * decay**i)``
    - linear:      from ``t0`` at ``k = 1`` to ``t_min`` at ``k = total``
    - step:        ``T = max(t_min, t0 * decay**floor(i / step))``
    """
    i = _check_generation(k)
    return scheduled_value(i, start=t0, schedule=schedule, decay=decay, end=t_min, step=step,
                           total=total)


def alpha_at(k: int, alpha: float | Sequence[float], *, schedule: str = "constant",
             decay: float = 1.0, final: float | None = None, step: int = 1,
             total: int = 1) -> float:
    """Hard-label weight of distilled generation ``k >= 1`` (index ``i = k - 1``).

    A list is a per-generation curriculum, repeated cyclically when shorter
    (``[0.3, 0.3, 1.0]`` goes back to pure hard labels every third
    generation); it only combines with the ``constant`` schedule. A float is
    the start of ``schedule`` (same forms as :func:`scheduled_value`, with
    ``final`` as ``end``); the result is clipped to [0, 1].
    """
    i = _check_generation(k)
    if not isinstance(alpha, int | float):
        values = [float(a) for a in alpha]
        if not values:
            raise ValueError("alpha list must not be empty")
        if schedule != "constant":
            raise ValueError(f"an alpha list is its own curriculum; alpha schedule must be "
                             f"'constant', got '{schedule}'")
        return values[i % len(values)]
    value = scheduled_value(i, start=float(alpha), schedule=schedule, decay=decay, end=final,
                            step=step, total=total)
    return min(1.0, max(0.0, value))


def cosine_restart_lr(step: int, *, base_lr: float, steps_per_cycle: int,
                      min_lr: float = 0.0) -> float:
    """Cosine-annealed learning rate restarted every ``steps_per_cycle`` steps (SGDR).

    ``lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * (step mod S) / S)) / 2``.
    """
    if steps_per_cycle < 1:
        raise ValueError(f"steps_per_cycle must be >= 1, got {steps_per_cycle}")
    frac = (step % steps_per_cycle) / steps_per_cycle
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * frac))


def cosine_tau(step: int, *, total_steps: int, tau_base: float) -> float:
    """EMA momentum from ``tau_base`` at step 0 to 1 at ``total_steps`` (BYOL):
    ``1 - (1 - tau_base) * (cos(pi * step / total) + 1) / 2``."""
    frac = min(1.0, step / max(total_steps, 1))
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * frac) + 1.0) / 2.0

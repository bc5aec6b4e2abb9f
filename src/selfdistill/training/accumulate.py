"""Gradient accumulation: one optimizer step from k micro-batches of a batch.

A batch of B rows is cut into k contiguous micro-batches (sizes differ by at most
one); each micro-batch's loss, a mean over its rows, is back-propagated with
weight ``size / B``, so the gradients add up to those of the whole batch's mean
loss. Only one micro-batch's activations are alive at a time: peak activation
memory falls by about k, at the price of k smaller (less efficient) passes.

The result equals the whole batch's to float rounding when the loss is a mean of
per-row terms and the model has no batch-dependent layers (BatchNorm in train
mode, in-batch negatives, batch-wide normalisation): anything batch-wide must be
computed once for the whole batch before the micro-batches (EMA-teacher
pretraining computes its teacher targets that way). Whatever follows the
optimizer step (the EMA teacher update, a queue, a running center) runs once
per step, after :func:`accumulate`, never per micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["LossTerms", "accumulate", "micro_batches"]

#: A loss and its parts: ``"loss"`` is back-propagated, every entry is reported.
LossTerms = dict[str, Tensor]


def micro_batches(n: int, k: int) -> list[slice]:
    """``min(k, n)`` contiguous slices covering ``range(n)``, sizes differing by at most 1.

    >>> micro_batches(10, 3)
    [slice(0, 3, None), slice(3, 7, None), slice(7, 10, None)]
    """
    if n < 1 or k < 1:
        raise ValueError(f"need n >= 1 rows and k >= 1 micro-batches, got n={n}, k={k}")
    k = min(k, n)
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(k)]


def accumulate(loss_of: Callable[[slice], LossTerms], n: int, k: int) -> LossTerms:
    """Back-propagate ``loss_of(s)["loss"] * len(s) / n`` for each micro-batch ``s``.

    Args:
        loss_of: the losses of rows ``s`` of the batch (each a mean over those rows).
        n: B, the rows in the batch.
        k: micro-batches (1: the whole batch at once).

    Returns:
        Every term weighted the same way and summed, detached: the whole batch's terms.
        Gradients are accumulated into ``.grad``; zeroing and stepping are the caller's.
    """
    total: LossTerms = {}
    for s in micro_batches(n, k):
        weight = (s.stop - s.start) / n
        terms = loss_of(s)
        (terms["loss"] * weight if weight != 1.0 else terms["loss"]).backward()
        for name, value in terms.items():
            part = value.detach() * weight
            total[name] = total[name] + part if name in total else part
    return total if total else {"loss": torch.zeros(())}

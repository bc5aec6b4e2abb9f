"""Contrastive loss with a momentum encoder and a queue of negatives (MoCo).

The student's query for one view must pick out the teacher's key for the other
view of the same window among the queue's keys of earlier windows (InfoNCE).
The teacher is the momentum (EMA) encoder; its keys are detached, and after each
optimizer step they are enqueued, replacing the oldest.

- :func:`info_nce`: ``-log( exp(q.k+ / T) / (exp(q.k+ / T) + sum_n exp(q.n / T)) )``
  averaged over the batch, with q, k, n L2-normalised.
- :func:`moco_loss`: :func:`info_nce` averaged over ordered pairs of distinct views
  (query from view a, key from view b): MoCo's symmetrised loss.
- :func:`uniform_info_nce`: ``ln(1 + K)``, the loss when every similarity is equal
  (a collapsed encoder).

The only state, the queue, lives in the thin :class:`KeyQueue` module as buffers
updated under ``no_grad``.

References:
    He et al. Momentum Contrast for Unsupervised Visual Representation Learning. CVPR 2020.
    Chen et al. Improved Baselines with Momentum Contrastive Learning (MoCo v2). 2020.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["KeyQueue", "info_nce", "moco_loss", "uniform_info_nce"]


def info_nce(queries: Tensor, keys: Tensor, queue: Tensor, *, temperature: float) -> Tensor:
    """InfoNCE with one positive key per query and the queue as negatives.

    Args:
        queries: (B, D) student queries.
        keys: (B, D) teacher keys, the positives (detached here).
        queue: (K, D) negatives (detached here), K >= 0.
        temperature: T > 0.

    Returns:
        Scalar mean cross-entropy of picking index 0 among ``[q.k+, q.n_1 .. q.n_K] / T``.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    q = F.normalize(queries.float(), dim=-1)
    k = F.normalize(keys.detach().float(), dim=-1)
    n = F.normalize(queue.detach().float(), dim=-1)
    positive = (q * k).sum(dim=-1, keepdim=True)  # (B, 1)
    negative = q @ n.T  # (B, K)
    logits = torch.cat([positive, negative], dim=1) / temperature  # (B, 1 + K)
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def moco_loss(queries: Sequence[Tensor], keys: Sequence[Tensor], queue: Tensor, *,
              temperature: float) -> Tensor:
    """:func:`info_nce` averaged over ordered pairs (a, b), a != b, of V >= 2 views.

    Args:
        queries: V tensors (B, D), the student's queries per view.
        keys: V tensors (B, D), the teacher's keys per view.
        queue: (K, D) negatives.
        temperature: T.
    """
    if len(queries) != len(keys) or len(queries) < 2:
        raise ValueError(f"need the same number (>= 2) of query and key views, "
                         f"got {len(queries)} and {len(keys)}")
    total, pairs = queries[0].new_zeros((), dtype=torch.float32), 0
    for a, q in enumerate(queries):
        for b, k in enumerate(keys):
            if a != b:
                total = total + info_nce(q, k, queue, temperature=temperature)
                pairs += 1
    return total / pairs


def uniform_info_nce(queue_size: int) -> float:
    """``ln(1 + K)``: the InfoNCE loss when the query is equally similar to every key."""
    return math.log(1 + queue_size)


class KeyQueue(nn.Module):
    """A first-in first-out queue of K L2-normalised keys of width D.

    Starts with random unit vectors (MoCo's initialisation, drawn from the global
    torch RNG); :meth:`push` writes new keys over the oldest, under ``no_grad``.

    Args:
        size: K.
        dim: D.
    """

    keys: Tensor
    pointer: Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"a key queue needs size >= 1 and dim >= 1, got {size}, {dim}")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=-1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.int64))

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        """Enqueue (N, D) keys (normalised and detached), oldest first out."""
        new = F.normalize(keys.detach().float(), dim=-1)[-len(self.keys):]  # at most K
        k, start = len(self.keys), int(self.pointer)
        idx = (start + torch.arange(len(new), device=self.keys.device)) % k
        self.keys[idx] = new.to(self.keys.dtype)
        self.pointer.fill_((start + len(new)) % k)

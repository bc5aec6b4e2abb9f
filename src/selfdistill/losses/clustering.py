"""Clustering with an EMA teacher: balanced assignments by Sinkhorn-Knopp (SwAV-style).

The teacher scores each window against K prototypes; instead of a softmax (which
may put every window on one prototype), its scores become *codes* by a few
Sinkhorn-Knopp iterations that make each prototype take an equal share of the
batch. The student then predicts, from one view, the codes of the other view
(swapped prediction), a cross-entropy against its softmax at temperature T.

- :func:`sinkhorn_knopp`: the (B, K) codes, rows summing to 1, columns to about B / K.
- :func:`swapped_prediction`: ``H(q_b, softmax(s_a / T))`` averaged over ordered
  pairs of distinct views.
- :func:`cluster_usage`: how many prototypes the hard assignments use,
  ``exp(entropy)`` of their histogram (the collapse monitor reports it).

Pure functions, no state; codes are computed under ``no_grad`` and detached.

References:
    Caron et al. Unsupervised Learning of Visual Features by Contrasting Cluster
    Assignments (SwAV). NeurIPS 2020.
    Cuturi. Sinkhorn Distances: Lightspeed Computation of Optimal Transport. NeurIPS 2013.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cluster_usage", "sinkhorn_knopp", "swapped_prediction"]


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, *, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """Balanced soft assignments of B samples to K prototypes (SwAV's codes).

    Starts from ``Q = exp(scores / epsilon)`` (in the log domain) and alternately
    scales its columns (prototypes) to total ``1 / K`` and its rows (samples) to
    ``1 / B``, ``iterations`` times, then returns ``B * Q``.

    Args:
        scores: (B, K) teacher scores (e.g. cosine similarities in [-1, 1]).
        epsilon: entropic regularisation > 0; smaller gives harder codes.
        iterations: Sinkhorn iterations (>= 1; SwAV uses 3).

    Returns:
        (B, K) float32 codes, detached: each row sums to 1, each column to about B / K.
    """
    if not epsilon > 0 or iterations < 1:
        raise ValueError(f"need epsilon > 0 and iterations >= 1, got {epsilon}, {iterations}")
    log_q = scores.detach().double() / epsilon  # (B, K); in logs, so sharp scores never
    log_q = log_q - torch.logsumexp(log_q.flatten(), dim=0)  # underflow a whole column
    b, k = log_q.shape
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)  # 1 / K each
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(b)  # 1 / B each
    return (log_q.exp() * b).float()


def swapped_prediction(student_scores: Sequence[Tensor], codes: Sequence[Tensor], *,
                       temperature: float = 0.1) -> Tensor:
    """SwAV's swapped prediction: the student's view a predicts the codes of view b.

    Args:
        student_scores: V tensors (B, K), the student's prototype scores per view.
        codes: V tensors (B, K), the teacher's codes per view (detached here).
        temperature: T > 0 of the student softmax (SwAV: 0.1).

    Returns:
        Scalar ``mean over (a, b), a != b, of mean_i -sum_k q_b[i, k] log p_a[i, k]``.
    """
    if len(student_scores) != len(codes) or len(codes) < 2:
        raise ValueError(f"need the same number (>= 2) of student and code views, "
                         f"got {len(student_scores)} and {len(codes)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    total, pairs = student_scores[0].new_zeros((), dtype=torch.float32), 0
    for a, s in enumerate(student_scores):
        log_p = F.log_softmax(s.float() / temperature, dim=-1)  # (B, K)
        for b, q in enumerate(codes):
            if a != b:
                total = total - (q.detach().float() * log_p).sum(dim=-1).mean()
                pairs += 1
    return total / pairs


def cluster_usage(scores: Tensor) -> float:
    """``exp(entropy)`` of the histogram of ``argmax`` assignments of (B, K) scores.

    K when every prototype gets an equal share of the batch, 1 when one takes all.
    """
    k = scores.shape[-1]
    counts = torch.bincount(scores.detach().argmax(dim=-1), minlength=k).double()
    p = counts / counts.sum().clamp(min=1.0)
    return math.exp(float(-(torch.xlogy(p, p)).sum()))

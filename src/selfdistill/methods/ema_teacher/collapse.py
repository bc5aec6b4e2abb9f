"""Detect representation collapse in self-supervised pretraining.

A self-distilled student can satisfy its teacher trivially by mapping every
window to the same output. These metrics, computed on a fixed batch of
training windows each epoch, expose the ways that happens:

- ``embedding_std``: the standard deviation over the batch of the L2-normalised
  embeddings, averaged over dimensions. Spread-out embeddings in D dimensions
  give about ``1 / sqrt(D)``; collapse to a point drives it to 0.
- ``effective_rank``: ``exp(entropy(s / sum(s)))`` of the singular values ``s``
  of the centred, normalised embedding matrix (Roy & Vetterli, 2007). Between 1
  and D; collapse onto a line or a point drives it to 1.
- ``teacher_entropy``: mean entropy (nats) of the teacher's per-window
  distribution over prototypes (DINO form). Near ln K: the teacher is uniform.
- ``teacher_marginal_entropy``: entropy of the batch-mean teacher distribution.
  ``exp`` of it is the number of prototypes in use; near 1: one prototype wins.
- ``loss_at_uniform``: 1.0 when the DINO loss sits within 1% of ln K (the loss
  of a uniform teacher and student), else 0.0.
- ``cluster_usage`` (clustering objective): ``exp(entropy)`` of the teacher's hard
  prototype assignments, the number of clusters in use; near 1: one cluster wins.
  Measured before Sinkhorn-Knopp, whose balancing would hide the collapse.
- ``key_std`` (contrastive objective): ``embedding_std`` of the teacher's keys, and
  ``contrastive_at_uniform``: 1.0 when the InfoNCE loss sits within 1% of
  ``ln(1 + queue size)`` (every key equally similar).
- ``target_std`` (masked objective): the std over windows and bars of the teacher's
  normalised per-bar targets, mean over channels; near 0: every bar has the same target.

The teacher metrics exist only in the DINO form, the others only with their
objective; otherwise they are NaN (written as ``null`` in JSON).
:class:`CollapseMonitor` compares a history record with :class:`CollapseThresholds`
and raises a :class:`CollapseWarning` (and logs it) when any threshold is crossed.

References:
    Roy & Vetterli. The effective rank: a measure of effective dimensionality. 2007.
    Caron et al. (DINO), 2021; Grill et al. (BYOL), 2020.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CollapseMonitor",
    "CollapseThresholds",
    "CollapseWarning",
    "effective_rank",
    "embedding_std",
    "loss_at_uniform",
    "marginal_entropy",
    "teacher_entropy",
]

log = logging.getLogger(__name__)


class CollapseWarning(UserWarning):
    """Self-supervised pretraining shows signs of collapse."""


def embedding_std(z: Tensor) -> float:
    """Mean over dimensions of the batch std of L2-normalised embeddings.

    Args:
        z: (B, D) embeddings, B >= 2.

    Returns:
        About ``1 / sqrt(D)`` when spread out, 0 when collapsed to a point.
    """
    zn = F.normalize(z.detach().double(), dim=-1)
    return float(zn.std(dim=0).mean())


def effective_rank(z: Tensor, *, eps: float = 1e-9) -> float:
    """Effective rank of the centred, L2-normalised embeddings (B, D); in [1, min(B, D)].

    A batch with (numerically) no spread at all counts as rank 1.
    """
    zn = F.normalize(z.detach().double(), dim=-1)
    centred = zn - zn.mean(dim=0, keepdim=True)  # (B, D)
    s = torch.linalg.svdvals(centred)
    total = float(s.sum())
    if total < eps * math.sqrt(z.shape[0]):
        return 1.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def teacher_entropy(probs: Tensor) -> float:
    """Mean entropy (nats) of per-sample distributions ``probs`` (B, K)."""
    p = probs.detach().double()
    return float(-(torch.xlogy(p, p)).sum(dim=-1).mean())


def marginal_entropy(probs: Tensor) -> float:
    """Entropy (nats) of the batch-mean distribution of ``probs`` (B, K)."""
    p = probs.detach().double().mean(dim=0)
    return float(-(torch.xlogy(p, p)).sum())


def loss_at_uniform(loss: float, k: int, *, rtol: float = 0.01) -> bool:
    """Whether a DINO loss sits within ``rtol`` of ln K (uniform teacher and student)."""
    return abs(loss - math.log(k)) <= rtol * math.log(k)


@dataclass(frozen=True)
class CollapseThresholds:
    """When :class:`CollapseMonitor` warns.

    Attributes:
        min_std_ratio: warn when ``embedding_std * sqrt(D)`` falls below this
            (1 is fully spread, 0 collapsed).
        min_effective_rank: warn when the effective rank falls below this.
        max_entropy_fraction: warn when ``teacher_entropy`` exceeds this fraction
            of ln K (teacher close to uniform).
        min_prototypes_used: warn when ``exp(teacher_marginal_entropy)``, the
            number of prototypes the teacher uses, falls below this.
        min_clusters_used: warn when ``cluster_usage`` falls below this.
        min_target_std: warn when ``target_std`` falls below this (1 is healthy).
    """

    min_std_ratio: float = 0.1
    min_effective_rank: float = 1.5
    max_entropy_fraction: float = 0.98
    min_prototypes_used: float = 2.0
    min_clusters_used: float = 2.0
    min_target_std: float = 0.1


class CollapseMonitor:
    """Check each epoch's record and warn (``CollapseWarning`` + log) on collapse.

    Args:
        embedding_dim: D of the monitored embeddings.
        prototypes: K of the DINO head, or None in the BYOL form.
        thresholds: see :class:`CollapseThresholds`.
        clusters: K of the clustering head, or None without the clustering objective.
        key_dim: width of the contrastive keys, or None without the contrastive objective.

    ``target_std`` is checked whenever the record holds a finite one (masked objective).
    """

    def __init__(self, embedding_dim: int, prototypes: int | None = None,
                 thresholds: CollapseThresholds | None = None, *, clusters: int | None = None,
                 key_dim: int | None = None) -> None:
        self.embedding_dim, self.prototypes = embedding_dim, prototypes
        self.clusters, self.key_dim = clusters, key_dim
        self.thresholds = thresholds or CollapseThresholds()

    def problems(self, record: dict[str, float]) -> list[str]:
        """What in ``record`` crosses a threshold (empty when healthy)."""
        th, out = self.thresholds, []
        ratio = record["embedding_std"] * math.sqrt(self.embedding_dim)
        if ratio < th.min_std_ratio:
            out.append(f"embedding_std {record['embedding_std']:.4g} is "
                       f"{ratio:.3g} x 1/sqrt(D), below {th.min_std_ratio}")
        if record["effective_rank"] < th.min_effective_rank:
            out.append(f"effective_rank {record['effective_rank']:.3g} "
                       f"is below {th.min_effective_rank}")
        if self.prototypes is not None:
            out += self._teacher_problems(record, self.prototypes)
        return out + self._objective_problems(record)

    def _objective_problems(self, record: dict[str, float]) -> list[str]:
        """Clustering, contrastive and masked checks (NaN metrics never warn)."""
        th, out = self.thresholds, []
        usage = record.get("cluster_usage", math.nan)
        if self.clusters is not None and usage < th.min_clusters_used:
            out.append(f"the teacher assigns windows to {usage:.3g} of {self.clusters} "
                       f"clusters (below {th.min_clusters_used})")
        key_std = record.get("key_std", math.nan)
        if self.key_dim is not None and key_std * math.sqrt(self.key_dim) < th.min_std_ratio:
            out.append(f"contrastive key_std {key_std:.4g} is "
                       f"{key_std * math.sqrt(self.key_dim):.3g} x 1/sqrt(D), "
                       f"below {th.min_std_ratio}")
        if self.key_dim is not None and record.get("contrastive_at_uniform", 0.0) >= 1.0:
            out.append(f"contrastive loss {record.get('loss_contrastive', math.nan):.4g} sits "
                       "at ln(1 + queue size): every key looks alike")
        target_std = record.get("target_std", math.nan)
        if target_std < th.min_target_std:
            out.append(f"masked-modeling target_std {target_std:.3g} is below "
                       f"{th.min_target_std}: every bar has the same target")
        return out

    def _teacher_problems(self, record: dict[str, float], k: int) -> list[str]:
        th, out, ln_k = self.thresholds, [], math.log(k)
        ent = record.get("teacher_entropy", math.nan)
        if ent > th.max_entropy_fraction * ln_k:
            out.append(f"teacher_entropy {ent:.3g} is near ln K = {ln_k:.3g} (uniform teacher)")
        used = math.exp(record.get("teacher_marginal_entropy", math.nan))
        if used < th.min_prototypes_used:
            out.append(f"the teacher uses {used:.3g} of {k} prototypes "
                       f"(below {th.min_prototypes_used})")
        if record.get("loss_at_uniform", 0.0) >= 1.0:
            out.append(f"loss {record.get('loss', math.nan):.4g} sits at ln K = {ln_k:.4g}")
        return out

    def check(self, record: dict[str, float], *, label: str = "pretrain") -> list[str]:
        """Warn once per problem found in ``record``; return the problems."""
        found = self.problems(record)
        for problem in found:
            msg = f"{label} epoch {int(record.get('epoch', 0))}: possible collapse: {problem}"
            log.warning("%s", msg)
            warnings.warn(msg, CollapseWarning, stacklevel=2)
        return found

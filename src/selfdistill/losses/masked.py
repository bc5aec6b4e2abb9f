"""Masked modeling with an EMA teacher (data2vec / iBOT family).

The student sees a window with some bars replaced by a mask token and predicts,
at each masked bar, the teacher's representation of that bar computed from the
*unmasked* window. The teacher is the EMA of the student, so the targets are
contextual features the student itself is learning, not raw inputs.

- :func:`normalised_targets`: the teacher's per-bar features layer-normalised over
  the feature dimension (no affine), detached; data2vec normalises its targets so
  their scale cannot drift towards a trivial constant.
- :func:`masked_prediction_loss`: the squared error (or smooth L1) between student
  predictions and those targets at the masked bars: the mean over each window's
  masked bars, then over windows (so micro-batches of a batch add up exactly).

Pure functions; the mask itself is drawn by
:func:`selfdistill.training.augment.random_bar_mask`.

References:
    Baevski et al. data2vec: A General Framework for Self-supervised Learning in Speech,
    Vision and Language. ICML 2022.
    Zhou et al. iBOT: Image BERT Pre-Training with Online Tokenizer. ICLR 2022.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MASKED_LOSSES", "masked_prediction_loss", "normalised_targets"]

MASKED_LOSSES = ("l2", "smooth_l1")


def normalised_targets(features: Tensor) -> Tensor:
    """Layer-normalise per-bar teacher features over their D channels; detached.

    Args:
        features: (B, D, W) per-bar features of the teacher on the unmasked window.

    Returns:
        (B, D, W) float32: each bar's D-vector with mean 0 and variance 1.
    """
    h = features.detach().float().transpose(1, 2)  # (B, W, D)
    return F.layer_norm(h, (h.shape[-1],)).transpose(1, 2)  # (B, D, W)


def masked_prediction_loss(predictions: Tensor, targets: Tensor, mask: Tensor, *,
                           kind: str = "l2", beta: float = 1.0) -> Tensor:
    """Regression loss at the masked bars, averaged per window, then over windows.

    Args:
        predictions: (B, D, W) student predictions of every bar's target.
        targets: (B, D, W) teacher targets (detached here; see :func:`normalised_targets`).
        mask: (B, W) bool, True where the student's input bar was masked.
        kind: ``l2`` (squared error, mean over D) or ``smooth_l1`` (Huber with ``beta``).
        beta: the smooth-L1 threshold.

    Returns:
        Scalar ``mean_b( sum_t m_bt * l_bt / max(1, sum_t m_bt) )``, ``l_bt`` the
        per-bar loss averaged over D; a window without masked bars adds 0.

    Raises:
        ValueError: unknown ``kind`` or mismatched shapes.
    """
    if kind not in MASKED_LOSSES:
        raise ValueError(f"masked loss '{kind}' is not one of: {', '.join(MASKED_LOSSES)}")
    if predictions.shape != targets.shape or mask.shape != (predictions.shape[0],
                                                             predictions.shape[2]):
        raise ValueError(f"need predictions and targets (B, D, W) and a mask (B, W), got "
                         f"{tuple(predictions.shape)}, {tuple(targets.shape)}, "
                         f"{tuple(mask.shape)}")
    t = targets.detach().float()
    if kind == "l2":
        per_bar = (predictions.float() - t).pow(2).mean(dim=1)  # (B, W)
    else:
        per_bar = F.smooth_l1_loss(predictions.float(), t, reduction="none",
                                   beta=beta).mean(dim=1)
    m = mask.to(per_bar.dtype)
    per_window = (per_bar * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B,)
    return per_window.mean() if per_window.numel() else torch.zeros((), device=t.device)

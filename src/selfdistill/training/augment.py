"""Views of candle-feature windows for self-supervised pretraining.

Each augmentation maps a batch of windows (B, F, W) of *scaled* per-bar features
to a new batch of the same shape, drawing its randomness from an explicit
:class:`torch.Generator` (so a run, and a resumed run, is reproducible). All of
them only rearrange or perturb bars that are already inside the window, so a
view never sees a bar later than the window's last one.

- :func:`jitter`: additive Gaussian noise (measurement noise).
- :func:`scale`: one multiplicative factor per sample and feature (volatility level).
- :func:`magnitude_warp`: a smooth multiplicative curve over time (slowly changing scale).
- :func:`time_mask`: a contiguous span of bars set to 0, the scaled features' mean
  (a missing stretch of history).
- :func:`crop_resize`: a random contiguous crop of the window stretched back to W
  bars by linear interpolation (the same pattern at a different speed).

:func:`augment` applies the enabled ones in the order crop, warp, scale, jitter, mask.

For masked modeling, :func:`random_bar_mask` picks the bars a student must predict
(the same number in every window) and :func:`apply_bar_mask` puts a token in their place.

References:
    Um et al. Data Augmentation of Wearable Sensor Data for Parkinson's Disease
    Monitoring using Convolutional Neural Networks. 2017 (jitter, scaling,
    magnitude warping). Grill et al. Bootstrap Your Own Latent (BYOL). 2020.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "AugmentSpec",
    "apply_bar_mask",
    "augment",
    "crop_resize",
    "jitter",
    "magnitude_warp",
    "random_bar_mask",
    "scale",
    "time_mask",
]


@dataclass(frozen=True)
class AugmentSpec:
    """Strength of each augmentation; 0 (or ``crop_min=1``) switches one off.

    Attributes:
        jitter: std of the additive noise, in units of the scaled features.
        scaling: std of the per-(sample, feature) factor around 1.
        magnitude_warp: std of the warp curve's knots around 1.
        warp_knots: interior knots of the warp curve (>= 1).
        time_mask: largest fraction of the window masked (0 .. 1).
        crop_min: smallest crop length as a fraction of W (0 < crop_min <= 1).
    """

    jitter: float = 0.05
    scaling: float = 0.1
    magnitude_warp: float = 0.1
    warp_knots: int = 4
    time_mask: float = 0.1
    crop_min: float = 0.8

    def __post_init__(self) -> None:
        for name in ("jitter", "scaling", "magnitude_warp"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.time_mask <= 1.0:
            raise ValueError(f"augment.time_mask must be in [0, 1], got {self.time_mask}")
        if not 0.0 < self.crop_min <= 1.0:
            raise ValueError(f"augment.crop_min must be in (0, 1], got {self.crop_min}")
        if self.warp_knots < 1:
            raise ValueError(f"augment.warp_knots must be >= 1, got {self.warp_knots}")


def _rand(shape: tuple[int, ...], x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)


def _randn(shape: tuple[int, ...], x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)


def jitter(x: Tensor, sigma: float, *, generator: torch.Generator) -> Tensor:
    """``x + sigma * N(0, 1)``; x: (B, F, W) -> (B, F, W)."""
    return x + sigma * _randn(tuple(x.shape), x, generator)


def scale(x: Tensor, sigma: float, *, generator: torch.Generator) -> Tensor:
    """``x * (1 + sigma * N(0, 1))`` with one factor per sample and feature; (B, F, W)."""
    b, f, _ = x.shape
    return x * (1.0 + sigma * _randn((b, f, 1), x, generator))


def magnitude_warp(x: Tensor, sigma: float, *, knots: int = 4,
                   generator: torch.Generator) -> Tensor:
    """Multiply by a smooth random curve ``1 + sigma * N(0, 1)`` at ``knots + 2`` points.

    The curve is linearly interpolated over the W bars, one per sample and feature.

    Args:
        x: (B, F, W) windows.
        sigma: std of the curve's knot values around 1.
        knots: interior knots; the curve also has one at each end.
    """
    b, f, w = x.shape
    points = 1.0 + sigma * _randn((b, f, knots + 2), x, generator)  # (B, F, K + 2)
    curve = F.interpolate(points, size=w, mode="linear", align_corners=True)  # (B, F, W)
    return x * curve


def time_mask(x: Tensor, max_fraction: float, *, generator: torch.Generator) -> Tensor:
    """Set a random contiguous span of up to ``max_fraction * W`` bars to 0, per sample.

    Args:
        x: (B, F, W) windows of scaled features (0 is the training mean).
        max_fraction: largest masked fraction of the window, in [0, 1].
    """
    b, _, w = x.shape
    length = (_rand((b,), x, generator) * (max_fraction * w + 1)).floor().clamp(max=w)  # (B,)
    start = (_rand((b,), x, generator) * (w - length + 1)).floor()  # (B,)
    t = torch.arange(w, device=x.device, dtype=x.dtype)  # (W,)
    masked = (t >= start[:, None]) & (t < (start + length)[:, None])  # (B, W)
    return x.masked_fill(masked[:, None, :], 0.0)


def crop_resize(x: Tensor, min_fraction: float, *, generator: torch.Generator) -> Tensor:
    """Crop a random span of ``[min_fraction * W, W]`` bars and stretch it back to W.

    Args:
        x: (B, F, W) windows.
        min_fraction: smallest crop as a fraction of W, in (0, 1].

    Returns:
        (B, F, W): linear interpolation of the crop at W evenly spaced points.
    """
    b, f, w = x.shape
    low = max(2.0, min_fraction * w) if w > 1 else 1.0
    length = low + _rand((b,), x, generator) * (w - low)  # (B,) real-valued span
    start = _rand((b,), x, generator) * (w - length)  # (B,)
    frac = torch.linspace(0.0, 1.0, w, device=x.device, dtype=x.dtype)  # (W,)
    pos = start[:, None] + frac[None, :] * (length[:, None] - 1.0)  # (B, W) in [0, W - 1]
    left = pos.floor().clamp(0, w - 1).long()
    right = (left + 1).clamp(max=w - 1)
    weight = (pos - left.to(x.dtype))[:, None, :]  # (B, 1, W)
    gather_l = x.gather(2, left[:, None, :].expand(b, f, w))
    gather_r = x.gather(2, right[:, None, :].expand(b, f, w))
    return gather_l + weight * (gather_r - gather_l)


def augment(x: Tensor, spec: AugmentSpec, *, generator: torch.Generator) -> Tensor:
    """One random view of each window: crop, warp, scale, jitter, mask (those enabled).

    Args:
        x: (B, F, W) windows; not modified.
        spec: strengths; see :class:`AugmentSpec`.
        generator: the only source of randomness.

    Returns:
        (B, F, W) view batch.
    """
    if x.dim() != 3:
        raise ValueError(f"augment needs windows of shape (B, F, W), got {tuple(x.shape)}")
    if spec.crop_min < 1.0:
        x = crop_resize(x, spec.crop_min, generator=generator)
    if spec.magnitude_warp > 0:
        x = magnitude_warp(x, spec.magnitude_warp, knots=spec.warp_knots, generator=generator)
    if spec.scaling > 0:
        x = scale(x, spec.scaling, generator=generator)
    if spec.jitter > 0:
        x = jitter(x, spec.jitter, generator=generator)
    if spec.time_mask > 0:
        x = time_mask(x, spec.time_mask, generator=generator)
    return x


def random_bar_mask(batch: int, window: int, ratio: float, *, generator: torch.Generator,
                    device: torch.device | str = "cpu") -> Tensor:
    """(B, W) bool: ``max(1, round(ratio * W))`` bars of each window, chosen at random.

    Every window gets the same number of masked bars, so per-window means of a
    masked loss weigh every window alike.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    n = min(window, max(1, round(ratio * window)))
    noise = torch.rand((batch, window), generator=generator, device=device)  # (B, W)
    picked = noise.argsort(dim=1)[:, :n]  # (B, n) distinct bars per window
    mask = torch.zeros((batch, window), dtype=torch.bool, device=device)
    return mask.scatter_(1, picked, True)


def apply_bar_mask(x: Tensor, mask: Tensor, token: Tensor) -> Tensor:
    """Windows (B, F, W) with the bars where ``mask`` (B, W) is True replaced by ``token`` (F,)."""
    return torch.where(mask[:, None, :], token.to(x.dtype)[None, :, None], x)

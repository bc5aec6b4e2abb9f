"""Candle-window augmentations: shapes, reproducibility, and what each one does."""

from __future__ import annotations

import pytest
import torch

from selfdistill.training.augment import (
    AugmentSpec,
    augment,
    crop_resize,
    jitter,
    magnitude_warp,
    scale,
    time_mask,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _windows(b: int = 16, f: int = 4, w: int = 24) -> torch.Tensor:
    return torch.randn(b, f, w, generator=_gen(123))


def test_same_generator_state_gives_the_same_view() -> None:
    x = _windows()
    spec = AugmentSpec()
    a = augment(x, spec, generator=_gen(5))
    b = augment(x, spec, generator=_gen(5))
    c = augment(x, spec, generator=_gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape


def test_augment_leaves_the_input_unchanged() -> None:
    x = _windows()
    before = x.clone()
    augment(x, AugmentSpec(time_mask=0.5), generator=_gen())
    assert torch.equal(x, before)


def test_everything_off_is_the_identity() -> None:
    x = _windows()
    spec = AugmentSpec(jitter=0, scaling=0, magnitude_warp=0, time_mask=0, crop_min=1.0)
    assert torch.equal(augment(x, spec, generator=_gen()), x)


def test_jitter_adds_noise_of_the_requested_std() -> None:
    x = torch.zeros(64, 4, 64)
    noise = jitter(x, 0.3, generator=_gen())
    assert abs(float(noise.std()) - 0.3) < 0.01


def test_scale_is_one_factor_per_sample_and_feature() -> None:
    x = torch.ones(32, 3, 10)
    out = scale(x, 0.2, generator=_gen())
    assert torch.allclose(out, out[:, :, :1].expand_as(out))  # constant over time
    assert float(out[:, :, 0].std()) == pytest.approx(0.2, abs=0.06)


def test_magnitude_warp_is_smooth_over_time() -> None:
    x = torch.ones(8, 2, 50)
    out = magnitude_warp(x, 0.3, knots=3, generator=_gen())
    # piecewise linear with 5 knots over 50 bars: second differences vanish except at knots
    second = out.diff(dim=2).diff(dim=2).abs()
    assert int((second > 1e-5).sum(dim=2).max()) <= 6
    assert float((out - 1).abs().max()) > 0.05


def test_time_mask_zeroes_one_contiguous_span_within_the_limit() -> None:
    x = torch.ones(200, 2, 20)
    out = time_mask(x, 0.25, generator=_gen())
    zero = out[:, 0, :] == 0  # (B, W)
    lengths = zero.sum(dim=1)
    assert int(lengths.max()) <= 5
    assert int(lengths.max()) >= 4  # long spans do occur
    for row in zero:
        idx = row.nonzero().flatten()
        if len(idx):
            assert int(idx[-1] - idx[0] + 1) == len(idx)  # contiguous
    assert torch.equal(out[:, 0, :], out[:, 1, :])  # same span for every feature


def test_crop_resize_keeps_ramps_monotone_and_in_range() -> None:
    w = 16
    ramp = torch.arange(w, dtype=torch.float32).expand(10, 1, w).clone()
    out = crop_resize(ramp, 0.5, generator=_gen())
    assert out.shape == ramp.shape
    assert bool((out.diff(dim=2) >= -1e-5).all())
    assert float(out.min()) >= 0
    assert float(out.max()) <= w - 1
    span = out[:, 0, -1] - out[:, 0, 0]
    assert float(span.min()) >= 0.5 * w - 1 - 1e-4  # at least the minimum crop
    assert float(span.max()) <= w - 1 + 1e-4


def test_crop_of_full_fraction_is_identity() -> None:
    x = _windows()
    assert torch.allclose(crop_resize(x, 1.0, generator=_gen()), x, atol=1e-5)


@pytest.mark.parametrize(
    ("field", "value"),
    [("jitter", -0.1), ("time_mask", 1.5), ("crop_min", 0.0), ("warp_knots", 0)],
)
def test_bad_spec_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        AugmentSpec(**{field: value})


def test_augment_rejects_unwindowed_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, F, W\)"):
        augment(torch.zeros(4, 3), AugmentSpec(), generator=_gen())

"""Tests for selfdistill.labels: definitions, intervals, dropped rows, causality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from candle_helpers import make_candles as _make_candles
from candle_helpers import scale_prices
from selfdistill import labels as labels_module
from selfdistill.config import LabelsConfig
from selfdistill.data.candles import validate_candles
from selfdistill.errors import ConfigError, DataError
from selfdistill.labels import (
    BEAR,
    BULL,
    CLASS_NAMES,
    SIDEWAYS,
    make_labels,
    trailing_volatility,
)

METHODS = ("forward", "triple_barrier", "same_bar")


def make_candles(n: int, seed: int = 0, gaps: tuple[int, ...] = ()) -> pd.DataFrame:
    """This module's candles (see ``candle_helpers.make_candles``)."""
    return _make_candles(n, seed, gaps, noisy_bars=False)


def perturb_from(candles: pd.DataFrame, first: int, seed: int) -> pd.DataFrame:
    """Rescale every bar from ``first`` on by a random factor and re-draw gap marks."""
    rng = np.random.default_rng(seed)
    factor = np.ones(len(candles))
    factor[first:] = np.exp(rng.normal(0.0, 0.3, len(candles) - first))
    out = scale_prices(candles, factor)
    gaps = out["gap_before"].to_numpy().copy()
    gaps[first:] = rng.random(len(candles) - first) < 0.2
    out["gap_before"] = gaps
    return out


def ewm_std_reference(r: np.ndarray, span: int, t: int) -> float:
    """Bias-corrected EWM std of the finite r[0..t], weights by absolute position."""
    alpha = 2.0 / (span + 1.0)
    idx = np.flatnonzero(np.isfinite(r[: t + 1]))
    if len(idx) < span:
        return float("nan")
    w = (1.0 - alpha) ** (t - idx)
    x = r[idx]
    mean = np.sum(w * x) / np.sum(w)
    biased = np.sum(w * (x - mean) ** 2) / np.sum(w)
    return float(np.sqrt(biased * np.sum(w) ** 2 / (np.sum(w) ** 2 - np.sum(w**2))))


def returns(candles: pd.DataFrame) -> np.ndarray:
    r = np.r_[np.nan, np.diff(np.log(candles["close"].to_numpy()))]
    r[candles["gap_before"].to_numpy()] = np.nan
    return r


# ------------------------------------------------------------------ volatility


def test_trailing_volatility_matches_explicit_ewm_formula() -> None:
    candles = make_candles(120, seed=1, gaps=(40,))
    sigma = trailing_volatility(candles, span=10)
    r = returns(candles)
    for t in (5, 10, 11, 39, 40, 41, 119):
        assert sigma[t] == pytest.approx(ewm_std_reference(r, 10, t), rel=1e-9, nan_ok=True)
    assert np.isnan(sigma[:10]).all()
    assert np.isfinite(sigma[10])


@given(seed=st.integers(0, 1000), first=st.integers(1, 299))
def test_trailing_volatility_uses_bars_up_to_t_only(seed: int, first: int) -> None:
    candles = make_candles(300, seed=seed)
    before = trailing_volatility(candles, span=20)
    after = trailing_volatility(perturb_from(candles, first, seed + 1), span=20)
    np.testing.assert_array_equal(before[:first], after[:first])


# --------------------------------------------------------------- definitions


def test_forward_labels_follow_the_definition_row_by_row() -> None:
    candles = make_candles(400, seed=2)
    cfg = LabelsConfig(method="forward", horizon=5, k=0.7, vol_span=30)
    labels = make_labels(candles, cfg)
    c = candles["close"].to_numpy()
    sigma = trailing_volatility(candles, 30)
    t = labels.start
    r = np.log(c[t + 5] / c[t])
    band = 0.7 * sigma[t] * np.sqrt(5)
    expected = np.where(r > band, BULL, np.where(r < -band, BEAR, SIDEWAYS))
    np.testing.assert_array_equal(labels.y.to_numpy(), expected)
    np.testing.assert_array_equal(labels.end, t + 5)
    np.testing.assert_array_equal(t, np.arange(30, 400 - 5))  # warm-up and horizon dropped
    assert set(np.unique(expected)) == {BULL, BEAR, SIDEWAYS}


def triple_barrier_reference(c: np.ndarray, sigma: np.ndarray, t: int, h: int,
                             k: float) -> tuple[int, int]:
    barrier = k * sigma[t] * np.sqrt(h)
    for j in range(1, h + 1):
        move = np.log(c[t + j] / c[t])
        if move > barrier:
            return BULL, t + j
        if move < -barrier:
            return BEAR, t + j
    return SIDEWAYS, t + h


def test_triple_barrier_matches_a_loop_reference() -> None:
    candles = make_candles(300, seed=4)
    cfg = LabelsConfig(method="triple_barrier", horizon=8, k=0.6, vol_span=20)
    labels = make_labels(candles, cfg)
    c, sigma = candles["close"].to_numpy(), trailing_volatility(candles, 20)
    ref = [triple_barrier_reference(c, sigma, int(t), 8, 0.6) for t in labels.start]
    np.testing.assert_array_equal(labels.y.to_numpy(), [y for y, _ in ref])
    np.testing.assert_array_equal(labels.end, [e for _, e in ref])
    assert (labels.end > labels.start).all()
    assert (labels.end <= labels.start + 8).all()
    assert (labels.end[labels.y.to_numpy() != SIDEWAYS] < labels.start[
        labels.y.to_numpy() != SIDEWAYS] + 8).any()


def test_triple_barrier_in_small_blocks_gives_the_same_labels(
        monkeypatch: pytest.MonkeyPatch) -> None:
    candles = make_candles(300, seed=4)
    cfg = LabelsConfig(method="triple_barrier", horizon=8, k=0.6, vol_span=20)
    whole = make_labels(candles, cfg)
    monkeypatch.setattr(labels_module, "_CHUNK_CELLS", 7 * 8)  # blocks of 7 rows
    blocked = make_labels(candles, cfg)
    pd.testing.assert_series_equal(whole.y, blocked.y)
    np.testing.assert_array_equal(whole.end, blocked.end)


def test_same_bar_labels_describe_bar_t_and_look_nowhere_else() -> None:
    candles = make_candles(200, seed=5)
    labels = make_labels(candles, LabelsConfig(method="same_bar", k=0.5, vol_span=20))
    r, sigma = returns(candles), trailing_volatility(candles, 20)
    t = labels.start
    expected = np.where(r[t] > 0.5 * sigma[t], BULL,
                        np.where(r[t] < -0.5 * sigma[t], BEAR, SIDEWAYS))
    np.testing.assert_array_equal(labels.y.to_numpy(), expected)
    np.testing.assert_array_equal(labels.end, labels.start)
    assert labels.horizon == 0
    assert labels.method == "same_bar"
    assert t[-1] == 199  # no horizon to run past the data


def test_label_set_carries_index_dtype_and_names() -> None:
    candles = make_candles(200)
    labels = make_labels(candles, LabelsConfig(horizon=3, vol_span=10))
    assert labels.y.dtype == np.int8  # 1 byte a row: the class ids fit
    assert labels.y.index.equals(candles.index[labels.start])
    assert labels.class_names == CLASS_NAMES == ("bull", "bear", "sideways")
    assert labels.start.dtype == labels.end.dtype == np.int64
    assert sum(labels.class_counts().values()) == len(labels) == len(labels.start)


def test_k_zero_leaves_only_flat_moves_sideways() -> None:
    candles = make_candles(200)
    y = make_labels(candles, LabelsConfig(k=0.0, horizon=4, vol_span=10)).y
    assert (y != SIDEWAYS).all()


# ------------------------------------------------------------------ dropped rows


@pytest.mark.parametrize("method", ["forward", "triple_barrier"])
def test_rows_whose_horizon_contains_a_gap_are_dropped(method: str) -> None:
    gap, h = 100, 6
    candles = make_candles(200, gaps=(gap,))
    start = make_labels(candles, LabelsConfig(method=method, horizon=h, vol_span=10)).start
    assert not np.isin(np.arange(gap - h, gap), start).any()  # (t, t + h] holds the gap
    assert gap - h - 1 in start
    assert gap in start


def test_same_bar_drops_the_bar_after_a_gap() -> None:
    candles = make_candles(100, gaps=(50,))
    start = make_labels(candles, LabelsConfig(method="same_bar", vol_span=10)).start
    assert 50 not in start
    assert 49 in start
    assert 51 in start


def test_too_little_data_raises_with_the_fix() -> None:
    with pytest.raises(DataError, match="horizon"):
        make_labels(make_candles(10), LabelsConfig(horizon=12))
    with pytest.raises(DataError, match="vol_span"):
        make_labels(make_candles(60), LabelsConfig(horizon=2, vol_span=100))


def test_unknown_method_raises_config_error() -> None:
    cfg = LabelsConfig.model_construct(method="trend", horizon=3, k=0.5,  # type: ignore[arg-type]
                                       vol_span=10)
    with pytest.raises(ConfigError, match="forward"):
        make_labels(make_candles(50), cfg)


# --------------------------------------------------------------------- causality


@given(seed=st.integers(0, 1000), first=st.integers(2, 299), h=st.integers(1, 15),
       method=st.sampled_from(METHODS))
def test_bars_after_the_horizon_never_change_a_label(seed: int, first: int, h: int,
                                                     method: str) -> None:
    cfg = LabelsConfig(method=method, horizon=h, k=0.5, vol_span=10)
    candles = make_candles(300, seed=seed)
    a = make_labels(candles, cfg)
    keep_a = a.start + a.horizon < first
    try:
        b = make_labels(perturb_from(candles, first, seed + 1), cfg)
    except DataError:
        # the re-drawn gaps can leave no bar labellable; then no row of `a` may have
        # its interval before the first changed bar either (those rows would survive)
        assert not keep_a.any()
        return
    # every row whose interval [t, end] ends before the first changed bar is unchanged
    keep_b = b.start + b.horizon < first
    np.testing.assert_array_equal(a.start[keep_a], b.start[keep_b])
    np.testing.assert_array_equal(a.end[keep_a], b.end[keep_b])
    np.testing.assert_array_equal(a.y.to_numpy()[keep_a], b.y.to_numpy()[keep_b])


def test_the_bar_at_the_horizon_alone_can_flip_the_forward_label() -> None:
    h, t = 6, 150
    candles = make_candles(300, seed=9)
    cfg = LabelsConfig(method="forward", horizon=h, vol_span=20)
    row = int(np.flatnonzero(make_labels(candles, cfg).start == t)[0])
    for scale, label in ((1.5, BULL), (0.6, BEAR)):
        factor = np.ones(len(candles))
        factor[t + h] = scale  # one bar, inside (t, t + h]
        moved = scale_prices(candles, factor)
        assert make_labels(moved, cfg).y.iloc[row] == label


@pytest.mark.parametrize("offset", [1, 4, 8])
def test_triple_barrier_first_touch_sets_the_label_and_end(offset: int) -> None:
    h, t = 8, 120
    candles = make_candles(200, seed=6)
    cfg = LabelsConfig(method="triple_barrier", horizon=h, vol_span=20)
    row = int(np.flatnonzero(make_labels(candles, cfg).start == t)[0])
    factor = np.ones(len(candles))
    factor[t + offset] = 0.7  # a one-bar crash touches the lower barrier
    jumped = scale_prices(candles, factor)
    labels = make_labels(jumped, cfg)
    first_touch = min(offset, int(make_labels(candles, cfg).end[row]) - t)
    assert labels.end[row] == t + first_touch
    if first_touch == offset:
        assert labels.y.iloc[row] == BEAR


def test_validated_candles_with_a_hole_drop_labels_spanning_it(candles: pd.DataFrame) -> None:
    holed = validate_candles(candles.drop(index=candles.index[300:305]).drop(
        columns="gap_before", errors="ignore"), interval="60", gaps="mark")
    labels = make_labels(holed, LabelsConfig(horizon=12, vol_span=50))
    assert not np.isin(np.arange(288, 300), labels.start).any()
    assert 287 in labels.start
    assert 300 in labels.start
    assert labels.y.index.equals(holed.index[labels.start])

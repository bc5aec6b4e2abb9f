"""Tests for selfdistill.features: causality, values against brute force, the scaler."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import skew

from candle_helpers import make_candles as _make_candles
from candle_helpers import scale_prices
from selfdistill.config import FeaturesConfig
from selfdistill.data.candles import validate_candles
from selfdistill.errors import ConfigError, DataError, ModelFileError, NotFittedError
from selfdistill.features import (
    SCALER_KINDS,
    Scaler,
    compute_features,
    feature_columns,
    feature_names,
    feature_warmup,
)
from selfdistill.features import causal as causal_module

SMALL = FeaturesConfig(return_windows=[1, 3, 6], volatility_windows=[4, 8], volume_window=5,
                       range_window=4, ma_windows=[5, 10], skew_window=6)


def make_candles(n: int, seed: int = 0, gaps: tuple[int, ...] = ()) -> pd.DataFrame:
    """This module's candles (see ``candle_helpers.make_candles``)."""
    return _make_candles(n, seed, gaps)


def perturb_from(candles: pd.DataFrame, first: int, seed: int) -> pd.DataFrame:
    """Rescale every bar from ``first`` on by a random factor, change volume and gaps."""
    rng = np.random.default_rng(seed)
    factor = np.ones(len(candles))
    factor[first:] = np.exp(rng.normal(0.0, 0.2, len(candles) - first))
    out = scale_prices(candles, factor)
    volume, gaps = out["volume"].to_numpy().copy(), out["gap_before"].to_numpy().copy()
    volume[first:] = rng.gamma(1.0, 50.0, len(candles) - first)
    gaps[first:] = rng.random(len(candles) - first) < 0.1
    out["volume"], out["gap_before"] = volume, gaps
    return out


# ------------------------------------------------------------------------- shape


def test_columns_index_and_dtype() -> None:
    candles = make_candles(300)
    feats = compute_features(candles)
    assert list(feats.columns) == feature_names()
    assert feats.index.equals(candles.index)
    assert (feats.dtypes == np.float64).all()
    assert feats.iloc[feature_warmup():].notna().all().all()


def test_feature_names_are_unique_and_follow_config() -> None:
    cfg = FeaturesConfig(return_windows=[1, 5, 5], ma_windows=[7])
    names = feature_names(cfg)
    assert len(names) == len(set(names))
    assert [n for n in names if n.startswith("ret_")] == ["ret_1", "ret_5"]
    assert "ma_dist_7" in names
    assert list(compute_features(make_candles(120), cfg).columns) == names


def test_missing_column_raises() -> None:
    with pytest.raises(DataError, match="volume"):
        compute_features(make_candles(50).drop(columns="volume"))


def test_feature_columns_are_the_frame_one_column_at_a_time() -> None:
    candles = make_candles(400, seed=2, gaps=(120, 121, 300))
    frame = compute_features(candles, SMALL)
    seen = []
    for name, column in feature_columns(candles, SMALL):
        assert column.dtype == np.float64
        assert column.shape == (400,)
        np.testing.assert_array_equal(column, frame[name].to_numpy())
        column[:] = 1e9  # the caller owns the column: later ones must not see this
        seen.append(name)
    assert sorted(seen) == sorted(feature_names(SMALL))
    assert len(seen) == len(set(seen))


def test_features_in_blocks_equal_the_whole_series(monkeypatch: pytest.MonkeyPatch) -> None:
    candles = make_candles(1000, seed=5, gaps=(130, 131, 640))
    whole = compute_features(candles, SMALL)
    monkeypatch.setattr(causal_module, "_BLOCK", 64)  # 16 blocks, windows straddle them
    blocked = compute_features(candles, SMALL)
    pd.testing.assert_frame_equal(blocked, whole, check_exact=False, rtol=1e-9, atol=1e-12)
    # blocks start at fixed bars: the future still never reaches the past
    moved = compute_features(perturb_from(candles, 500, seed=1), SMALL)
    pd.testing.assert_frame_equal(moved.iloc[:500], blocked.iloc[:500], check_exact=True)


# --------------------------------------------------------------------- causality


@given(seed=st.integers(0, 10_000), first=st.integers(1, 399))
def test_changing_future_bars_never_changes_past_features(seed: int, first: int) -> None:
    candles = make_candles(400, seed=seed % 7)
    before = compute_features(candles)
    after = compute_features(perturb_from(candles, first, seed))
    pd.testing.assert_frame_equal(before.iloc[:first], after.iloc[:first], check_exact=True)
    # the perturbation is real: the first changed bar's own features move
    assert not np.allclose(before.iloc[first:].fillna(0), after.iloc[first:].fillna(0))


def test_changing_one_bar_changes_nothing_before_it_for_every_position() -> None:
    candles = make_candles(160, seed=3)
    base = compute_features(candles, SMALL).to_numpy()
    for pos in range(1, 160):
        factor = np.ones(160)
        factor[pos] = 1.07
        bumped = scale_prices(candles, factor)
        volume = bumped["volume"].to_numpy().copy()
        volume[pos] *= 3.0
        bumped["volume"] = volume
        feats = compute_features(bumped, SMALL).to_numpy()
        np.testing.assert_array_equal(feats[:pos], base[:pos])


# ------------------------------------------------------------ values vs brute force


def _brute_row(candles: pd.DataFrame, t: int) -> dict[str, float]:
    c, h, lo, v = (candles[k].to_numpy() for k in ("close", "high", "low", "volume"))
    r = np.diff(np.log(c))  # r[i] is the return into bar i + 1
    return {
        "ret_3": np.log(c[t] / c[t - 3]),
        "vol_8": np.sqrt(np.mean(r[t - 8:t] ** 2)),
        "range": np.log(h[t] / lo[t]),
        "range_mean_4": np.mean(np.log(h[t - 3:t + 1] / lo[t - 3:t + 1])),
        "volume_rel_5": np.log(1.0 + v[t] / np.mean(v[t - 4:t + 1])),
        "close_pos": (c[t] - lo[t]) / (h[t] - lo[t]),
        "ma_dist_10": np.log(c[t] / np.mean(c[t - 9:t + 1])),
        "skew_6": skew(r[t - 6:t], bias=True),
    }


@pytest.mark.parametrize("t", [12, 57, 199])
def test_values_match_brute_force(t: int) -> None:
    candles = make_candles(200, seed=11)
    feats = compute_features(candles, SMALL)
    for name, expected in _brute_row(candles, t).items():
        assert feats[name].iloc[t] == pytest.approx(expected, rel=1e-8, abs=1e-12), name


def test_warmup_rows_are_nan_and_first_full_row_is_not() -> None:
    feats = compute_features(make_candles(100), SMALL)
    assert feats["ret_6"].iloc[:6].isna().all()
    assert np.isfinite(feats["ret_6"].iloc[6])
    assert feats["vol_8"].iloc[:8].isna().all()
    assert np.isfinite(feats["vol_8"].iloc[8])
    assert feats["ma_dist_10"].iloc[:9].isna().all()
    assert np.isfinite(feats["ma_dist_10"].iloc[9])


def test_flat_market_gives_zero_skew_and_mid_close_position() -> None:
    candles = make_candles(60)
    for col in ("open", "high", "low", "close"):
        candles[col] = 50.0
    feats = compute_features(candles, SMALL)
    assert (feats["skew_6"].iloc[7:] == 0.0).all()
    assert (feats["close_pos"] == 0.5).all()
    assert (feats["vol_4"].iloc[5:] == 0.0).all()


def test_zero_volume_window_is_nan_not_inf() -> None:
    candles = make_candles(40)
    candles.loc[candles.index[10:20], "volume"] = 0.0
    rel = compute_features(candles, SMALL)["volume_rel_5"]
    assert rel.iloc[14:20].isna().all()
    assert np.isfinite(rel.iloc[10])
    assert rel.iloc[10] == 0.0


# -------------------------------------------------------------------------- gaps


def test_returns_spanning_a_gap_are_nan() -> None:
    gap = 50
    feats = compute_features(make_candles(120, gaps=(gap,)), SMALL)
    assert feats["ret_1"].iloc[gap - 1 : gap + 1].isna().tolist() == [False, True]
    assert feats["ret_3"].iloc[gap : gap + 3].isna().all()
    assert np.isfinite(feats["ret_3"].iloc[gap + 3])
    assert feats["vol_4"].iloc[gap : gap + 4].isna().all()
    assert np.isfinite(feats["vol_4"].iloc[gap + 4])
    assert feats["ma_dist_5"].iloc[gap : gap + 4].isna().all()
    assert np.isfinite(feats["ma_dist_5"].iloc[gap + 4])
    # bar-local features do not straddle anything
    assert np.isfinite(feats[["range", "close_pos", "range_mean_4"]].iloc[gap]).all()


def test_without_gap_column_no_row_is_dropped_after_warmup() -> None:
    candles = make_candles(120).drop(columns="gap_before")
    assert compute_features(candles, SMALL).iloc[10:].notna().all().all()


# ------------------------------------------------------------------------ scaler


def _matrix(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal([1.0, -5.0, 100.0], [2.0, 0.1, 30.0], size=(n, 3))
    return np.column_stack([x, np.full(n, 7.0)])  # last column constant


def test_standard_scaler_standardises_train_rows() -> None:
    x = _matrix()
    z = Scaler("standard").fit_transform(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[:, :3].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, :3].std(axis=0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(z[:, 3], 0.0)  # constant column: scale 1


def test_robust_scaler_uses_median_and_iqr() -> None:
    x = _matrix()
    s = Scaler("robust").fit(x)
    q25, q50, q75 = np.percentile(x[:, 0], [25, 50, 75])
    assert s.center_[0] == pytest.approx(q50)
    assert s.scale_[0] == pytest.approx(q75 - q25)
    assert s.scale_[3] == 1.0


def test_scaler_statistics_depend_on_training_rows_only() -> None:
    x = _matrix(300)
    n_train = 200
    a = Scaler().fit(x[:n_train])
    x_changed = x.copy()
    x_changed[n_train:] = 1e6  # wildly different validation / test rows
    b = Scaler().fit(x_changed[:n_train])
    np.testing.assert_array_equal(a.center_, b.center_)
    np.testing.assert_array_equal(a.scale_, b.scale_)
    # ...and applying it to the changed rows neither refits nor overflows: clipped
    assert np.all(a.transform(x_changed[n_train:])[:, :3] == 10.0)


def test_none_scaler_is_identity_without_clipping() -> None:
    x = _matrix()
    np.testing.assert_allclose(Scaler("none").fit_transform(x), x.astype(np.float32))


def test_scaler_round_trips_through_json() -> None:
    x = _matrix()
    s = Scaler("robust").fit(x[:100])
    restored = Scaler.from_dict(json.loads(json.dumps(s.to_dict())))
    np.testing.assert_array_equal(restored.transform(x), s.transform(x))


def test_scaler_errors_name_the_problem() -> None:
    x = _matrix()
    with pytest.raises(NotFittedError):
        Scaler().transform(x)
    with pytest.raises(ConfigError, match="minmax"):
        Scaler("minmax").fit(x)  # type: ignore[arg-type]
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match=r"\[2\]"):
        Scaler().fit(bad)
    with pytest.raises(DataError, match="4 features"):
        Scaler().fit(x).transform(x[:, :2])
    with pytest.raises(ModelFileError):
        Scaler.from_dict({"kind": "standard", "clip": 10, "center": [0.0], "scale": [0.0]})
    with pytest.raises(ModelFileError):
        Scaler.from_dict({"kind": "standard"})


@pytest.mark.parametrize("kind", SCALER_KINDS)
def test_columns_one_at_a_time_give_fit_then_transform_exactly(kind: str) -> None:
    x = _matrix(300)
    x[250:, 1] = np.nan  # non-training rows may be anything; NaN stays NaN
    train = np.r_[0:100, 150:220]  # not one run of rows
    expected = Scaler(kind).fit(x[train])
    out = np.full(x.shape, -1.0, dtype=np.float32)
    columns = ((j, x[:, j].copy()) for j in (2, 0, 3, 1))  # any order
    got = Scaler(kind).fit_transform_columns(columns, train, out=out)
    assert got.to_dict() == expected.to_dict()
    np.testing.assert_array_equal(out, expected.transform(x))
    got_slice = Scaler(kind).fit_transform_columns(
        ((j, x[:, j]) for j in range(4)), slice(0, 100), out=out)
    assert got_slice.to_dict() == Scaler(kind).fit(x[:100]).to_dict()


def test_columns_one_at_a_time_refuse_gaps_and_bad_rows() -> None:
    x = _matrix()
    out = np.empty(x.shape, dtype=np.float32)
    with pytest.raises(DataError, match=r"column\(s\) \[3\] of 4"):
        Scaler().fit_transform_columns(((j, x[:, j]) for j in range(3)), slice(0, 50), out)
    bad = x[:, 1].copy()
    bad[7] = np.inf
    with pytest.raises(DataError, match="column 1"):
        Scaler().fit_transform_columns([(0, x[:, 0]), (1, bad)], slice(0, 50), out)
    with pytest.raises(ConfigError, match="minmax"):
        Scaler("minmax").fit_transform_columns([], slice(0, 50), out)  # type: ignore[arg-type]


def test_refit_forgets_the_first_fit() -> None:
    x = _matrix()
    s = Scaler().fit(x)
    s.fit(x[:, :2])
    assert s.center_.shape == (2,)


# ----------------------------------------------------- with the real Candles contract


def test_validated_candles_with_a_hole_get_nan_returns_across_it(candles: pd.DataFrame) -> None:
    holed = validate_candles(candles.drop(index=candles.index[300:305]).drop(
        columns="gap_before", errors="ignore"), interval="60", gaps="mark")
    gap = int(np.flatnonzero(holed["gap_before"].to_numpy())[0])
    assert gap == 300
    feats = compute_features(holed)
    assert feats["ret_1"].iloc[gap - 1 : gap + 1].isna().tolist() == [False, True]
    assert feats["ret_48"].iloc[gap : gap + 48].isna().all()
    assert feats.iloc[gap + 96 :].notna().all().all()

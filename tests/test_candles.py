"""The Candles contract: intervals, validate_candles and gap handling."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from selfdistill.data.candles import (
    CANDLE_COLUMNS,
    find_gaps,
    gap_table,
    infer_interval,
    interval_to_timedelta,
    periods_per_year,
    validate_candles,
)
from selfdistill.errors import ConfigError, DataError, GapError


def make_candles(n: int = 10, freq: str = "h", start: str = "2024-01-01",
                 tz: str | None = "UTC") -> pd.DataFrame:
    """n consistent candles: open 100 + i, close 100.5 + i, high +1, low -1."""
    index = pd.date_range(start, periods=n, freq=freq, tz=tz, name="open_time")
    base = 100.0 + np.arange(n)
    return pd.DataFrame({"open": base, "high": base + 1.0, "low": base - 1.0,
                         "close": base + 0.5, "volume": np.full(n, 10.0)}, index=index)


# ------------------------------------------------------------------ intervals


@pytest.mark.parametrize(("interval", "expected"), [
    ("1", pd.Timedelta(minutes=1)), ("60", pd.Timedelta(hours=1)),
    ("720", pd.Timedelta(hours=12)), ("D", pd.Timedelta(days=1)),
    ("W", pd.Timedelta(days=7)), ("M", None),
])
def test_interval_to_timedelta(interval: str, expected: pd.Timedelta | None) -> None:
    assert interval_to_timedelta(interval) == expected


@pytest.mark.parametrize("bad", ["7", "1h", "d", "", "60m"])
def test_bad_interval_lists_the_valid_ones(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"is not one of 1, 3, 5, 15, .* D, W, M"):
        interval_to_timedelta(bad)


@pytest.mark.parametrize(("interval", "expected"), [
    ("1", 525_600.0), ("60", 8760.0), ("240", 2190.0), ("D", 365.0),
    ("W", 52.18), ("M", 12.0),
])
def test_periods_per_year(interval: str, expected: float) -> None:
    assert periods_per_year(interval) == pytest.approx(expected, abs=0.01)


def test_infer_interval_survives_gaps_and_recognises_months() -> None:
    hourly = make_candles(50).index.delete([5, 6, 20])
    assert infer_interval(hourly) == "60"
    assert infer_interval(make_candles(30, freq="D").index) == "D"
    assert infer_interval(make_candles(24, freq="MS").index) == "M"
    assert infer_interval(make_candles(30, freq="7min").index) is None
    assert infer_interval(make_candles(1).index) is None


# ------------------------------------------------------------------ valid data


def test_valid_candles_pass_and_are_normalised() -> None:
    raw = make_candles(6, tz=None).astype({"volume": np.int64})
    raw["symbol"] = "BTCUSDT"
    raw["turnover"] = 5
    out = validate_candles(raw)
    assert list(out.columns) == [*CANDLE_COLUMNS, "turnover", "gap_before"]
    assert all(out[c].dtype == np.float64 for c in [*CANDLE_COLUMNS, "turnover"])
    assert str(out.index.tz) == "UTC"
    assert out.index.name == "open_time"
    assert not out["gap_before"].any()
    assert out.attrs["interval"] == "60"
    assert "symbol" in raw.columns
    assert raw.index.tz is None


def test_other_timezones_are_converted_to_utc() -> None:
    raw = make_candles(4, start="2024-01-01 09:00", tz="Asia/Tokyo")
    out = validate_candles(raw)
    assert out.index[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")


def test_column_spellings_are_accepted_by_the_gate() -> None:
    raw = make_candles(4).rename(columns={"open": "Open", "high": "HIGH", "low": "l",
                                          "close": "Close", "volume": "Vol"})
    out = validate_candles(raw)
    assert list(out.columns[:5]) == list(CANDLE_COLUMNS)
    out.iloc[0, 0] = -1.0
    assert list(raw.columns) == ["Open", "HIGH", "l", "Close", "Vol"]  # input untouched
    assert raw.iloc[0, 0] == 100.0


# ------------------------------------------------------------------ rejections


def test_missing_columns_are_named_with_accepted_spellings() -> None:
    raw = make_candles(4).drop(columns=["volume", "low"])
    with pytest.raises(DataError, match=r"missing column\(s\) low, volume") as info:
        validate_candles(raw, source="prices.csv")
    assert "prices.csv" in str(info.value)
    assert "vol" in str(info.value)
    assert "Adj" not in str(info.value)


@pytest.mark.parametrize(("column", "value", "problem"), [
    ("close", np.nan, "is NaN or infinite"),
    ("volume", np.inf, "is NaN or infinite"),
    ("open", 0.0, "is not a positive price"),
    ("low", -1.0, "is not a positive price"),
    ("volume", -3.0, "is negative"),
])
def test_bad_values_name_row_timestamp_and_column(column: str, value: float,
                                                   problem: str) -> None:
    raw = make_candles(8)
    raw.loc[raw.index[5], column] = value
    if column == "low":
        raw.loc[raw.index[5], "high"] = 200.0
    with pytest.raises(DataError, match=problem) as info:
        validate_candles(raw)
    message = str(info.value)
    assert "row 5 (2024-01-01 05:00:00+00:00)" in message
    assert f"column '{column}'" in message


@pytest.mark.parametrize(("changes", "column", "problem"), [
    ({"high": 103.2}, "high", r"103.2 is below max\(open, close\) 103.5"),
    ({"low": 103.25}, "low", r"103.25 is above min\(open, close\) 103.0"),
    ({"high": 90.0, "low": 95.0, "open": 92.0, "close": 92.0}, "high", "90.0 is below low 95.0"),
])
def test_inconsistent_ohlc_is_rejected(changes: dict[str, float], column: str,
                                       problem: str) -> None:
    raw = make_candles(6)
    for col, value in changes.items():
        raw.loc[raw.index[3], col] = value
    with pytest.raises(DataError, match=problem) as info:
        validate_candles(raw)
    assert "row 3 " in str(info.value)
    assert f"column '{column}'" in str(info.value)


def test_count_of_further_bad_rows_is_reported() -> None:
    raw = make_candles(8)
    raw.loc[raw.index[[2, 4, 6]], "volume"] = -1.0
    with pytest.raises(DataError, match=r"row 2 .*and 2 more rows"):
        validate_candles(raw)


def test_non_numeric_value_is_named() -> None:
    raw = make_candles(5).astype({"close": object})
    raw.loc[raw.index[2], "close"] = "12,5"
    with pytest.raises(DataError, match=r"row 2 .*column 'close': value '12,5' is not a number"):
        validate_candles(raw)


def test_duplicate_timestamps_are_rejected() -> None:
    raw = make_candles(6)
    raw.index = raw.index[[0, 1, 2, 2, 3, 4]]
    with pytest.raises(DataError, match=r"row 3 \(2024-01-01 02:00:00\+00:00\) repeats"):
        validate_candles(raw)


def test_unsorted_timestamps_are_an_error_not_sorted() -> None:
    raw = make_candles(6).iloc[[0, 1, 3, 2, 4, 5]]
    with pytest.raises(DataError, match=r"row 3 .* not in time order"):
        validate_candles(raw)


def test_newest_first_data_get_a_specific_message() -> None:
    with pytest.raises(DataError, match="newest-first; reverse the rows"):
        validate_candles(make_candles(6).iloc[::-1])


def test_index_without_times_is_rejected() -> None:
    raw = make_candles(4).reset_index(drop=True)
    with pytest.raises(DataError, match="no timestamp column"):
        validate_candles(raw)


def test_missing_timestamp_is_rejected() -> None:
    raw = make_candles(4).reset_index()
    raw.loc[2, "open_time"] = pd.NaT
    with pytest.raises(DataError, match=r"row 2, column 'open_time': the timestamp is empty"):
        validate_candles(raw)


def test_empty_frame_and_non_frame_are_rejected() -> None:
    with pytest.raises(DataError, match="has no rows"):
        validate_candles(make_candles(3).iloc[:0])
    with pytest.raises(DataError, match="expected a pandas DataFrame"):
        validate_candles([1, 2, 3])  # type: ignore[arg-type]


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="gap policy 'fill'"):
        validate_candles(make_candles(3), gaps="fill")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="interval '2h'"):
        validate_candles(make_candles(3), interval="2h")


def test_spacing_shorter_than_the_interval_suggests_the_right_one() -> None:
    with pytest.raises(DataError, match=r"not a whole number of 'D' .*look like interval '60'"):
        validate_candles(make_candles(30), interval="D")


def test_misaligned_bar_is_rejected() -> None:
    raw = make_candles(6)
    raw.index = raw.index.where(raw.index != raw.index[3], raw.index[3] + pd.Timedelta("30min"))
    with pytest.raises(DataError, match=r"row 3 .* not a whole number of '60'"):
        validate_candles(raw, interval="60")


# ------------------------------------------------------------------ gaps


def gappy(n: int = 40, drop: tuple[int, ...] = (5, 6, 7, 20)) -> pd.DataFrame:
    raw = make_candles(n)
    return raw.drop(raw.index[list(drop)])


def test_find_gaps_lists_start_end_and_missing() -> None:
    raw = gappy()
    gaps = find_gaps(pd.DatetimeIndex(raw.index), "60")
    assert list(gaps.columns) == ["start", "end", "missing"]
    assert gaps["missing"].tolist() == [3, 1]
    assert gaps["start"].iloc[0] == pd.Timestamp("2024-01-01 04:00", tz="UTC")
    assert gaps["end"].iloc[0] == pd.Timestamp("2024-01-01 08:00", tz="UTC")


def test_gap_policy_mark_flags_the_bar_after_each_gap() -> None:
    out = validate_candles(gappy(), gaps="mark")
    flagged = out.index[out["gap_before"]]
    assert flagged.tolist() == [pd.Timestamp("2024-01-01 08:00", tz="UTC"),
                                pd.Timestamp("2024-01-01 21:00", tz="UTC")]
    assert len(out) == 36  # nothing filled
    table = gap_table(out)
    pd.testing.assert_frame_equal(table, find_gaps(pd.DatetimeIndex(out.index), "60"))


def test_gap_record_is_safe_for_concat_and_json() -> None:
    out = validate_candles(gappy())
    json.dumps(out.attrs)  # Parquet metadata needs this
    joined = pd.concat([out.iloc[:10], out.iloc[10:]])
    assert joined.attrs == out.attrs


def test_gap_policy_error_lists_the_first_gaps_and_the_count() -> None:
    raw = gappy(60, drop=(3, 10, 11, 20, 30, 40, 50, 55))
    with pytest.raises(GapError, match=r"7 gap\(s\) with 8 missing '60' candles") as info:
        validate_candles(raw, gaps="error", source="btc.csv")
    message = str(info.value)
    assert message.startswith("btc.csv:")
    assert "after 2024-01-01 02:00:00+00:00 (1 missing)" in message
    assert "and 2 more" in message
    assert "gap policy 'mark'" in message
    assert isinstance(info.value, DataError)


def test_monthly_gaps_count_calendar_months() -> None:
    raw = make_candles(12, freq="MS")
    raw = raw.drop(raw.index[[2, 3]])  # March and April missing
    out = validate_candles(raw, interval="M")
    assert gap_table(out)["missing"].tolist() == [2]
    assert out["gap_before"].sum() == 1


def test_unknown_interval_skips_the_gap_check() -> None:
    raw = make_candles(10, freq="7min")
    out = validate_candles(raw.drop(raw.index[4]))
    assert out.attrs["interval"] is None
    assert not out["gap_before"].any()


def test_validate_copies_unless_told_the_input_is_spent() -> None:
    index = pd.date_range("2024-01-01", periods=50, freq="h", tz="UTC", name="open_time")
    close = np.linspace(100.0, 110.0, 50)
    frame = pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close,
                          "volume": np.ones(50)}, index=index)
    copied = validate_candles(frame, interval="60")
    shared = validate_candles(frame, interval="60", copy=False)
    pd.testing.assert_frame_equal(copied, shared)
    assert not np.shares_memory(copied["close"].to_numpy(), frame["close"].to_numpy())
    assert np.shares_memory(shared["close"].to_numpy(), frame["close"].to_numpy())

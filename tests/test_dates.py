"""Reading candle times: day-first dates, forced formats, out-of-range and jittered times
(issue 13 items 4 and 12)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from selfdistill.config import parse_config
from selfdistill.data.candles import validate_candles
from selfdistill.data.dates import parse_text_times
from selfdistill.data.files import load_candles_file
from selfdistill.data.synthetic import generate_market
from selfdistill.errors import DataError
from selfdistill.evaluation.fold import load_candles
from selfdistill.rundir.write import model_metadata


def _write(path: Path, times: list[str], *, sep: str = ",") -> Path:
    """A candle CSV whose Date column holds ``times`` as given (text)."""
    candles, _ = generate_market(len(times), seed=4)
    frame = candles.drop(columns=["gap_before"]).reset_index(drop=True)
    frame.insert(0, "Date", times)
    frame.to_csv(path, index=False, sep=sep)
    return path


def _days(start: str, n: int, fmt: str, freq: str = "D") -> tuple[list[str], pd.DatetimeIndex]:
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="open_time")
    return [t.strftime(fmt) for t in index], index


def test_day_first_dates_are_read_day_first(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    # was: month-first, then "not in time order" (13/01 is no month-first date)
    text, expected = _days("2024-01-01", 40, "%d/%m/%Y")
    with caplog.at_level(logging.INFO, logger="selfdistill.data.dates"):
        loaded = load_candles_file(_write(tmp_path / "c.csv", text))
    pd.testing.assert_index_equal(loaded.index, expected)
    assert loaded.attrs["time_format"] == "%d/%m/%Y"
    assert loaded.attrs["interval"] == "D"
    assert "read as day-first dates (%d/%m/%Y)" in caplog.text


def test_dotted_forex_dates_with_times(tmp_path: Path) -> None:
    text, expected = _days("2024-03-01", 500, "%d.%m.%Y %H:%M", freq="h")
    loaded = load_candles_file(_write(tmp_path / "fx.csv", text, sep=";"))
    pd.testing.assert_index_equal(loaded.index, expected)
    assert loaded.attrs["time_format"] == "%d.%m.%Y %H:%M"


def test_month_first_dates_stay_month_first(tmp_path: Path) -> None:
    text, expected = _days("2024-01-01", 40, "%m/%d/%Y")
    loaded = load_candles_file(_write(tmp_path / "us.csv", text))
    pd.testing.assert_index_equal(loaded.index, expected)
    assert loaded.attrs["time_format"] == "%m/%d/%Y"


def test_newest_first_day_first_dates_are_reversed(tmp_path: Path) -> None:
    text, expected = _days("2024-01-01", 40, "%d-%m-%Y")
    candles = load_candles_file(_write(tmp_path / "c.csv", text[::-1]))
    pd.testing.assert_index_equal(candles.index, expected)


def test_ambiguous_dates_name_the_date_format(tmp_path: Path) -> None:
    # 1-12 January: read month-first they are 1 January .. 1 December, also in order
    text, _ = _days("2024-01-01", 12, "%d/%m/%Y")
    with pytest.raises(DataError) as info:
        load_candles_file(_write(tmp_path / "c.csv", text))
    message = str(info.value)
    for part in ("day-first", "month-first", "data.time_format", "'%d/%m/%Y'", "'%m/%d/%Y'"):
        assert part in message
    assert "time order; sort" not in message


@pytest.mark.parametrize(("forced", "first"),
                         [("%d/%m/%Y", "2024-02-01"), ("dayfirst", "2024-02-01"),
                          ("monthfirst", "2024-01-02")])
def test_a_forced_format_settles_ambiguity(tmp_path: Path, forced: str, first: str) -> None:
    text = [f"{d:02d}/02/2024" for d in range(1, 13)]  # 1-12 February, or 2 Jan .. 2 Dec
    loaded = load_candles_file(_write(tmp_path / "c.csv", text), time_format=forced)
    assert loaded.index[0] == pd.Timestamp(first, tz="UTC")


def test_a_hint_breaks_a_tie_but_never_overrides(tmp_path: Path) -> None:
    text, expected = _days("2024-01-01", 12, "%d/%m/%Y")
    path = _write(tmp_path / "c.csv", text)
    loaded = load_candles_file(path, time_format_hint="%d/%m/%Y")
    pd.testing.assert_index_equal(loaded.index, expected)
    us, expected_us = _days("2024-01-01", 40, "%m/%d/%Y")
    loaded = load_candles_file(_write(tmp_path / "us.csv", us), time_format_hint="%d/%m/%Y")
    pd.testing.assert_index_equal(loaded.index, expected_us)


def test_out_of_order_day_first_dates_name_the_format_and_the_row(tmp_path: Path) -> None:
    text, _ = _days("2024-01-01", 40, "%d/%m/%Y")
    text[20], text[21] = text[21], text[20]
    with pytest.raises(DataError) as info:
        load_candles_file(_write(tmp_path / "c.csv", text))
    message = str(info.value)
    assert "read as day-first dates (%d/%m/%Y" in message
    assert "row 21" in message
    assert "data.time_format" in message


def test_a_forced_format_that_does_not_fit_names_it(tmp_path: Path) -> None:
    text, _ = _days("2024-01-01", 40, "%d/%m/%Y")
    with pytest.raises(DataError, match=r"row 12, column 'Date': '13/01/2024' does not match "
                                        r"data.time_format '%m/%d/%Y'"):
        load_candles_file(_write(tmp_path / "c.csv", text), time_format="%m/%d/%Y")


def test_unreadable_numeric_dates_say_which_orders_were_tried() -> None:
    with pytest.raises(DataError, match=r"'31/31/2024' is not a date read day-first"):
        parse_text_times(pd.Series(["01/01/2024", "31/31/2024"]), name="Date")


def test_data_time_format_reaches_the_loader(tmp_path: Path) -> None:
    text = [f"{d:02d}/02/2024" for d in range(1, 13)]
    path = _write(tmp_path / "c.csv", text)
    cfg = parse_config({"data": {"source": "csv", "path": str(path),
                                 "time_format": "dayfirst"}})
    candles, _, _ = load_candles(cfg)
    assert candles.index[0] == pd.Timestamp("2024-02-01", tz="UTC")
    meta = model_metadata(cfg, scaler={}, feature_names=["ret_1"], class_names=["a"],
                          interval="D", gaps="mark", time_format=candles.attrs["time_format"])
    assert meta["time_format"] == "%d/%m/%Y"  # a model remembers how its file was read


def test_a_timestamp_after_2262_is_called_out_of_range(tmp_path: Path) -> None:
    # was: "is not a timestamp; use ISO-8601" for a valid ISO date
    text, _ = _days("2024-01-01", 5, "%Y-%m-%d %H:%M:%S")
    text[3] = "2300-01-04 00:00:00"
    with pytest.raises(DataError) as info:
        load_candles_file(_write(tmp_path / "c.csv", text))
    message = str(info.value)
    assert "row 3" in message
    assert "outside the range" in message
    assert "2262-04-11" in message
    assert "not a timestamp" not in message


def test_jittered_open_times_are_named(candles: pd.DataFrame) -> None:
    # was: a warning, then "set backtest.periods_per_year" at the end of a run
    jitter = pd.to_timedelta(np.random.default_rng(0).integers(0, 20, len(candles)), unit="s")
    shaken = candles.drop(columns=["gap_before"]).set_axis(candles.index + jitter)
    with pytest.raises(DataError) as info:
        validate_candles(shaken, source="fx.csv")
    message = str(info.value)
    assert "interval '60'" in message
    assert "off its grid" in message
    first_off = int(np.flatnonzero(np.diff(jitter.to_numpy()).astype(np.int64) != 0)[0]) + 1
    assert f"row {first_off} ({shaken.index[first_off]})" in message


def test_irregular_times_that_match_no_interval_still_load(candles: pd.DataFrame) -> None:
    two_minutes = candles.drop(columns=["gap_before"]).set_axis(
        pd.date_range("2024-01-01", periods=len(candles), freq="2min", tz="UTC"))
    assert validate_candles(two_minutes).attrs["interval"] is None

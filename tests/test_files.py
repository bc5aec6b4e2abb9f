"""Loading and saving candle files: real CSV / Parquet files written to tmp_path."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from selfdistill.data.candles import CANDLE_COLUMNS, normalise_columns, validate_candles
from selfdistill.data.files import load_candles_file, load_csv, load_parquet, save_candles
from selfdistill.errors import DataError, GapError

HOURS = pd.date_range("2024-03-01", periods=6, freq="h", tz="UTC", name="open_time")
EPOCH_S = (HOURS.asi8 // 10**9).tolist()


def ohlcv_rows() -> dict[str, list[float]]:
    base = 100.0 + np.arange(6)
    return {"open": base.tolist(), "high": (base + 2).tolist(), "low": (base - 1).tolist(),
            "close": (base + 1).tolist(), "volume": [5.0, 6.0, 0.0, 7.5, 8.0, 9.0]}


def write_csv(path: Path, columns: dict[str, list[object]], sep: str = ",") -> Path:
    pd.DataFrame(columns).to_csv(path, index=False, sep=sep)
    return path


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("name", ["c.csv", "c.csv.gz", "c.tsv", "c.parquet", "c.pq"])
def test_save_and_load_round_trip_exactly(candles: pd.DataFrame, tmp_path: Path,
                                          name: str) -> None:
    path = tmp_path / "sub" / name
    save_candles(candles, path)
    loaded = load_candles_file(path)
    pd.testing.assert_frame_equal(loaded, candles)
    assert loaded.attrs == candles.attrs
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temp file left behind
    if name == "c.tsv":
        assert path.read_text().splitlines()[0] == "open_time\topen\thigh\tlow\tclose\tvolume"


def test_round_trip_keeps_gap_marks_and_turnover(tmp_path: Path) -> None:
    df = pd.DataFrame(ohlcv_rows(), index=HOURS).assign(turnover=1.5).drop(HOURS[2])
    path = tmp_path / "g.parquet"
    save_candles(validate_candles(df), path)
    loaded = load_parquet(path)
    assert loaded["gap_before"].tolist() == [False, False, True, False, False]
    assert loaded["turnover"].tolist() == [1.5] * 5
    with pytest.raises(GapError):
        load_parquet(path, gaps="error")


@pytest.mark.parametrize(("names", "times"), [
    (("Open", "High", "Low", "Close", "Volume", "Date"), [str(t) for t in HOURS]),
    (("o", "h", "l", "c", "v", "timestamp"), [t * 1000 for t in EPOCH_S]),  # ms
    (("OPEN", "HIGH", "LOW", "CLOSE", "VOL", "startTime"), EPOCH_S),  # seconds
    (("open", "high", "low", "Adj Close", "volume", "Datetime"),
     [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in HOURS]),
    (("open", "high", "low", "close", "volume", "time"), [t * 10**6 for t in EPOCH_S]),  # us
    (("open", "high", "low", "close", "volume", "open_time"), [t * 10**9 for t in EPOCH_S]),
    (("Open", "High", "Low", "Close", "Volume", "Date"),
     [(t + pd.Timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S+02:00") for t in HOURS]),
    (("Open", "High", "Low", "Close", "Volume", "Date"),
     [t.strftime("%d %b %Y %H:%M") for t in HOURS]),  # not ISO, still unambiguous
])
def test_csv_spellings_and_time_units(tmp_path: Path, names: tuple[str, ...],
                                      times: list[object]) -> None:
    columns: dict[str, list[object]] = {names[5]: times}
    columns.update(zip(names[:5], ohlcv_rows().values(), strict=True))
    loaded = load_csv(write_csv(tmp_path / "x.csv", columns))
    assert loaded.index.equals(HOURS)
    assert list(loaded.columns) == [*CANDLE_COLUMNS, "gap_before"]
    assert loaded["close"].tolist() == ohlcv_rows()["close"]


def test_adj_close_is_ignored_when_close_exists(tmp_path: Path) -> None:
    columns: dict[str, list[object]] = {"Date": [str(t) for t in HOURS], **ohlcv_rows()}
    columns["Adj Close"] = [1.0] * 6
    loaded = load_csv(write_csv(tmp_path / "x.csv", columns))
    assert loaded["close"].tolist() == ohlcv_rows()["close"]


@pytest.mark.parametrize(("sep", "name"), [(";", "x.csv"), ("\t", "x.tsv"), ("|", "x.txt")])
def test_other_separators(tmp_path: Path, sep: str, name: str) -> None:
    path = write_csv(tmp_path / name, {"date": [str(t) for t in HOURS], **ohlcv_rows()}, sep)
    assert len(load_candles_file(path)) == 6


def test_newest_first_export_is_reversed(tmp_path: Path) -> None:
    # Bybit's kline list: newest first, every field a string, turnover last
    rows = ohlcv_rows()
    columns = {"startTime": [str(t * 1000) for t in EPOCH_S][::-1],
               **{k: [str(v) for v in vals][::-1] for k, vals in rows.items()},
               "turnover": ["10.5"] * 6}
    loaded = load_csv(write_csv(tmp_path / "bybit.csv", columns))
    assert loaded.index.equals(HOURS)
    assert loaded["open"].tolist() == rows["open"]
    assert loaded["turnover"].dtype == np.float64


def test_partly_unsorted_file_is_an_error(tmp_path: Path) -> None:
    times = [str(t) for t in HOURS]
    times[2], times[3] = times[3], times[2]
    path = write_csv(tmp_path / "x.csv", {"date": times, **ohlcv_rows()})
    with pytest.raises(DataError, match=r"x\.csv: row 3 .* not in time order"):
        load_csv(path)


def test_parquet_with_a_foreign_timezone_index(tmp_path: Path) -> None:
    frame = pd.DataFrame(ohlcv_rows(), index=HOURS.tz_convert("America/New_York"))
    frame.to_parquet(tmp_path / "ny.parquet")
    assert load_parquet(tmp_path / "ny.parquet").index.equals(HOURS)


def test_parquet_with_an_epoch_ms_column(tmp_path: Path) -> None:
    frame = pd.DataFrame({"timestamp": [t * 1000 for t in EPOCH_S], **ohlcv_rows()})
    frame.to_parquet(tmp_path / "ms.parquet", index=False)
    assert load_parquet(tmp_path / "ms.parquet").index.equals(HOURS)


def test_normalise_columns_is_idempotent() -> None:
    raw = pd.DataFrame({"Date": [str(t) for t in HOURS], "Close": 1.0, "extra": 2})
    once = normalise_columns(raw)
    pd.testing.assert_frame_equal(normalise_columns(once), once)
    assert list(once.columns) == ["close", "extra"]
    assert once.index.equals(HOURS)


# ------------------------------------------------------------------ malformed files


def test_unparseable_number_names_file_row_and_column(tmp_path: Path) -> None:
    rows: dict[str, list[object]] = {"date": [str(t) for t in HOURS], **ohlcv_rows()}
    rows["high"][4] = "n/a?"
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match=r"bad\.csv: row 4 .*column 'high': value 'n/a\?' "):
        load_csv(path)


def test_unparseable_timestamp_names_row_and_column(tmp_path: Path) -> None:
    rows: dict[str, list[object]] = {"Date": [str(t) for t in HOURS], **ohlcv_rows()}
    rows["Date"][3] = "yesterday-ish"
    with pytest.raises(DataError, match=r"row 3, column 'Date': 'yesterday-ish' is not a"):
        load_csv(write_csv(tmp_path / "x.csv", rows))


def test_epoch_column_with_a_stray_text_value(tmp_path: Path) -> None:
    rows: dict[str, list[object]] = {"timestamp": [str(t * 1000) for t in EPOCH_S],
                                     **ohlcv_rows()}
    rows["timestamp"][5] = "2024-03-01 05:00"
    with pytest.raises(DataError, match=r"row 5, column 'timestamp': .* not an epoch time"):
        load_csv(write_csv(tmp_path / "x.csv", rows))


def test_two_columns_with_one_meaning(tmp_path: Path) -> None:
    rows: dict[str, list[object]] = {"date": [str(t) for t in HOURS], **ohlcv_rows()}
    rows["Close"] = rows["close"]
    with pytest.raises(DataError, match="columns 'close' and 'Close' both mean 'close'"):
        load_csv(write_csv(tmp_path / "x.csv", rows))


def test_no_timestamp_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"x\.csv: no timestamp column \(found: open, "):
        load_csv(write_csv(tmp_path / "x.csv", dict(ohlcv_rows())))


def test_an_index_written_by_pandas_under_an_empty_header_is_the_time(tmp_path: Path) -> None:
    """DataFrame.to_csv writes a DatetimeIndex as an unnamed first column (backtesting.py's
    test candles look like this); a numbered index (0, 1, 2) is never read as epoch times."""
    frame = pd.DataFrame(dict(ohlcv_rows()), index=pd.DatetimeIndex(HOURS).tz_localize(None))
    frame.to_csv(tmp_path / "dated.csv")
    assert list(load_csv(tmp_path / "dated.csv").index) == list(pd.DatetimeIndex(HOURS))
    frame.reset_index(drop=True).to_csv(tmp_path / "numbered.csv")
    with pytest.raises(DataError, match="no timestamp column"):
        load_csv(tmp_path / "numbered.csv")


@pytest.mark.parametrize(("content", "problem"), [
    (b"", "the file is empty"),
    (b"   \n\n", "the file is empty"),
    (b"date,open,high,low,close,volume\n", "has a header but no candles"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is binary"),
    (b"PAR1\x15\x04\x15", "is a Parquet file"),
    (b"date,open\n\xff\xfe\xfa,1\n", "not UTF-8 text"),
    (b"date,open,high\n2024-01-01,1,2\n2024-01-02,1,2,3,4\n", "cannot be read as CSV"),
])
def test_malformed_csv_gives_a_data_error_naming_the_file(
        tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "junk.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=problem) as info:
        load_candles_file(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_and_parquet(tmp_path: Path) -> None:
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(b"date,open\n1,2\n")[:12])
    with pytest.raises(DataError, match=r"a\.csv\.gz: cannot be read"):
        load_candles_file(tmp_path / "a.csv.gz")
    (tmp_path / "b.parquet").write_text("date,open\n")
    with pytest.raises(DataError, match=r"b\.parquet: cannot be read as Parquet"):
        load_candles_file(tmp_path / "b.parquet")


def test_missing_path_folder_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        load_candles_file(tmp_path / "nope.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="is not a file"):
        load_csv(tmp_path / "dir.csv")
    with pytest.raises(DataError, match=r"unknown candle file type; use one of \.csv"):
        load_candles_file(tmp_path / "x.xlsx")


def test_failed_save_leaves_the_old_file_untouched(candles: pd.DataFrame,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "keep.csv"
    save_candles(candles, path)
    before = path.read_bytes()
    broken = candles.copy()
    broken.iloc[3, 0] = -1.0
    with pytest.raises(DataError, match=r"keep\.csv: row 3"):
        save_candles(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.csv"]

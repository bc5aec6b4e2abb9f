"""A fuzz corpus for candle files: generated attacks on CSV and Parquet input (issue 13).

Each example writes one candle file from the attack classes of issue 13 — encodings,
separators, column spellings, time formats (ISO, epoch s / ms, day-first and month-first
numeric dates), gaps, newest-first order, extreme prices, zero volume — optionally with
one defect (a NaN, negative volume, high below low, a repeated or shuffled row, a bad or
out-of-range time, a cut-off file, foreign bytes). The contract:

- loading either succeeds with exactly the data written (times and values; never a
  misread date), or raises one :class:`~selfdistill.errors.DataError` in one line naming
  the file; a file with a defect never loads;
- ``selfdistill predict`` on it exits 0 with one row per candle, or exits 1 with one
  ``error:`` line and no traceback, and writes nothing outside its output folder.

The default hypothesis profile draws the same examples every run (see conftest.py);
``pytest --hypothesis-profile=explore tests/test_candle_fuzz.py`` searches new ones.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfdistill.cli import main
from selfdistill.config import FeaturesConfig
from selfdistill.data.files import load_candles_file
from selfdistill.errors import DataError
from selfdistill.features import feature_names
from selfdistill.modelio.bundle import save_bundle
from selfdistill.nn.mlp import MLP

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: Text time formats: (strptime, day-level only)
TIME_FORMATS = {
    "iso": "%Y-%m-%d %H:%M:%S", "iso_t": "%Y-%m-%dT%H:%M:%SZ", "iso_day": "%Y-%m-%d",
    "dayfirst": "%d/%m/%Y %H:%M", "dayfirst_dot": "%d.%m.%Y %H:%M", "dayfirst_day": "%d.%m.%Y",
    "monthfirst": "%m/%d/%Y %H:%M", "monthfirst_day": "%m-%d-%Y",
}
NUMERIC_DATES = {"dayfirst", "dayfirst_dot", "dayfirst_day", "monthfirst", "monthfirst_day"}
DEFECTS = ("nan", "negative_volume", "high_below_low", "repeat", "shuffle", "bad_time",
           "year_2300", "foreign_bytes")
SPELLINGS = {"time": ["Date", "timestamp", "open_time", "Datetime", "TIME"],
             "open": ["open", "Open", "OPEN", "o"], "high": ["high", "High", "h"],
             "low": ["low", "Low", "l"], "close": ["close", "Close", "c"],
             "volume": ["volume", "Volume", "vol", "v"]}


@dataclass
class Spec:
    """One candle file to write: what it holds and how it is spelled."""

    times: pd.DatetimeIndex
    values: pd.DataFrame  # open, high, low, close, volume (float64), row per time
    kind: str  # csv | parquet
    time_kind: str  # a key of TIME_FORMATS, or epoch_s / epoch_ms / datetime
    sep: str
    encoding: str
    names: dict[str, str]
    newest_first: bool
    defect: str | None
    cut: float  # for a cut-off file: the fraction kept (1.0: whole)


@st.composite
def specs(draw: Any) -> Spec:
    daily = draw(st.booleans())
    n = draw(st.integers(1, 90))
    step = pd.Timedelta(days=1) if daily else pd.Timedelta(hours=1)
    start = pd.Timestamp("2020-01-01", tz="UTC") + draw(st.integers(0, 1500)) * pd.Timedelta(days=1)
    keep = np.ones(n + n // 10, dtype=bool)
    for i in draw(st.lists(st.integers(1, len(keep) - 1), max_size=n // 10)) if n > 10 else []:
        keep[i] = False  # a few gaps
    times = pd.DatetimeIndex(start + step * np.flatnonzero(keep)[:n], name="open_time")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 1e-250, 1e250, 30_000.0]))
    close = scale * np.exp(np.cumsum(rng.normal(0, 0.01, len(times))))
    open_ = np.r_[close[0], close[:-1]]
    volume = (np.zeros(len(times)) if draw(st.booleans()) else rng.gamma(2.0, 10.0, len(times)))
    values = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.001,
                           "low": np.minimum(open_, close) * 0.999, "close": close,
                           "volume": volume})
    day_only = [k for k in TIME_FORMATS if k.endswith("_day")]
    kinds = [*TIME_FORMATS, "epoch_s", "epoch_ms", "datetime"]
    time_kind = draw(st.sampled_from(kinds if daily else [k for k in kinds if k not in day_only]))
    return Spec(times=times, values=values, kind=draw(st.sampled_from(["csv", "parquet"])),
                time_kind=time_kind, sep=draw(st.sampled_from([",", ";", "\t", "|"])),
                encoding=draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"])),
                names={k: draw(st.sampled_from(v)) for k, v in SPELLINGS.items()},
                newest_first=draw(st.booleans()),
                defect=draw(st.none() | st.sampled_from(DEFECTS)),
                cut=draw(st.sampled_from([1.0, 1.0, 1.0, 0.5, 0.93])))


def _time_column(spec: Spec) -> Any:
    if spec.time_kind == "datetime":
        return spec.times.tz_localize(None)
    if spec.time_kind in ("epoch_s", "epoch_ms"):
        seconds = spec.times.asi8 // 10**9
        return seconds * (1000 if spec.time_kind == "epoch_ms" else 1)
    return [t.strftime(TIME_FORMATS[spec.time_kind]) for t in spec.times]


def _frame(spec: Spec) -> pd.DataFrame:
    """The table as written: spelled columns, defects applied, order as in the file."""
    frame = spec.values.copy()
    frame.insert(0, "time", _time_column(spec))
    if spec.defect in ("nan", "negative_volume", "high_below_low", "bad_time", "year_2300"):
        row = len(frame) // 2
        frame["time"] = frame["time"].astype(object)
        change = {"nan": ("close", np.nan), "negative_volume": ("volume", -1.0),
                  "high_below_low": ("high", frame.at[row, "low"] * 0.5),
                  "bad_time": ("time", "yesterday"), "year_2300": ("time", "2300-01-01 00:00:00")}
        column, value = change[spec.defect]
        frame.at[row, column] = value
    if spec.defect == "repeat":
        frame = pd.concat([frame, frame.iloc[[len(frame) // 2]]]).sort_index(kind="stable")
    if spec.defect == "shuffle" and len(frame) > 2:
        frame = frame.iloc[np.r_[1, 0, 2:len(frame)]]
    if spec.newest_first:
        frame = frame.iloc[::-1]
    return frame.rename(columns={"time": spec.names["time"], **{
        k: v for k, v in spec.names.items() if k != "time"}}).reset_index(drop=True)


def write(spec: Spec, folder: Path) -> Path:
    """Write ``spec`` into ``folder`` and return the file's path."""
    frame = _frame(spec)
    path = folder / f"candles.{spec.kind}"
    if spec.kind == "parquet":
        if spec.defect in ("bad_time", "year_2300"):
            frame[spec.names["time"]] = frame[spec.names["time"]].astype(str)
        frame.to_parquet(path, index=False)
    else:
        text = frame.to_csv(sep=spec.sep, index=False)
        data = text.encode(spec.encoding)
        if spec.defect == "foreign_bytes":
            data = data.replace(b"\n", b"\n\xff\xfe\xe9", 1)  # not UTF-8
        path.write_bytes(data)
    if spec.cut < 1.0:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * spec.cut)])
    return path


def _may_be_ambiguous(spec: Spec) -> bool:
    """Numeric d/m dates whose days are all <= 12 can read both ways (an error is right)."""
    return spec.time_kind in NUMERIC_DATES and bool((spec.times.day <= 12).all())


def _must_fail(spec: Spec) -> bool:
    if spec.defect == "shuffle" and len(spec.times) <= 2:
        return False  # two swapped rows are just newest-first
    if spec.kind == "parquet":  # bytes and encodings are CSV attacks
        return spec.defect not in (None, "foreign_bytes")
    return spec.defect is not None or spec.encoding == "utf-16"


# ------------------------------------------------------------------ loading


@FUZZ
@given(spec=specs())
def test_a_candle_file_loads_exactly_or_fails_in_one_line(spec: Spec) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(spec, Path(tmp))
        try:
            loaded = load_candles_file(path)
        except DataError as exc:
            message = str(exc)
            assert "\n" not in message
            assert str(path) in message
            if not (_must_fail(spec) or spec.cut < 1.0 or _may_be_ambiguous(spec)):
                raise AssertionError(f"a valid file was refused: {message}") from exc
            return
    assert not _must_fail(spec), f"a defective file ({spec.defect}, {spec.encoding}) loaded"
    if spec.cut < 1.0:  # a cut-off file can load: what was kept, but for its last row,
        # whose last number may be cut short (undetectable: "15.0187" is a number too)
        n = len(loaded)
        expected = spec.times[-n:] if spec.newest_first else spec.times[:n]
        values = spec.values.iloc[-n:] if spec.newest_first else spec.values.iloc[:n]
        last = 0 if spec.newest_first else n - 1
        kept = np.arange(n) != last
        loaded, expected, values = loaded.iloc[kept], expected[kept], values.iloc[kept]
    else:
        expected, values = spec.times, spec.values
    pd.testing.assert_index_equal(loaded.index, pd.DatetimeIndex(expected, name="open_time"))
    np.testing.assert_allclose(loaded[list(values.columns)].to_numpy(), values.to_numpy(),
                               rtol=1e-12)


# ------------------------------------------------------------------ the CLI contract

FEATURES = FeaturesConfig(return_windows=[1, 2], volatility_windows=[3], ma_windows=[3],
                          volume_window=3, range_window=3, skew_window=3)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A servable model directory (no training: the contract is about the input)."""
    names = feature_names(FEATURES)
    torch.manual_seed(0)
    model = MLP(len(names), 3, hidden=(4,), dropout=0.0).eval()
    return save_bundle(tmp_path_factory.mktemp("model") / "m", [model], member_keys=[{}],
                       classes=["bull", "bear", "sideways"], feature_names=names, selected=0,
                       scaler={"kind": "standard", "clip": 10.0, "center": [0.0] * len(names),
                               "scale": [1.0] * len(names)},
                       feature_config=FEATURES.model_dump(mode="json"), method="baseline")


@contextmanager
def _working_folder() -> Iterator[Path]:
    before = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(before)


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@FUZZ
@given(spec=specs())
def test_predict_on_any_candle_file_keeps_the_contract(model_dir: Path, spec: Spec) -> None:
    with _working_folder() as folder:
        path = write(spec, folder)
        before = _files(folder)
        out = folder / "out" / "p.csv"
        err = StringIO()
        with redirect_stderr(err):
            code = main(["predict", "--model", str(model_dir), "--candles", str(path),
                         "--out", str(out)])
        text = err.getvalue()
        assert "Traceback" not in text
        assert _files(folder) - before <= {out}  # nothing written outside the output folder
        if code == 0:
            assert len(pd.read_csv(out)) == len(load_candles_file(path))
            return
        assert code == 1, text
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, text
        assert not out.exists()

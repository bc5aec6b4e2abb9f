"""The report on long runs: it reads only the rows and columns it draws, draws long lines
through a bounded number of points that keep their extremes, and gives the same page
whatever the Parquet files' row groups and row order.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfdistill.errors import DataError
from selfdistill.report import figures as fg
from selfdistill.report import load_run, render_html
from selfdistill.report.decimate import (
    MAX_LINE_POINTS,
    ClassSlices,
    LineSlices,
    minmax_indices,
    runs,
)
from selfdistill.report.trading import equity_curve
from selfdistill.rundir import read
from selfdistill.rundir.read import ParquetScan, read_predictions, read_run_parquet
from tiny_experiment import tiny_run_dir

PARQUETS = ("predictions.parquet", "backtest.parquet", "prices.parquet")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run_dir(tmp_path_factory, "scale")


def _without_images(page: str) -> str:
    return re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', page)


# ------------------------------------------------------------------ decimation


@pytest.mark.parametrize("n", [5, 1_000, 4_001, 123_457])
@pytest.mark.parametrize("max_points", [4, 101, 4_000])
def test_minmax_keeps_ends_and_every_slices_extremes(n: int, max_points: int) -> None:
    rng = np.random.default_rng(n + max_points)
    y = np.cumsum(rng.normal(size=n))
    keep = minmax_indices(y, max_points)
    assert len(keep) <= max_points
    assert np.all(np.diff(keep) > 0)  # ascending, no repeats
    assert keep[0] == 0 and keep[-1] == n - 1  # noqa: PT018
    assert y[keep].min() == y.min() and y[keep].max() == y.max()  # noqa: PT018
    if n <= max_points:
        assert keep.tolist() == list(range(n))
        return
    edges = np.linspace(1, n - 1, (max_points - 2) // 2 + 1).astype(int)
    for lo, hi in pairwise(edges):
        part = y[lo:hi]
        assert lo + int(np.argmin(part)) in keep
        assert lo + int(np.argmax(part)) in keep


def test_minmax_refuses_too_few_points() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        minmax_indices(np.arange(10.0), 3)


def _chunks(n: int, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices 0..n-1 shuffled and cut into ``parts`` chunks (rows in any order)."""
    return np.array_split(rng.permutation(n), parts)


def test_short_series_are_kept_whole() -> None:
    t = np.arange(6, dtype=np.int64) * 60_000_000_000  # minutes, in ns
    codes = np.array([1, 1, 0, 2, 2, 2])
    regimes = ClassSlices(int(t[0]), int(t[-1]), classes=3)
    line = LineSlices(int(t[0]), int(t[-1]))
    for part in _chunks(6, 3, np.random.default_rng(0)):
        regimes.add(t[part].view("datetime64[ns]"), codes[part])
        line.add(t[part].view("datetime64[ns]"), codes[part] * 1.5)
    minute = 60e9
    assert runs(codes) == [(0, 2, 1), (2, 3, 0), (3, 6, 2)]
    assert regimes.spans() == [(0.0, 2 * minute, 1), (2 * minute, minute, 0),
                               (3 * minute, 3 * minute, 2)]
    assert line.line().y.tolist() == (codes * 1.5).tolist()  # every point, in time order


def test_long_regime_series_are_shaded_by_the_mode_of_each_time_slice() -> None:
    n = 1000
    t = np.arange(n, dtype=np.int64)
    codes = np.repeat([0, 2], 500)
    codes[::7] = 1  # a minority in every slice
    codes[600:700] = -1  # unknown (no true regime): left out, so a gap in the shading
    regimes = ClassSlices(0, n - 1, classes=3, slices=10, exact=50)
    for part in _chunks(n, 7, np.random.default_rng(1)):
        regimes.add(t[part].view("datetime64[ns]"), codes[part])
    assert regimes.spans() == [(0.0, 500.0, 0), (500.0, 100.0, 2), (700.0, 300.0, 2)]
    mixed = ClassSlices(0, n - 1, classes=3, slices=10, exact=50)
    mixed.add(t.view("datetime64[ns]"), np.arange(n) % 3)
    assert len(mixed.spans()) <= 10


@pytest.mark.parametrize("in_order", [True, False])
def test_a_long_line_keeps_each_slices_extremes_and_its_ends(in_order: bool) -> None:
    n, slices = 100_000, 500
    rng = np.random.default_rng(2)
    t = np.arange(n, dtype=np.int64) * 1000
    y = np.cumsum(rng.normal(size=n))
    line = LineSlices(0, int(t[-1]), slices=slices, exact=1000)
    parts = np.array_split(np.arange(n), 9) if in_order else _chunks(n, 9, rng)
    for part in parts:
        line.add(t[part].view("datetime64[ns]"), y[part])
    got = line.line()
    x = got.x.view(np.int64)
    assert got.points == n and len(x) <= 2 * slices + 2  # noqa: PT018
    assert np.all(np.diff(x) > 0)
    assert (x[0], x[-1]) == (t[0], t[-1]) and (got.y[0], got.y[-1]) == (y[0], y[-1])  # noqa: PT018
    drawn = dict(zip(x.tolist(), got.y.tolist(), strict=True))
    for s in range(0, slices, 37):
        rows = slice(s * n // slices, (s + 1) * n // slices)
        low, high = int(np.argmin(y[rows])), int(np.argmax(y[rows]))
        assert drawn[int(t[rows][low])] == y[rows][low]
        assert drawn[int(t[rows][high])] == y[rows][high]


def test_equity_figure_draws_a_bounded_line_with_its_true_drawdown() -> None:
    n = 50_000
    rng = np.random.default_rng(0)
    net = rng.normal(0, 0.001, size=n)
    net[31_337] = -0.2  # one crash: the worst drawdown must stay on the chart
    times = pd.Series(pd.date_range("2020-01-01", periods=n, freq="min", tz="UTC"))
    shuffled = rng.permutation(n)  # rows in any order: the curve puts them in time order
    fig = fg.equity_figure({"model": equity_curve(times[shuffled], net[shuffled])})
    top, bottom = fig.axes
    equity = np.cumprod(1 + net)
    drawdown = equity / np.maximum.accumulate(equity) - 1
    assert top.get_title(loc="left") == "equity (net of costs, starts at 1)"
    for ax, full in ((top, equity), (bottom, drawdown)):
        (line,) = ax.get_lines()
        drawn = np.asarray(line.get_ydata(), dtype=float)
        assert len(drawn) <= MAX_LINE_POINTS
        for got, want in ((drawn.min(), full.min()), (drawn.max(), full.max()),
                          (drawn[0], full[0]), (drawn[-1], full[-1])):
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_equity_beyond_float64_is_drawn_in_logs() -> None:
    n = 200_000  # 1.01 ** 200000 overflows float64; a strong strategy on 10M bars does
    times = pd.Series(pd.date_range("2020-01-01", periods=n, freq="min", tz="UTC"))
    net = np.full(n, 0.01)
    net[n // 2] = -0.5
    curve = equity_curve(times, net)
    assert np.isfinite(curve.log10_equity.y).all() and np.isfinite(curve.drawdown.y).all()  # noqa: PT018
    assert curve.log10_equity.y[-1] == pytest.approx((n - 1) * np.log10(1.01) + np.log10(0.5))
    assert curve.drawdown.y.min() == pytest.approx(-0.5)
    fig = fg.equity_figure({"model": curve, "flat": equity_curve(times, np.zeros(n))})
    top = fig.axes[0]
    assert top.get_title(loc="left").startswith("log10 of equity")
    assert max(np.max(line.get_ydata()) for line in top.get_lines()) == pytest.approx(
        curve.log10_equity.y.max())
    fg.to_data_uri(fig)  # draws


# ------------------------------------------------------------------ what is read


def test_the_report_reads_only_filtered_rows_of_predictions(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    total = pq.ParquetFile(run_dir / "predictions.parquet").metadata.num_rows
    calls: list[tuple[Path, list[str], Any, int]] = []
    read, chunks = ParquetScan.read, ParquetScan.chunks

    def spy_read(self: ParquetScan, columns: Any, filters: Any = (), categories: Any = ()
                 ) -> pd.DataFrame:
        frame = read(self, columns, filters, categories)
        calls.append((self.path, list(columns), list(filters), len(frame)))
        return frame

    def spy_chunks(self: ParquetScan, columns: Any, filters: Any = (),
                   categories: Any = ()) -> Iterator[pd.DataFrame]:
        for frame in chunks(self, columns, filters, categories):
            calls.append((self.path, list(columns), list(filters), len(frame)))
            yield frame

    monkeypatch.setattr(ParquetScan, "read", spy_read)
    monkeypatch.setattr(ParquetScan, "chunks", spy_chunks)
    render_html(load_run(run_dir))
    predictions = [c for c in calls if c[0].name == "predictions.parquet"]
    assert len(predictions) >= 5  # a reliability panel per output, the regimes
    for _, columns, filters, rows in predictions:
        assert "variance" not in columns and "open" not in columns  # noqa: PT018
        assert {f[0] for f in filters} >= {"method", "member", "split"}
        assert rows <= total / 4  # test rows of one output, never the file
    assert {c[0].name for c in calls} == {"predictions.parquet", "backtest.parquet",
                                          "prices.parquet"}


def test_a_read_skips_the_row_groups_without_the_output(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rows.parquet"
    methods = np.repeat(["a", "b", "c", "d"], 50)
    frame = pd.DataFrame({"method": methods, "seed": np.tile([0, 1], 100),
                          "x": np.arange(200.0)})
    pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=50)
    scan = ParquetScan(path, keep_rows=0)  # a big file: row group by row group
    assert scan.distinct("method") == [frozenset({m}) for m in "abcd"]
    opened: list[tuple[int, tuple[str, ...]]] = []
    batches = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, *args: Any, row_groups: list[int], columns: list[str],
            **kwargs: Any) -> Any:
        opened.extend((i, tuple(columns)) for i in row_groups)
        return batches(self, *args, row_groups=row_groups, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    got = scan.read(["x"], [("method", "in", ["c"]), ("seed", "==", np.int64(1))])
    assert got["x"].tolist() == list(range(101, 150, 2))
    assert {i for i, cols in opened if "x" in cols} == {2}  # the others' values never read
    assert all(cols in (("seed",), ("method", "seed")) for i, cols in opened if i != 2)
    opened.clear()
    assert scan.read(["x"], [("method", "==", "zzz")]).empty
    assert opened == []
    far = scan.read(["method", "x"], [("x", ">=", 190.0), ("method", "not in", ["a"])])
    assert far["x"].tolist() == list(range(190, 200))
    assert far["method"].tolist() == ["d"] * 10  # strings, not categories, unless asked


def test_filtered_reads_match_the_whole_file(run_dir: Path) -> None:
    every = read_predictions(run_dir)
    got = read_predictions(run_dir, columns=["open_time", "method", "p_bull"],
                           filters=[("split", "==", "test"), ("method", "in", {"baseline"})],
                           categories=["method"])
    want = every[(every["split"] == "test") & (every["method"] == "baseline")]
    assert list(got.columns) == ["open_time", "method", "p_bull"]
    assert isinstance(got["method"].dtype, pd.CategoricalDtype)
    assert len(got) == len(want) > 0
    assert np.array_equal(got["p_bull"].to_numpy(), want["p_bull"].to_numpy())


def test_a_column_the_file_lacks_is_one_clear_error(run_dir: Path) -> None:
    with pytest.raises(DataError, match=r"has no column 'nope'.*run the experiment again"):
        read_run_parquet(run_dir / "predictions.parquet", columns=["nope"])


# ------------------------------------------------------------------ row groups, row order


def _rewrite(path: Path, seed: int) -> int:
    """Shuffle the file's rows and write them in small row groups; return how many."""
    table = pq.read_table(path)
    order = np.random.default_rng(seed).permutation(table.num_rows)
    shuffled = table.take(pa.array(order))
    pq.write_table(shuffled, path, row_group_size=max(1, table.num_rows // 7))
    return pq.ParquetFile(path).num_row_groups


@pytest.mark.parametrize("keep_rows", [read.KEEP_ROWS, 0])  # small files kept whole, or not
def test_row_groups_and_row_order_do_not_change_the_report(
        run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_rows: int) -> None:
    original = render_html(load_run(run_dir))
    copied = tmp_path / "run"
    shutil.copytree(run_dir, copied)
    for i, name in enumerate(PARQUETS):
        assert _rewrite(copied / name, i) >= 7
    monkeypatch.setattr(read, "KEEP_ROWS", keep_rows)
    page = render_html(load_run(copied))
    assert _without_images(page) == _without_images(original)  # every table, every note
    assert page.count("data:image/png;base64,") == original.count("data:image/png;base64,")

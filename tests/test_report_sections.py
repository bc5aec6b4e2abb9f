"""The report's trader sections: market identity, per-fold results, trading details at 0x /
1x / 2x costs, equity curves, selected-member panels, uncertainty tables.

Numbers are checked against the run's own metrics.json (a tiny real run) or against
hand-computed values on constructed inputs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection

from selfdistill.evaluation.backtest import run_backtest, trading_metrics
from selfdistill.evaluation.metrics import reliability_curve
from selfdistill.report import figures as fg
from selfdistill.report import load_run, render_html
from selfdistill.report import sections as sec
from selfdistill.report.disagreement import auroc_rows, bin_rows
from selfdistill.report.folds import fold_means
from selfdistill.report.market import data_section, identity, interval_words
from selfdistill.report.markup import interval
from selfdistill.report.outputs import headline_outputs
from selfdistill.report.rundata import RunData
from selfdistill.report.trading import (
    CostModel,
    EquityCurve,
    cell_trades,
    net_returns,
    summarise_trading,
)
from selfdistill.rundir.read import read_curves, read_predictions
from tiny_experiment import tiny_run_dir

SELECTED = ("born_again_selected", "-")
TRADES = ("open_time", "position", "asset_return", "net")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run_dir(tmp_path_factory, "sections")


@pytest.fixture(scope="module")
def run(run_dir: Path) -> RunData:
    return load_run(run_dir)


def _section(page: str, sid: str) -> str:
    return page.split(f'<section id="{sid}">', 1)[1].split("</section>", 1)[0]


def _with_choice(run: RunData, choice: dict[tuple[int, int], str]) -> RunData:
    """The run with born_again's per-cell selection replaced by ``choice``
    ((seed, fold) -> member label): what a run that chose differently would say."""
    metrics = copy.deepcopy(run.metrics)
    for rec in metrics["records"]:
        if rec["method"].startswith("born_again_selected") and rec.get("seed") is not None:
            rec["selected_from"] = choice[(int(rec["seed"]), int(rec["fold"]))]
    return dataclasses.replace(run, metrics=metrics)


# ------------------------------------------------------------------ trading


def test_trades_holding_and_sides_on_a_constructed_path() -> None:
    got = cell_trades(np.array([0.0, 1.0, 1.0, -1.0, -1.0, 0.0, 1.0]))
    # long opened at 1, reversed to short at 3 (a new trade), long again at 6
    assert got == {"trades": 3.0, "invested": 5.0, "long": 3.0, "short": 2.0, "bars": 7.0}


def test_net_returns_at_k_times_costs_by_hand() -> None:
    pos = np.array([1.0, 1.0, -1.0, 0.0])
    ret = np.array([0.01, -0.02, 0.03, 0.04])
    costs = CostModel(fee_bps=5.0, slippage_bps=5.0, periods_per_year=252.0)
    per_unit = 10 * 1e-4  # 10 bps per unit of position change
    changes = np.array([1.0, 0.0, 2.0, 1.0])  # the book starts flat
    for k in (0.0, 1.0, 2.0):
        np.testing.assert_allclose(net_returns(pos, ret, costs, k),
                                   pos * ret - k * changes * per_unit, rtol=0, atol=1e-15)
    run = run_backtest(pos, ret, fee_bps=5.0, slippage_bps=5.0, periods_per_year=252.0)
    assert np.array_equal(net_returns(pos, ret, costs, 1.0), run.net)  # bit for bit


def test_trading_summary_of_a_constructed_curve() -> None:
    times = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    rows = []
    for seed in (0, 1):
        for fold, pos in ((0, [1.0, 1.0, 0.0, -1.0]), (1, [0.0, -1.0, -1.0, -1.0])):
            rows += [{"open_time": t, "seed": seed, "fold": fold, "position": p,
                      "asset_return": 0.01 * (i + 1) * (1 if seed else -1)}
                     for i, (t, p) in enumerate(zip(times, pos, strict=True))]
    curve = pd.DataFrame(rows)
    costs = CostModel(4.0, 1.0, 365.0)
    s = summarise_trading(curve, costs)
    assert s is not None
    assert s.trades == 3.0  # fold 0: long, short; fold 1: short (per seed)
    assert s.holding_bars == pytest.approx(6 / 3)
    assert (s.long, s.short, s.flat) == pytest.approx((2 / 8, 4 / 8, 2 / 8))
    assert s.exposure == pytest.approx(6 / 8)
    expected = []
    for fold in (0, 1):
        per_seed = []
        for seed in (0, 1):
            cell = curve[(curve["seed"] == seed) & (curve["fold"] == fold)]
            held, ret = cell["position"].to_numpy(), cell["asset_return"].to_numpy()
            net = run_backtest(held, ret, fee_bps=4.0, slippage_bps=1.0,
                               periods_per_year=365.0).net
            per_seed.append(trading_metrics(net, held, periods_per_year=365.0)["sharpe"])
        expected.append(np.mean(per_seed))
    assert s.sharpe[1.0] == pytest.approx(np.mean(expected), abs=1e-12)
    assert s.sharpe[0.0] > s.sharpe[1.0] > s.sharpe[2.0]  # costs only ever hurt here


def test_sharpe_at_1x_costs_is_the_runs_own_sharpe(run: RunData) -> None:
    assert run.costs is not None
    checked = 0
    for output in headline_outputs(run.index, gated=True):
        s = summarise_trading(run.output_rows(output, TRADES, curves=True), run.costs)
        agg = run.index.aggregates[("test", *output)].get("sharpe")
        assert s is not None, output
        assert isinstance(agg, dict), output
        assert s.sharpe[1.0] == pytest.approx(agg["mean"], rel=0, abs=1e-12), output
        assert (s.folds, s.seeds) == (2, 2)
        checked += 1
    assert checked >= 8  # models, selected, ensemble, gated, trading baselines


def test_trading_section_shows_the_counts_and_three_cost_levels(run: RunData) -> None:
    html = sec.trading_section(run)
    for title in ("trades", "avg. holding (bars)", "long", "short", "flat", "exposure",
                  "Sharpe 0x costs", "Sharpe 1x costs", "Sharpe 2x costs"):
        assert f">{title}</th>" in html
    assert run.costs is not None
    base = summarise_trading(run.output_rows(("baseline", "-"), TRADES, curves=True), run.costs)
    assert base is not None
    row = re.search(r"<tr><td>baseline</td>(.*?)</tr>", html)
    assert row is not None
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row[1])
    assert cells[0] == f"{base.trades:,.1f}"
    assert cells[-2] == f"{base.sharpe[1.0]:.2f}"
    always_flat = re.search(r"<tr><td>always_flat</td>(.*?)</tr>", html)
    assert always_flat is not None
    assert ">0.0<" in always_flat[1]  # never trades


# ------------------------------------------------------------------ selected members


def test_a_selected_output_follows_each_cells_choice(run: RunData, run_dir: Path) -> None:
    choice = {(0, 0): "generation=0", (0, 1): "generation=1", (1, 0): "generation=1",
              (1, 1): "generation=1"}
    changed = _with_choice(run, choice)
    assert changed.index.label(SELECTED) == \
        "born_again_selected (generation=1 (3 cells), generation=0 (1 cell))"
    assert changed.index.sources(SELECTED) == [("born_again", "generation=0"),
                                               ("born_again", "generation=1")]
    rows = changed.output_rows(SELECTED, TRADES, curves=True)
    curves = read_curves(run_dir)
    assert curves is not None
    for (seed, fold), member in choice.items():
        cell = rows[(rows["seed"] == seed) & (rows["fold"] == fold)].sort_values("open_time")
        own = curves[(curves["method"] == "born_again") & (curves["member"] == member)
                     & (curves["seed"] == seed) & (curves["fold"] == fold)]
        assert len(cell) == len(own) > 0
        assert np.array_equal(cell["net"].to_numpy(), own.sort_values("open_time")["net"])
    assert len(rows) == sum(len(curves[(curves["method"] == "born_again")
                                       & (curves["member"] == "generation=0")
                                       & (curves["seed"] == s) & (curves["fold"] == f)])
                            for s, f in choice)  # one member's rows per cell, no more


def test_panels_show_the_selected_member_not_the_last(run: RunData, run_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    first = "generation=0"  # the tiny run's last generation is 1
    changed = _with_choice(run, dict.fromkeys([(s, f) for s in (0, 1) for f in (0, 1)], first))
    drawn: list[fg.ReliabilityPanel] = []
    draw = fg.reliability_figure

    def capture(panels: list[fg.ReliabilityPanel]) -> Any:
        drawn.extend(panels)
        return draw(panels)

    monkeypatch.setattr(sec.fg, "reliability_figure", capture)
    sec.calibration_section(changed)
    panel = next(p for p in drawn if p.title == "born_again_selected")
    assert panel.subtitle == "selected: generation=0"
    every = read_predictions(run_dir)
    test = every[(every["split"] == "test") & (every["method"] == "born_again")
                 & (every["member"] == first)]
    proba = test[["p_bull", "p_bear", "p_sideways"]].to_numpy(dtype=np.float64)
    assert panel.before == reliability_curve(test["label"].to_numpy(), proba, 10)
    confusion = sec.confusion_section(changed)
    assert "born_again_selected<br><small>selected: generation=0</small>" in confusion


def test_confusion_of_the_selected_output_sums_its_cells(run: RunData) -> None:
    html = sec.confusion_section(run)
    cells = run.index.cells[("test", *SELECTED)]
    total = np.sum([np.asarray(r["confusion_matrix"]) for r in cells], axis=0)
    table = html.split("born_again_selected", 1)[1].split("</table>", 1)[0]
    counts = [int(c.replace(",", "")) for c in re.findall(r"<small>([\d,]+)</small>", table)]
    assert counts == total.ravel().tolist()


def test_equity_always_shows_the_selected_member_and_the_baselines(
        run: RunData, run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown: dict[str, EquityCurve] = {}
    draw = fg.equity_figure

    def capture(curves: dict[str, EquityCurve], baselines: Any = ()) -> Any:
        shown.update(curves)
        return draw(curves, baselines)

    monkeypatch.setattr(sec.fg, "equity_figure", capture)
    sec.equity_section(run)
    picked = run.index.selected_from(SELECTED)
    assert f"born_again_selected ({picked})" in shown
    for name in ("baseline", "buy_and_hold", "always_flat", "random"):
        assert name in shown
    curves = read_curves(run_dir)
    assert curves is not None
    base = curves[(curves["method"] == "baseline") & (curves["seed"] == 0)]  # one seed
    net = base.sort_values("open_time")["net"].to_numpy()
    assert shown["baseline"].log10_equity.points == len(net)
    assert 10 ** shown["baseline"].log10_equity.y[-1] == pytest.approx(np.prod(1 + net),
                                                                       rel=1e-9)


# ------------------------------------------------------------------ market, folds


def test_market_identity_and_rows_per_split(run: RunData, run_dir: Path) -> None:
    timings = json.loads((run_dir / "timings.json").read_text(encoding="utf-8"))
    ident = identity(run)
    assert ident["source"] == "synthetic"
    assert ident["interval"] == "60 (1 hour)"
    assert ident["first bar"] == run.metrics["data"]["first_bar"][:16] + " UTC"
    assert ident["created"] == timings["created_at"].replace("T", " ")[:16] + " UTC"
    assert ident["bars"] == f"{run.metrics['data']['bars']:,}"
    html = data_section(run)
    for bounds in run.metrics["experiment"]["fold_bounds"]:
        for split in ("train", "val", "test"):
            assert f">{bounds[split]['rows']:,}</td>" in html
    balance = run.metrics["data"]["class_balance"]["test"]
    assert f">{100 * balance['bear']:.1f}%</td>" in html
    page = render_html(run)
    header = page.split("</header>", 1)[0]
    assert "60 (1 hour) bars" in header and ident["created"] in header  # noqa: PT018


def test_interval_words() -> None:
    assert [interval_words(i) for i in ("1", "15", "60", "240", "D", "W", "x")] == \
        ["1 (1 minute)", "15 (15 minutes)", "60 (1 hour)", "240 (4 hours)", "D (1 day)",
         "W (1 week)", "x"]


def test_per_fold_table_is_the_seed_mean_of_each_fold(run: RunData) -> None:
    html = sec.folds_section(run)
    assert "fold 0 (" in html and "fold 1 (" in html  # noqa: PT018
    cells = run.index.cells[("test", "baseline", "-")]
    expect = {f: [v for r in cells if r["fold"] == f for v in [r["accuracy"]]] for f in (0, 1)}
    assert fold_means(cells, "accuracy") == {f: float(np.mean(v)) for f, v in expect.items()}
    row = re.search(r"<tr><td>baseline</td>(.*?)</tr>", html)
    assert row is not None
    got = re.findall(r"<td[^>]*>([^<]*)</td>", row[1])
    means = {m: fold_means(cells, m) for m in ("accuracy", "nll", "sharpe")}
    assert got == [f"{means['accuracy'][0]:.3f}", f"{means['nll'][0]:.3f}",
                   f"{means['sharpe'][0]:.2f}", f"{means['accuracy'][1]:.3f}",
                   f"{means['nll'][1]:.3f}", f"{means['sharpe'][1]:.2f}"]


# ------------------------------------------------------------------ findings, page


def test_the_findings_come_first(run: RunData) -> None:
    page = render_html(run)
    body = page.split("</nav>", 1)[1]
    assert body.startswith('<section id="findings">')
    findings = _section(page, "findings")
    for q in run.metrics["findings"]["questions"]:
        assert escape(q["question"]) in findings
    assert "Overall:" in findings
    for warning in run.metrics["findings"]["warnings"]:
        assert escape(warning) in findings


def test_an_incomplete_run_gets_a_banner(run_dir: Path, tmp_path: Path) -> None:
    copied = tmp_path / "run"
    shutil.copytree(run_dir, copied)
    (copied / "INCOMPLETE").write_text("interrupted at cell 2\n", encoding="utf-8")
    page = render_html(load_run(copied))
    assert '<p class="banner">This run is marked INCOMPLETE (interrupted at cell 2)' in page
    assert '<p class="banner">' not in render_html(load_run(run_dir))


# ------------------------------------------------------------------ uncertainty


def test_auroc_table_puts_each_measure_next_to_confidence(run: RunData) -> None:
    header, rows = auroc_rows(run.metrics)
    assert header[2] == "AUROC [95% CI]"
    flags = run.metrics["error_flags"][0]
    by_score = {r[1]: r for r in rows}
    assert set(by_score) == {"variance", "mutual_information", "flip_rate",
                             "1 - max probability"}
    mi = flags["scores"]["mutual_information"]
    assert by_score["mutual_information"][2] == interval(
        mi["auroc"]["estimate"], mi["auroc"]["ci_low"], mi["auroc"]["ci_high"])
    vs = mi["vs_reference"]
    assert by_score["mutual_information"][4] == interval(vs["estimate"], vs["ci_low"],
                                                         vs["ci_high"])
    assert by_score["1 - max probability"][4] == "(the reference)"
    html = sec.uncertainty_section(run)
    assert "<img" in html
    assert "AUROC for predicting a test error" in html


def test_error_bins_pool_cells_with_the_same_bins(run: RunData) -> None:
    header, rows = bin_rows(run.metrics)
    entries = [u for u in run.metrics["uncertainty"] if u["split"] == "test"
               and u["method"] == "born_again" and u["measure"] == "mutual_information"]
    widths = {len(u["quantiles"]) for u in entries}
    row = next(r for r in rows if r[1] == "mutual_information"
               and int(r[2]) == sum(len(u["quantiles"]) == max(widths) for u in entries))
    same = [u for u in entries if len(u["quantiles"]) == max(widths)]
    n_first = sum(u["quantiles"][0]["n"] for u in same)
    err_first = sum(u["quantiles"][0]["n"] * u["quantiles"][0]["error_rate"]
                    for u in same) / n_first
    assert str(row[3]).startswith(f"{err_first:.3f}<br><small>{n_first:,} rows")
    assert header[3] == "bin 1 (least)"


# ------------------------------------------------------------------ intervals, bins


def test_intervals_are_drawn_as_they_are() -> None:
    assert interval(0.5, 0.1, 0.55) == "0.500 [0.100, 0.550]"  # asymmetric, as given
    assert interval(0.5, None, None) == "0.500"
    points: list[dict[str, Any]] = [{"x": 0, "mean": 0.5, "ci_low": 0.1, "ci_high": 0.55},
                                    {"x": 1, "mean": 0.6, "ci_low": None, "ci_high": None}]
    series = {"m": {"accuracy": points}}
    fig = fg.generations_figure(series, {}, ["accuracy"])
    segments = [seg for c in fig.axes[0].collections if isinstance(c, LineCollection)
                for seg in c.get_segments()]
    assert len(segments) == 1  # no interval drawn where there is none
    np.testing.assert_allclose(segments[0], [[0.0, 0.1], [0.0, 0.55]])


def test_reliability_bins_with_few_rows_are_grey() -> None:
    curve: dict[str, list[float]] = {
        "bin_lower": [0.3, 0.6], "bin_upper": [0.4, 0.7], "confidence": [0.35, 0.65],
        "accuracy": [0.4, 0.9], "count": [fg.MIN_BIN_ROWS, fg.MIN_BIN_ROWS - 1]}
    fig = fg.reliability_figure([fg.ReliabilityPanel("m", "shows generation=2", curve, None)])
    top, bottom = fig.axes
    bars = [p.get_facecolor() for p in bottom.patches]
    assert bars[0] != bars[1]
    assert bars[1][:3] == pytest.approx((0xd0 / 255,) * 3, abs=1e-3)  # grey
    line = top.get_lines()[1]  # after the diagonal: the bins with enough rows only
    assert np.asarray(line.get_xdata()).tolist() == [0.35]
    assert top.get_title(loc="left") == "m\nshows generation=2"

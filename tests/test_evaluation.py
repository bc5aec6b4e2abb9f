"""The experiment: planning, per-cell scoring, aggregates, comparisons, the run directory."""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from selfdistill.config import load_config
from selfdistill.errors import ConfigError
from selfdistill.evaluation import (
    ExperimentCallback,
    ExperimentResult,
    backtest_settings,
    experiment_seeds,
    plan_cells,
    plan_splits,
    run_cell,
    run_experiment,
)
from selfdistill.evaluation.aggregate import (
    add_selected_records,
    aggregate_records,
    compare_outputs,
)
from selfdistill.evaluation.cell import BacktestSettings
from selfdistill.evaluation.evidence import build_evidence
from selfdistill.evaluation.fold import build_dataset, holdout_split, load_candles
from selfdistill.evaluation.scoring import CellScores, score_lineages
from selfdistill.methods import Lineage
from selfdistill.rundir.frames import FrameWriter
from selfdistill.splits import Split
from tiny_experiment import tiny_config


class Recorder(ExperimentCallback):
    def __init__(self) -> None:
        self.begin: tuple[int, int] | None = None
        self.ends: list[tuple[int, int]] = []

    def on_experiment_begin(self, n_cells: int, workers: int) -> None:
        self.begin = (n_cells, workers)

    def on_cell_end(self, done: int, total: int, info: dict[str, Any]) -> None:
        self.ends.append((done, total))


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExperimentResult, Recorder]:
    import torch

    torch.set_num_threads(1)
    recorder = Recorder()
    out = tmp_path_factory.mktemp("run") / "exp"
    return run_experiment(tiny_config(), out_dir=out, workers=1, callbacks=[recorder]), recorder


# ------------------------------------------------------------------ planning


def test_walk_forward_folds_are_chronological_and_leak_free() -> None:
    cfg = tiny_config(evaluation={"folds": 3})
    ds = build_dataset(cfg, *load_candles(cfg))
    splits = plan_splits(ds, cfg)
    assert len(splits) == 3
    for a, b in itertools.pairwise(splits):
        assert a.test.max() < b.test.min()  # test blocks move forward, never overlap
    for s in splits:
        assert s.train.max() < s.val.min() and s.val.max() < s.test.min()  # noqa: PT018
        # purged: no training label looks at a validation bar
        assert ds.labels.end[s.train].max() < ds.labels.start[s.val].min()


def test_purged_kfold_tests_every_block_once_without_overlap() -> None:
    cfg = tiny_config(evaluation={"scheme": "purged_kfold", "folds": 3})
    ds = build_dataset(cfg, *load_candles(cfg))
    splits = plan_splits(ds, cfg)
    tested = np.concatenate([s.test for s in splits])
    assert np.array_equal(np.sort(tested), np.arange(ds.n_rows))
    start, end = ds.labels.start, ds.labels.end
    for s in splits:
        lo, hi = start[s.test].min(), end[s.test].max()
        overlaps = (end[s.train] >= lo) & (start[s.train] <= hi)
        assert not overlaps.any()  # no training label interval touches the test block


def test_holdout_with_several_folds_is_a_config_error() -> None:
    # refused when the config is read (before any data is loaded); plan_splits checks too
    with pytest.raises(ConfigError, match="walk_forward or purged_kfold"):
        tiny_config(evaluation={"scheme": "holdout", "folds": 3})


def test_cells_cover_folds_x_seeds_and_keep_models_of_one() -> None:
    cfg = tiny_config(evaluation={"folds": 2, "seeds": 3}, seed=10)
    assert experiment_seeds(cfg) == [10, 11, 12]
    ds = build_dataset(cfg, *load_candles(cfg))
    cells = plan_cells(plan_splits(ds, cfg), experiment_seeds(cfg))
    assert [(c.fold, c.seed) for c in cells] == [(f, s) for f in (0, 1) for s in (10, 11, 12)]
    assert [(c.fold, c.seed) for c in cells if c.save_models] == [(1, 10)]


# ------------------------------------------------------------------ one cell


@dataclass
class _Fixed:
    """A member whose probabilities are given for every row (over-confident noise)."""

    proba: np.ndarray  # (R, C)
    keys: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, x: torch.Tensor, rows: torch.Tensor) -> np.ndarray:
        return self.proba[rows.numpy()]


SETTINGS = BacktestSettings(enabled=True, fee_bps=5.0, slippage_bps=0.0, allow_short=True,
                            sizing="fixed", uncertainty_gate=None, periods_per_year=8760)


def _scored(test_label: int | None = None) -> tuple[CellScores, pd.DataFrame | None, Split]:
    cfg = tiny_config(methods=["baseline"])
    ds = build_dataset(cfg, *load_candles(cfg))
    split = holdout_split(ds, cfg)
    if test_label is not None:  # every test label changed
        y = ds.labels.y.copy()
        y.iloc[np.asarray(split.test)] = test_label
        ds = dataclasses.replace(ds, labels=dataclasses.replace(ds.labels, y=y))
    logits = np.random.default_rng(0).normal(0, 1, (ds.n_rows, 3)) * 3
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    lineage = Lineage("baseline", [_Fixed(p)])  # type: ignore[list-item]
    curves = FrameWriter(None)
    scored = score_lineages(ds, split, [lineage], torch.zeros(ds.n_rows, 1), settings=SETTINGS,
                            seed=0, fold=0, predictions=FrameWriter(None), curves=curves)
    return scored, curves.frame(), split


def test_scoring_fits_temperature_on_validation_only() -> None:
    scored, _, _ = _scored()
    train, val, test = scored.records[:3]
    assert [r["split"] for r in (train, val, test)] == ["train", "val", "test"]
    assert "temperature" not in train
    assert val["temperature"] == test["temperature"] > 1.0  # over-confident -> softened
    assert val["nll_calibrated"] < 1.5 < val["nll"]
    again, _, _ = _scored(test_label=0)  # test labels never move T
    assert again.records[1]["temperature"] == val["temperature"]
    assert again.records[2]["accuracy"] != test["accuracy"]


def test_scoring_backtests_test_rows_and_adds_baseline_rows() -> None:
    scored, curves, split = _scored()
    test = scored.records[2]
    assert {"sharpe", "total_return", "max_drawdown", "turnover", "random_sharpe"} <= set(test)
    assert "sharpe" not in scored.records[1]  # validation rows are not traded
    methods = [r["method"] for r in scored.records[3:]]
    assert methods == ["buy_and_hold", "always_flat", "random"]
    assert curves is not None
    assert set(curves["method"]) == {"baseline", "buy_and_hold", "always_flat", "random"}
    assert len(curves[curves["method"] == "baseline"]) == len(split.test)
    evidence = scored.evidence.outputs[("baseline", "-")]
    assert len(evidence.times) == len(split.test)
    assert set(evidence.columns) >= {"correct", "nll", "brier", "net", "random_net"}


def test_cells_share_nothing(experiment: tuple[ExperimentResult, Recorder]) -> None:
    cfg = tiny_config(methods=["baseline"])
    ds = build_dataset(cfg, *load_candles(cfg))
    cells = plan_cells(plan_splits(ds, cfg), [0])
    settings = backtest_settings(cfg, ds.interval)
    alone = run_cell(ds, cells[0], cfg, settings=settings).records
    run_cell(ds, cells[1], cfg, settings=settings)  # another fold first: nothing carries over
    after = run_cell(ds, cells[0], cfg, settings=settings).records
    assert json.dumps(alone, default=str) == json.dumps(after, default=str)


# ------------------------------------------------------------------ aggregates / comparisons


def _records() -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    out = []
    for fold in range(3):
        for seed in range(4):
            base = 0.4 + 0.05 * fold + rng.normal(0, 0.002)
            cell = {"split": "test", "fold": fold, "seed": seed}
            out.append({"method": "baseline", "generation": None, **cell, "accuracy": base,
                        "nll": 1.0})
            for g in (0, 1):
                out.append({"method": "born_again", "generation": g, **cell,
                            "accuracy": base + 0.03 * g, "nll": 1.0 - 0.05 * g,
                            "selected": g == 1})
    return out


def test_aggregates_carry_a_t_interval_over_folds_with_null_cell() -> None:
    aggs = aggregate_records(_records())
    base = next(a for a in aggs if a["method"] == "baseline")
    assert base["fold"] is None and base["seed"] is None  # noqa: PT018
    assert set(base["accuracy"]) == {"mean", "ci_low", "ci_high", "n", "folds"}
    assert (base["accuracy"]["n"], base["accuracy"]["folds"]) == (12, 3)
    # seeds are averaged within a fold; the interval is Student t over the 3 fold means
    fold_means = [np.mean([r["accuracy"] for r in _records() if r["method"] == "baseline"
                           and r["fold"] == f]) for f in range(3)]
    half = 4.302652729911275 * np.std(fold_means, ddof=1) / np.sqrt(3)  # t(0.975, 2)
    assert base["accuracy"]["ci_low"] == pytest.approx(np.mean(fold_means) - half)
    assert base["accuracy"]["ci_high"] == pytest.approx(np.mean(fold_means) + half)
    gens = sorted(a["generation"] for a in aggs if a["method"] == "born_again")
    assert gens == [0, 1]


def test_one_fold_gives_no_aggregate_interval() -> None:
    aggs = aggregate_records([r for r in _records() if r["fold"] == 0])
    base = next(a for a in aggs if a["method"] == "baseline")
    assert base["accuracy"]["ci_low"] is None
    assert base["accuracy"]["folds"] == 1


def test_selected_records_follow_the_validation_choice() -> None:
    records = add_selected_records(_records())
    chosen = [r for r in records if r["method"] == "born_again_selected"]
    assert len(chosen) == 12
    assert all(r["selected_from"] == "generation=1" and r["generation"] is None for r in chosen)


def _bar_predictions(n_bars: int = 400) -> pd.DataFrame:
    """2 folds x 2 seeds of test rows: baseline, born_again generation 0 (the same model)
    and generation 1 (right on 15% more bars)."""
    rng = np.random.default_rng(2)
    frames = []
    for fold in (0, 1):
        times = pd.date_range(f"202{fold}-01-01", periods=n_bars, freq="h", tz="UTC")
        y = rng.integers(0, 3, n_bars)
        for seed in (0, 1):
            p0 = rng.dirichlet([1, 1, 1], n_bars)
            better = p0.copy()
            fix = rng.random(n_bars) < 0.3
            better[fix] = 0.1
            better[fix, y[fix]] = 0.8
            for method, member, p in (("baseline", "-", p0), ("born_again", "generation=0", p0),
                                      ("born_again", "generation=1", better)):
                frames.append(pd.DataFrame({
                    "open_time": times, "split": "test", "method": method, "member": member,
                    "p_bull": p[:, 0], "p_bear": p[:, 1], "p_sideways": p[:, 2], "label": y,
                    "seed": seed, "fold": fold}))
    return pd.concat(frames, ignore_index=True)


def test_comparisons_pair_bars_and_give_directed_adjusted_verdicts() -> None:
    evidence = build_evidence(_bar_predictions(), None, ("bull", "bear", "sideways"), {})
    comps = compare_outputs(evidence)
    by = {(c["kind"], c["candidate"], c["metric"]): c for c in comps}
    gen1 = by[("vs_first_member", "generation=1", "accuracy")]
    assert gen1["verdict"] == "better"
    assert gen1["mean_diff"] > 0.1
    assert (gen1["n_bars"], gen1["n_seeds"], gen1["n_folds"]) == (800, 2, 2)
    assert by[("vs_first_member", "generation=1", "nll")]["verdict"] == "better"  # lower NLL
    same = by[("vs_baseline", "generation=0", "accuracy")]
    assert (same["mean_diff"], same["p_value"], same["test"]) == (0.0, 1.0, "identical")
    assert same["verdict"] == "no significant difference"
    assert all(c["p_adjusted"] >= c["p_value"] for c in comps)
    assert {c["family"] for c in comps} == {"comparisons"}
    assert {c["adjustment"] for c in comps} == {"bh"}


# ------------------------------------------------------------------ the experiment


def test_experiment_writes_a_complete_run_directory(
        experiment: tuple[ExperimentResult, Recorder]) -> None:
    result, recorder = experiment
    run = result.run_dir
    for name in ("config.yaml", "metrics.json", "predictions.parquet", "backtest.parquet",
                 "prices.parquet", "timings.json"):
        assert (run / name).is_file(), name
    assert any((run / "models").rglob("*.safetensors"))
    assert recorder.begin == (4, 1)
    assert recorder.ends == [(1, 4), (2, 4), (3, 4), (4, 4)]
    cells = {(r["fold"], r["seed"]) for r in result.metrics["records"] if not r.get("aggregate")}
    assert cells == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_experiment_metrics_hold_aggregates_and_comparisons(
        experiment: tuple[ExperimentResult, Recorder]) -> None:
    metrics = experiment[0].metrics
    aggs = [r for r in metrics["records"] if r.get("aggregate")]
    test_base = next(a for a in aggs if a["method"] == "baseline" and a["split"] == "test")
    assert test_base["fold"] is None and test_base["seed"] is None  # noqa: PT018
    for name in ("accuracy", "nll_calibrated", "sharpe", "accuracy_true"):
        assert test_base[name]["n"] == 4
    kinds = {c["kind"] for c in metrics["comparisons"]}
    assert {"vs_first_member", "vs_baseline", "vs_lightgbm", "vs_ungated", "vs_buy_and_hold",
            "vs_always_flat", "vs_random"} <= kinds
    compared = {c["metric"] for c in metrics["comparisons"]}
    assert {"accuracy", "nll", "brier", "sharpe", "accuracy_true"} <= compared
    assert {c["verdict"] for c in metrics["comparisons"]} <= {
        "better", "worse", "no significant difference", "not testable"}
    assert {"findings", "error_flags", "statistics"} <= set(metrics)


def test_generation_zero_and_baseline_differ_by_exactly_zero(
        experiment: tuple[ExperimentResult, Recorder]) -> None:
    """Born-Again generation 0 is the baseline model: every number equal, Sharpe included,
    even with the uncertainty gate on (a gated strategy is its own output)."""
    metrics = experiment[0].metrics
    same = [c for c in metrics["comparisons"] if c["kind"] == "vs_baseline"
            and c["method"] == "born_again" and c["candidate"] == "generation=0"]
    assert {c["metric"] for c in same} >= {"accuracy", "nll", "brier", "sharpe"}
    assert all(c["mean_diff"] == 0.0 and c["test"] == "identical" for c in same)
    cells = [r for r in metrics["records"] if not r.get("aggregate") and r["split"] == "test"]
    base = {(r["fold"], r["seed"]): r for r in cells if r["method"] == "baseline"}
    for rec in cells:
        if rec["method"] == "born_again" and rec["generation"] == 0:
            ref = base[(rec["fold"], rec["seed"])]
            for key in ("accuracy", "nll", "sharpe", "total_return", "turnover"):
                assert rec[key] == ref[key], key
    gated = [r for r in cells if r["method"] == "born_again+gate"]
    assert gated
    assert all("accuracy" not in r for r in gated)


def test_experiment_predictions_have_cells_and_temperatures(
        experiment: tuple[ExperimentResult, Recorder]) -> None:
    preds = pd.read_parquet(experiment[0].run_dir / "predictions.parquet")
    assert set(preds["split"]) == {"val", "test"}
    assert {"seed", "fold", "temperature", "mutual_information"} <= set(preds.columns)
    assert preds["temperature"].notna().all()
    per_cell = preds.groupby(["fold", "seed", "method", "member"])["temperature"].nunique()
    assert (per_cell == 1).all()  # one temperature per output and cell


@pytest.mark.slow
def test_two_workers_give_the_same_numbers(tmp_path: Path,
                                           experiment: tuple[ExperimentResult, Recorder]) -> None:
    result = run_experiment(tiny_config(), out_dir=tmp_path / "w2", workers=2)
    assert result.workers == 2

    def accuracies(metrics: dict[str, Any]) -> dict[tuple[Any, ...], float]:
        return {(r["method"], r.get("generation"), r["split"], r["fold"], r["seed"]):
                r["accuracy"] for r in metrics["records"]
                if not r.get("aggregate") and "accuracy" in r}

    one, two = accuracies(experiment[0].metrics), accuracies(result.metrics)
    assert one.keys() == two.keys()
    assert max(abs(one[k] - two[k]) for k in one) < 0.02  # thread count may move last bits


def test_shipped_config_plans_folds_on_a_csv_of_daily_candles(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 2500
    close = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, n)))
    open_ = np.r_[close[0], close[:-1]]
    frame = pd.DataFrame({
        "Date": pd.date_range("2017-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "Open": open_, "High": np.maximum(open_, close) * 1.01,
        "Low": np.minimum(open_, close) * 0.99, "Close": close,
        "Volume": rng.lognormal(10, 0.5, n)})
    path = tmp_path / "daily.csv"
    frame.to_csv(path, index=False)
    shipped = Path(__file__).resolve().parents[1] / "configs" / "walk_forward.yaml"
    cfg = load_config(shipped, ["data.source=csv", f"data.path={path}",
                                "backtest.periods_per_year=365"])
    candles, truth, interval = load_candles(cfg)
    ds = build_dataset(cfg, candles, truth, interval)
    splits = plan_splits(ds, cfg)
    assert interval == "D"
    assert len(splits) == cfg.evaluation.folds == 4
    assert all(min(s.sizes.values()) > 100 for s in splits)
    assert backtest_settings(cfg, interval).periods_per_year == 365.0


SHIPPED = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["demo.yaml", "walk_forward.yaml", "all_methods.yaml",
                                  "born_again_8gen.yaml"])
def test_shipped_configs_keep_generation_zero_identical_to_baseline(name: str,
                                                                    tmp_path: Path) -> None:
    """Under each shipped config (its backtest, gate and evaluation settings; the data and
    training shrunk to seconds), generation 0 vs baseline differs by exactly 0."""
    cfg = load_config(SHIPPED / name, [
        "data.synthetic.n_bars=1200", "training.epochs=2", "model.hidden=[8]",
        "born_again.generations=1", "methods=[baseline, born_again]", "evaluation.workers=1",
        "evaluation.seeds=1", "device=cpu"])
    result = run_experiment(cfg, out_dir=tmp_path / "run", workers=1)
    same = [c for c in result.metrics["comparisons"] if c["kind"] == "vs_baseline"
            and c["method"] == "born_again" and c["candidate"] == "generation=0"]
    assert {"accuracy", "nll", "brier", "sharpe"} <= {c["metric"] for c in same}
    assert all(c["mean_diff"] == 0.0 for c in same), same


def test_the_cells_inputs_are_freed_before_its_test_split_is_scored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the (R, F) inputs are the largest array of a cell: gone before its heaviest part
    import weakref

    from selfdistill.evaluation import cell as cellmod
    from selfdistill.evaluation import scoring

    cfg = tiny_config(methods=["majority", "baseline"])
    ds = build_dataset(cfg, *load_candles(cfg))
    made: list[weakref.ref[torch.Tensor]] = []
    real_make, real_split = cellmod.make_train_data, scoring._score_split

    def make(*args: Any, **kwargs: Any) -> Any:
        out = real_make(*args, **kwargs)
        made.append(weakref.ref(out[1]))
        return out

    alive: list[bool] = []

    def score_split(cell: Any, lineage: Any, li: int, si: int, *args: Any) -> Any:
        if si == 2:
            alive.append(made[0]() is not None)
        return real_split(cell, lineage, li, si, *args)

    monkeypatch.setattr(cellmod, "make_train_data", make)
    monkeypatch.setattr(scoring, "_score_split", score_split)
    result = cellmod.run_fold(ds, holdout_split(ds, cfg), cfg, seed=0)
    assert alive == [False, False]
    assert any(r["split"] == "test" and r["method"] == "baseline" for r in result.records)

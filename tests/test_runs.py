"""selfdistill runs list / compare, on real (tiny) run directories."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selfdistill.cli import main
from selfdistill.evaluation.experiment import run_experiment
from selfdistill.evaluation.runcompare import compare_runs
from selfdistill.rundir.lifecycle import mark_incomplete
from tiny_experiment import tiny_config


def _run(out: Path, **sections: dict[str, object]) -> Path:
    base: dict[str, dict[str, object]] = {
        "born_again": {"generations": 1}, "labels": {"horizon": 4, "vol_span": 30},
        "evaluation": {"scheme": "holdout", "folds": 1, "seeds": 1}}
    for name, value in sections.items():
        base[name] = {**base.get(name, {}), **value}
    cfg = tiny_config(methods=["majority", "baseline", "born_again"], training={"epochs": 1},
                      **base)
    run_experiment(cfg, out_dir=out)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/a (the reference), b (another alpha: pairable), c (other labels: not)."""
    root = tmp_path_factory.mktemp("runs")
    _run(root / "a")
    _run(root / "b", born_again={"alpha": 0.9})
    _run(root / "c", labels={"horizon": 6})
    return root


def test_runs_with_different_seed_counts_are_paired_on_seed_means(
        runs: Path, tmp_path: Path) -> None:
    two_seeds = _run(tmp_path / "e", evaluation={"seeds": 2})
    result = compare_runs([runs / "a", two_seeds])
    rows = {(r["method"], r["metric"]): r for r in result.tests[str(two_seeds)]}
    assert rows[("baseline", "accuracy")]["n_seeds"] == 1  # seed 0 vs the mean of 0 and 1
    assert rows[("baseline", "nll")]["mean_diff"] != 0.0


def test_runs_list_prints_one_line_per_run(runs: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "runs"
    shutil.copytree(runs, folder)
    (folder / "notes").mkdir()  # not a run directory: skipped
    shutil.copytree(runs / "a", folder / "d")
    mark_incomplete(folder / "d", "interrupted at noon")
    assert main(["runs", "list", str(folder)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    by_dir = {Path(line.split("  |  ")[0]).name: line for line in lines}
    assert set(by_dir) == {"a", "b", "c", "d"}
    line = by_dir["a"]
    assert "synthetic 60 2022-01-01.." in line
    assert "majority,baseline,born_again" in line
    assert "born_again_selected acc 0." in line
    assert "own: " in line
    assert "INCOMPLETE (interrupted at noon)" in by_dir["d"]
    assert "INCOMPLETE" not in by_dir["a"]


def test_compare_pairs_runs_on_the_same_bars(runs: Path) -> None:
    result = compare_runs([runs / "a", runs / "b"])
    rows = {(r["method"], r["metric"]): r for r in result.tests[str(runs / "b")]}
    # baseline is the same model in both runs: exactly no difference
    same = rows[("baseline", "accuracy")]
    assert same["mean_diff"] == 0.0
    assert same["verdict"] == "no significant difference"
    distilled = rows[("born_again_selected", "nll")]
    assert distilled["n_bars"] > 30
    assert distilled["p_adjusted"] is not None
    assert distilled["verdict"] in ("better", "worse", "no significant difference")
    assert ("born_again_selected", "sharpe") in rows
    table = {(r["output"], r["metric"]): r["values"] for r in result.table}
    assert table[("baseline", "accuracy")][0] == table[("baseline", "accuracy")][1]


def test_compare_says_why_runs_cannot_be_paired(runs: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "compare", str(runs / "a"), str(runs / "b"), str(runs / "c")]) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert "not paired: their labels differ (labels.horizon)" in out
    assert "paired per-bar tests on the same test bars" in out
    assert "born_again_selected" in out


def test_compare_usage_and_data_errors(runs: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "compare", str(runs / "a")]) == 2
    assert "at least two run directories" in capsys.readouterr().err
    assert main(["runs", "compare", str(runs / "a"), str(tmp_path)]) == 1
    assert "is not a run directory" in capsys.readouterr().err
    assert main(["runs", "list", str(tmp_path / "missing")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_the_cli_starts_without_ray_optuna_or_mlflow() -> None:
    code = ("import sys, selfdistill.cli\n"
            "print(sorted(m for m in ('ray', 'optuna', 'mlflow', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "[]"

"""The study file: points, names, and refusals with field paths (no run, no torch)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from selfdistill.cli import main
from selfdistill.errors import ConfigError
from selfdistill.study.spec import MAX_POINTS, load_study, package_file, parse_study

STUDIES = Path(__file__).resolve().parent.parent / "studies"


def _study(**fields: Any) -> dict[str, Any]:
    return {"name": "s", "base": {"device": "cpu"}, **fields}


def test_points_are_the_grid_crossed_with_datasets_and_variants() -> None:
    study = parse_study(_study(
        datasets={"calm": {"set": {"data.synthetic.persistence": 0.999}},
                  "jumpy": {"set": {"data.synthetic.persistence": 0.95}}},
        variants={"t1": {"born_again.temperature": 1.0}, "t4": {"born_again.temperature": 4}},
        grid={"labels.noise.rate": [0.0, 0.25], "data.synthetic.n_bars": [2000, 4000]},
        methods=["baseline", "born_again"]))
    assert len(study.points) == 2 * 2 * 2 * 2
    assert study.axes == ["labels.noise.rate", "data.synthetic.n_bars"]
    point = next(p for p in study.points if p.name == "jumpy-t4-rate0.25-n_bars4000")
    cfg = point.config
    assert (cfg.name, cfg.labels.noise.rate, cfg.data.synthetic.n_bars) == (point.name, 0.25, 4000)
    assert cfg.data.synthetic.persistence == 0.95
    assert cfg.born_again.temperature == 4.0
    assert cfg.methods == ["baseline", "born_again"]
    assert point.settings == {"labels.noise.rate": 0.25, "data.synthetic.n_bars": 4000}
    assert (point.dataset, point.variant) == ("jumpy", "t4")
    assert len({p.name for p in study.points}) == len(study.points)


def test_colliding_last_parts_keep_the_whole_key_in_names() -> None:
    study = parse_study(_study(grid={"born_again.temperature": [2.0],
                                     "snapshot.temperature": [3.0]}))
    assert study.points[0].name == "synthetic-born_again.temperature2-snapshot.temperature3"


@pytest.mark.parametrize(("fields", "expected"), [
    ({"grd": {}}, r"invalid study \(t\): grd: unknown key; did you mean 'grid'\?"),
    ({"grid": {"labels.noise.rat": [0.1]}},
     r"grid\.labels\.noise\.rat: 'labels\.noise\.rat' is not a run-config key; did you mean "
     r"'labels\.noise\.rate'\?"),
    ({"grid": {"born_again.temperatur": [1.0]}}, r"did you mean 'born_again\.temperature'"),
    ({"variants": {"v": {"trainig.epochs": 3}}}, r"variants\.v\.trainig\.epochs: .*did you "
                                                 r"mean 'training\.epochs'"),
    ({"set": {"labels": 3, "Bad Key": 1}}, r"set\.Bad Key: must be a dotted config key"),
    ({"grid": {"labels.noise.rate": []}}, r"grid: labels\.noise\.rate has no values"),
    ({"grid": {"labels.noise.rate": [0.1, 0.1]}}, r"lists a value twice"),
    ({"grid": {"labels.noise.rate": [0.1, 1.5]}},
     r"point 'synthetic-rate1\.5'\): labels\.noise\.rate: must be less than 1"),
    ({"methods": ["baseline", "born_agian"]}, r"unknown method 'born_agian'"),
    ({"name": "a/b"}, r"name: 'a/b' must be a plain name"),
    ({"grid": {"labels.noise.rate": [float("nan")]}}, r"must be a finite number"),
    ({"datasets": {"x": {"package_file": "no colon"}}}, r"must look like 'package:path"),
])
def test_bad_studies_are_refused_with_the_field_path(fields: dict[str, Any],
                                                     expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_study(_study(**fields), source="(t)")


def test_too_many_points_are_refused() -> None:
    grid = {"seed": list(range(MAX_POINTS // 10 + 1)), "labels.horizon": list(range(1, 12))}
    with pytest.raises(ConfigError, match="points; the most is"):
        parse_study(_study(grid=grid))


def test_base_is_read_relative_to_the_study_file(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text("training: {epochs: 3}\n")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "configs/base.yaml",
                                    "grid": {"seed": [1, 2]}}))
    study = load_study(path)
    assert [p.config.training.epochs for p in study.points] == [3, 3]
    assert [p.config.seed for p in study.points] == [1, 2]
    assert "configs/base.yaml" in study.text
    path.write_text(yaml.safe_dump({"base": "configs/missing.yaml"}))
    with pytest.raises(ConfigError, match=r"base: run config .*missing\.yaml' does not exist"):
        load_study(path)


def test_package_files_are_found_without_importing_the_package(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    pkg = tmp_path / "fakecandles"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('imported')\n")  # must not run
    (pkg / "data" / "EURUSD.csv").write_text("Date,Open,High,Low,Close\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    found = package_file("fakecandles:data/EURUSD.csv")
    assert found == pkg / "data" / "EURUSD.csv"
    assert "fakecandles" not in sys.modules
    study = parse_study(_study(datasets={"eurusd": {
        "package_file": "fakecandles:data/EURUSD.csv",
        "set": {"backtest.periods_per_year": 6240}}}))
    cfg = study.points[0].config
    assert (cfg.data.source, cfg.data.path) == ("csv", str(found))
    assert cfg.backtest.periods_per_year == 6240
    with pytest.raises(ConfigError, match=r"'data/GOOG\.csv' is not a file of package"):
        package_file("fakecandles:data/GOOG.csv")
    with pytest.raises(ConfigError, match=r"package 'no_such_pkg_xyz' is not installed; "
                                          r"install it"):
        package_file("no_such_pkg_xyz:a.csv")


def test_shipped_noise_study_is_the_issue_grid() -> None:
    study = load_study(STUDIES / "noise.yaml")
    assert len(study.points) == 15
    rates = sorted({p.config.labels.noise.rate for p in study.points})
    sizes = sorted({p.config.data.synthetic.n_bars for p in study.points})
    assert rates == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert sizes == [2000, 8000, 32000]
    assert all(p.config.methods == ["baseline", "label_smoothing", "born_again", "byot",
                                    "snapshot", "logistic", "lightgbm"] for p in study.points)
    assert all(p.config.data.source == "synthetic" for p in study.points)


def test_shipped_generations_study_runs_eight_generations() -> None:
    study = load_study(STUDIES / "generations.yaml")
    assert all(p.config.born_again.generations == 8 for p in study.points)
    teachers = {p.config.born_again.teacher for p in study.points}
    assert teachers == {"last", "mean", "snapshots"}
    assert any(p.config.born_again.target_noise > 0 for p in study.points)
    assert any(isinstance(p.config.born_again.alpha, list) for p in study.points)
    assert len({p.config.born_again.temperature_schedule for p in study.points}) >= 3


def test_shipped_real_study_needs_its_package_or_says_how_to_install_it() -> None:
    if importlib.util.find_spec("backtesting") is None:
        with pytest.raises(ConfigError, match=r"selfdistill\[studies\]"):
            load_study(STUDIES / "real.yaml")
        return
    study = load_study(STUDIES / "real.yaml")
    assert {p.dataset for p in study.points} >= {"eurusd_1h", "goog_1d"}
    assert all(p.config.data.source == "csv" and Path(str(p.config.data.path)).is_file()
               for p in study.points)


def test_cli_refuses_a_bad_study_in_one_line_with_exit_2(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("grid: {labels.noise.rat: [0.1]}\n")
    assert main(["study", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid study")
    assert "did you mean 'labels.noise.rate'" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert main(["study", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err

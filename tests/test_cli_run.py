"""`selfdistill run` / `demo` end to end through the CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from selfdistill.cli import main
from selfdistill.modelio.weights import load_model

SMALL = {
    "name": "small",
    "data": {"source": "synthetic", "synthetic": {"n_bars": 2500}},
    "features": {"return_windows": [1, 4, 12], "volatility_windows": [12, 24],
                 "ma_windows": [12, 24], "volume_window": 24, "range_window": 12,
                 "skew_window": 24},
    "labels": {"horizon": 6, "vol_span": 50},
    "model": {"hidden": [16]},
    "training": {"epochs": 3, "batch_size": 128, "patience": 0},
    "born_again": {"generations": 2},
    "report": {"enabled": False},
}


@pytest.fixture
def small_config(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def test_run_writes_a_complete_run_directory(small_config: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["run", str(small_config), "--out", str(out)]) == 0
    for name in ("config.yaml", "metrics.json", "timings.json", "predictions.parquet"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    methods = {(r["method"], r["generation"]) for r in metrics["records"]}
    assert {("majority", None), ("baseline", None), ("label_smoothing", None),
            ("born_again", 0), ("born_again", 1), ("born_again", 2),
            ("born_again_ensemble", None)} <= methods
    rec = next(r for r in metrics["records"] if r["method"] == "baseline" and r["split"] == "test")
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "nll", "brier", "ece",
                "confusion_matrix", "accuracy_true", "seed"):
        assert key in rec, key
    assert sum(r.get("selected", False) for r in metrics["records"]
               if r["method"] == "born_again" and r["split"] == "test") == 1
    preds = pd.read_parquet(out / "predictions.parquet")
    assert set(preds["split"]) == {"val", "test"}
    assert {"p_bull", "p_bear", "p_sideways", "mutual_information"} <= set(preds.columns)
    models = sorted((out / "models" / "born_again").glob("*.safetensors"))
    assert len(models) == 3
    assert not list(out.rglob("*.pkl"))
    assert not list(out.rglob("*.pt"))
    _, meta = load_model(models[0].with_suffix(""))
    assert meta["feature_names"]
    assert meta["scaler"]
    assert "born_again" in capsys.readouterr().out


def test_same_config_and_seed_give_identical_metrics(small_config: Path, tmp_path: Path) -> None:
    texts = []
    for i in range(2):
        out = tmp_path / f"r{i}"
        assert main(["run", str(small_config), "--out", str(out),
                     "--set", "methods=[baseline,born_again]"]) == 0
        texts.append((out / "metrics.json").read_bytes())
    assert texts[0] == texts[1]


def test_set_overrides_apply(small_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert main(["run", str(small_config), "--out", str(out), "--set", "born_again.generations=1",
                 "--set", "methods=[born_again]"]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["born_again"]["generations"] == 1
    gens = {r["generation"] for r in json.loads((out / "metrics.json").read_text())["records"]}
    assert gens == {0, 1, None}


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--set", "born_again.alpha=2"], 2, "born_again.alpha"),
        (["--set", "bogus=1"], 2, "bogus: unknown key"),
        (["--set", "labels.horizon=0"], 2, "labels.horizon"),
        (["--set", "data.source=csv", "--set", "data.path=/nonexistent/x.csv"], 1,
         "/nonexistent/x.csv"),
        (["--set", "seed=-1"], 2, "seed: must be greater than or equal to 0"),
        (["--set", "data.synthetic.interval=7"], 2, "data.synthetic.interval: must be one of"),
        (["--set", "data.source=csv", "--set", "data.path=DUPLICATES"], 1,
         "repeats an earlier timestamp"),
    ],
)
def test_errors_are_one_line_with_exit_code(small_config: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            args: list[str], code: int, fragment: str) -> None:
    if "data.path=DUPLICATES" in args:  # a CSV whose second row repeats the first's time
        bad = tmp_path / "dup.csv"
        bad.write_text("date,open,high,low,close,volume\n" + "2024-01-01,1,2,0.5,1.5,10\n" * 2)
        args = [a.replace("DUPLICATES", str(bad)) for a in args]
    assert main(["run", str(small_config), "--out", str(tmp_path / "o"), *args]) == code
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err
    assert err.startswith("error: ")  # one line, nothing around it
    assert err.count("\n") == 1


def test_missing_config_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_non_empty_out_dir_is_refused(small_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert main(["run", str(small_config), "--out", str(out)]) == 2
    assert (out / "keep.txt").read_text() == "user data"


def test_debug_shows_the_traceback(small_config: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "selfdistill", "--debug", "run", str(small_config),
         "--set", "born_again.alpha=2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2


def test_a_file_in_the_way_of_an_output_directory_is_one_line(
        small_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("user data")
    assert main(["run", str(small_config), "--out", str(blocker / "run")]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: cannot use '{blocker / 'run'}': Not a directory "
                   "(a file is in the way of a directory; choose another path)\n")
    assert blocker.read_text() == "user data"


def test_other_os_errors_stay_unexpected(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # an OSError without a file name (a socket, say) is a bug, not a path problem
    import selfdistill.cli.run as run_module

    def boom(*args: object, **kwargs: object) -> None:
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(run_module, "_run", boom)
    assert main(["demo"]) == 1
    assert capsys.readouterr().err.startswith("error: unexpected ConnectionResetError")

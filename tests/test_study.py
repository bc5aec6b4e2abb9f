"""``selfdistill study`` end to end on a tiny grid: the study directory, resume, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from selfdistill.cli import main

TINY_BASE: dict[str, Any] = {
    "device": "cpu",
    "data": {"synthetic": {"n_bars": 1000, "persistence": 0.98}},
    "features": {"return_windows": [1, 6], "volatility_windows": [12], "ma_windows": [12],
                 "skew_window": 12, "volume_window": 12, "range_window": 12},
    "labels": {"horizon": 4, "vol_span": 30},
    "split": {"train": 0.5, "val": 0.2, "test": 0.3},
    "model": {"hidden": [8], "dropout": 0.0},
    "training": {"epochs": 2, "batch_size": 128, "patience": 0},
    "born_again": {"generations": 2},
    "evaluation": {"scheme": "walk_forward", "folds": 2, "seeds": 1},
}
POINTS = ("synthetic-rate0", "synthetic-rate0.3")


def _write_study(path: Path, *, report: bool, **base: Any) -> Path:
    study = {"name": "tiny", "base": {**TINY_BASE, "report": {"enabled": report}, **base},
             "methods": ["baseline", "born_again", "logistic"],
             "grid": {"labels.noise.rate": [0.0, 0.3]}}
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _mtimes(out: Path) -> dict[str, float]:
    return {p: (out / "points" / p / "metrics.json").stat().st_mtime_ns for p in POINTS}


def _check_payload(out: Path) -> dict[str, Any]:
    payload = json.loads((out / "study.json").read_text())
    assert {"schema_version", "name", "complete", "axes", "primary_metric", "study_family",
            "map", "points", "machine", "command"} <= set(payload)
    assert payload["complete"] is True
    assert payload["axes"] == ["labels.noise.rate"]
    assert [p["name"] for p in payload["points"]] == list(POINTS)
    for point, rate in zip(payload["points"], (0.0, 0.3), strict=True):
        assert point["settings"] == {"labels.noise.rate": rate}
        assert point["label_noise"]["rate"] == rate
        assert point["outputs"]["born_again"] == "born_again_selected"
        assert {"accuracy", "accuracy_true", "nll"} <= set(point["metrics"]["baseline"])
        assert [q["id"] for q in point["findings"]["questions"]] == [
            "own_baseline", "simple_alternative", "trading", "disagreement"]
        roles = {(r["method"], r["role"], r["metric"]) for r in point["comparisons"]}
        assert ("born_again", "hard_label", "accuracy") in roles
        assert ("born_again", "best_alternative", "accuracy") in roles
        assert ("born_again", "hard_label", "accuracy_true") in roles
        assert [m["member"] for m in point["members"]["born_again"]] == [
            f"generation={k}" for k in range(3)]
    return payload


def _same_as_the_run(out: Path, payload: dict[str, Any]) -> None:
    """The key comparisons are the run's own rows (metrics.json), not recomputed."""
    point = payload["points"][1]
    run = json.loads((out / point["run_dir"] / "metrics.json").read_text())
    row = next(r for r in point["comparisons"]
               if r["method"] == "born_again" and r["role"] == "hard_label"
               and r["metric"] == "accuracy")
    source = next(c for c in run["comparisons"] if c["kind"] == "vs_baseline"
                  and c["method"] == "born_again_selected" and c["candidate"] == "-"
                  and c["metric"] == "accuracy")
    for key in ("mean_diff", "ci_low", "ci_high", "p_value", "p_adjusted", "verdict"):
        assert row[key] == source[key]
    assert row["verdict_study"] in ("better", "worse", "no significant difference",
                                    "not testable")


def _check_pages(out: Path) -> None:
    md = (out / "study.md").read_text()
    assert "| point | rate | method | Δ accuracy vs baseline [95%] | verdict |" in md
    assert all(f"| {name} |" in md for name in POINTS)
    page = (out / "study.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "data:image/png;base64," in page
    assert "<script" not in page
    assert "http://" not in page
    assert "https://" not in page
    assert 'src="' not in page.replace('src="data:', "")  # every image inline


def test_study_writes_its_directory_and_resume_skips_finished_points(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_study(tmp_path / "tiny.yaml", report=True)
    out = tmp_path / "study"
    assert main(["study", str(path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "point 2/2 synthetic-rate0.3: done in" in captured.err  # plain lines: no TTY
    for name in POINTS:
        run_dir = out / "points" / name
        assert (run_dir / "metrics.json").is_file()
        assert (run_dir / "report.html").is_file()
        assert not (run_dir / "INCOMPLETE").exists()
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["name"] == name
    assert (out / "study.yaml").read_text() == path.read_text()
    _same_as_the_run(out, _check_payload(out))
    _check_pages(out)

    before = _mtimes(out)
    assert main(["study", str(path), "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("finished before, skipped") == 2
    assert "study: 0 point(s) run, 2 kept" in captured.out
    assert _mtimes(out) == before
    _check_payload(out)

    assert main(["study", str(path), "--out", str(out)]) == 2  # not empty, no --resume
    assert "pass --resume" in capsys.readouterr().err
    changed = _write_study(tmp_path / "changed.yaml", report=True,
                           training={"epochs": 3, "batch_size": 128, "patience": 0})
    assert main(["study", str(changed), "--out", str(out), "--resume"]) == 2
    assert "was run with another config (training.epochs: 2 then, 3 now)" in \
        capsys.readouterr().err
    faster = _write_study(tmp_path / "faster.yaml", report=False,  # same results, kept
                          evaluation={**TINY_BASE["evaluation"], "workers": 2})
    assert main(["study", str(faster), "--out", str(out), "--resume"]) == 0
    assert "study: 0 point(s) run, 2 kept" in capsys.readouterr().out
    assert _mtimes(out) == before


def _wait_for(condition: Any, process: subprocess.Popen[bytes], seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the study ended (exit {process.returncode}) before the kill")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the study")
        time.sleep(0.02)


def test_kill_9_mid_study_then_resume_keeps_finished_points_and_cells(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Killed while the second point runs (its first cell done): resume redoes neither the
    first point nor that cell."""
    path = _write_study(tmp_path / "tiny.yaml", report=False)
    out = tmp_path / "study"
    first, second = (out / "points" / name for name in POINTS)
    cell = second / "cells" / "fold-0-seed-0"
    process = subprocess.Popen([sys.executable, "-m", "selfdistill", "study", str(path),
                                "--out", str(out)], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (cell / "DONE").is_file(), process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the whole study, as kill -9 would
        process.wait()
    assert (second / "INCOMPLETE").is_file()
    assert not (second / "metrics.json").exists()
    done = (first / "metrics.json").stat().st_mtime_ns
    kept_seconds = json.loads((cell / "timings.json").read_text())["seconds"]

    assert main(["study", str(path), "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "point 1/2 synthetic-rate0: finished before, skipped" in err
    assert "point 2/2 synthetic-rate0.3: running" in err
    assert (first / "metrics.json").stat().st_mtime_ns == done
    assert (second / "metrics.json").is_file()
    assert not (second / "INCOMPLETE").exists()
    cells = json.loads((second / "timings.json").read_text())["cells"]
    assert [c["seconds"] for c in cells if (c["fold"], c["seed"]) == (0, 0)] == [kept_seconds]
    payload = json.loads((out / "study.json").read_text())
    assert payload["complete"]
    assert [p["resumed"] for p in payload["points"]] == [True, False]

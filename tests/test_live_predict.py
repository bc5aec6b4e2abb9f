"""`selfdistill predict --last N --format json --runtime numpy`, and live == predict.

The live loop's lines are compared with ``selfdistill predict`` run on the candles it
stored: to 1e-9 with ``--runtime numpy`` (the same float64 forward), and to the float32
rounding of torch (2e-6) with the default ``--runtime torch``.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from live_support import (
    CLASSES,
    KEY,
    MINUTE,
    START,
    exchange,
    finished,
    loop_for,
    make_model,
    read_lines,
    run_live,
    settings,
    truth,
)
from selfdistill.cli import main
from selfdistill.data.files import save_candles
from selfdistill.data.store import CandleStore


@pytest.fixture(scope="module")
def model_and_candles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("predict_live")
    model = make_model(tmp / "model", members=3)
    candles = truth("2024-01-01 00:00", "2024-01-01 06:00").drop(columns="gap_before")
    save_candles(candles, tmp / "candles.parquet")
    return model, tmp / "candles.parquet"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["predict", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_last_n_as_json_lines(model_and_candles: tuple[Path, Path],
                              capsys: pytest.CaptureFixture[str]) -> None:
    model, candles = model_and_candles
    code, out, _ = _run(capsys, "--model", str(model), "--candles", str(candles), "--last", "3",
                        "--format", "json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    code, csv_out, _ = _run(capsys, "--model", str(model), "--candles", str(candles))
    full = pd.read_csv(io.StringIO(csv_out))
    assert [r["open_time"] for r in lines] == \
        [pd.Timestamp(t).isoformat() for t in full["open_time"].tail(3)]
    for record, (_, row) in zip(lines, full.tail(3).iterrows(), strict=True):
        assert record["regime"] == row["regime"]
        assert record["probabilities"] == pytest.approx({c: row[f"p_{c}"] for c in CLASSES},
                                                        rel=1e-12)
        assert record["uncertainty"] == pytest.approx(row["uncertainty"], rel=1e-12)
        assert set(record["disagreement"]) == {"variance", "mutual_information", "flip_rate",
                                               "entropy"}
        assert len(record["model_id"]) == 12
        assert record["method"] == "born_again"


def test_numpy_runtime_equals_torch_to_float32(model_and_candles: tuple[Path, Path],
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    model, candles = model_and_candles
    for runtime in ("torch", "numpy"):
        code, _, err = _run(capsys, "--model", str(model), "--candles", str(candles),
                            "--runtime", runtime, "--out", str(tmp_path / f"{runtime}.parquet"))
        assert code == 0, err
    torch_rows = pd.read_parquet(tmp_path / "torch.parquet")
    numpy_rows = pd.read_parquet(tmp_path / "numpy.parquet")
    assert list(torch_rows.columns) == list(numpy_rows.columns)
    assert torch_rows["regime"].isna().sum() == numpy_rows["regime"].isna().sum() > 0  # warm-up
    cols = [f"p_{c}" for c in CLASSES] + ["uncertainty"]
    np.testing.assert_allclose(numpy_rows[cols].to_numpy(dtype=float),
                               torch_rows[cols].to_numpy(dtype=float), atol=2e-6)
    code, _, _ = _run(capsys, "--model", str(model), "--candles", str(candles), "--format",
                      "json", "--out", str(tmp_path / "rows.jsonl"))
    assert code == 0
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == len(torch_rows)


@pytest.mark.parametrize(("args", "message"), [
    (["--runtime", "gpu"], "--runtime 'gpu' is not one of torch, numpy"),
    (["--last", "0"], "--last 0 must be at least 1"),
    (["--format", "xml"], "--format 'xml' is not one of csv, parquet, json"),
    (["--format", "parquet"], "--format parquet needs --out FILE.parquet"),
    (["--format", "json", "--out", "x.csv"], "must end in .jsonl or .json for --format json"),
])
def test_bad_output_options_are_usage_errors(model_and_candles: tuple[Path, Path],
                                             capsys: pytest.CaptureFixture[str],
                                             args: list[str], message: str) -> None:
    model, candles = model_and_candles
    code, out, err = _run(capsys, "--model", str(model), "--candles", str(candles), *args)
    assert code == 2
    assert message in err
    assert out == ""


def test_the_numpy_runtime_never_imports_torch(model_and_candles: tuple[Path, Path]) -> None:
    model, candles = model_and_candles
    code = ("import sys\nfrom selfdistill.cli import main\n"
            f"assert main(['predict', '--model', {str(model)!r}, '--candles', {str(candles)!r},"
            " '--runtime', 'numpy', '--last', '1', '--format', 'json']) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "import selfdistill.serving.live\n"
            "assert 'torch' not in sys.modules, 'the live loop imports torch'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["regime"] in CLASSES


def test_live_lines_equal_predict_on_the_stored_candles(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    model = make_model(tmp_path / "model")
    with exchange(20, pace=0.005) as (clock, rest, ws):
        live = loop_for(settings(model, rest, ws, clock, tmp_path), tmp_path / "s.jsonl", rest)
        run_live(live, finished(live, ws, START + 19 * MINUTE))
    lines = read_lines(tmp_path / "s.jsonl")
    stored = CandleStore(tmp_path / "store").read(KEY).drop(columns="gap_before")
    save_candles(stored, tmp_path / "stored.parquet")
    base = ["--model", str(model), "--candles", str(tmp_path / "stored.parquet"), "--last",
            str(len(lines)), "--format", "json"]
    code, numpy_out, err = _run(capsys, *base, "--runtime", "numpy")
    assert code == 0, err
    code, torch_out, err = _run(capsys, *base)
    assert code == 0, err
    by_numpy = [json.loads(line) for line in numpy_out.splitlines()]
    by_torch = [json.loads(line) for line in torch_out.splitlines()]
    assert [r["open_time"] for r in by_numpy] == [r["open_time"] for r in lines]
    for mine, exact, approx in zip(lines, by_numpy, by_torch, strict=True):
        assert mine["regime"] == exact["regime"] == approx["regime"]
        assert mine["close"] == exact["close"]
        assert mine["model_id"] == exact["model_id"]
        for c in CLASSES:
            assert mine["probabilities"][c] == pytest.approx(exact["probabilities"][c],
                                                             rel=1e-9, abs=1e-12)
            assert mine["probabilities"][c] == pytest.approx(approx["probabilities"][c],
                                                             abs=2e-6)
        assert mine["disagreement"] == pytest.approx(exact["disagreement"], rel=1e-9, abs=1e-12)

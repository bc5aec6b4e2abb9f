"""The first minutes with the CLI: fast config errors, help, init, config show, interval spellings.

Start-up is checked by what a fresh process imports (no torch, pandas, scikit-learn or
matplotlib before the config is read), which is what makes it fast; the timings
themselves are in ``benchmarks/bench_startup.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bybit_server import FakeBybit
from selfdistill.cli import main
from selfdistill.config import dump_config, load_config, parse_config

HEAVY = ("torch", "pandas", "sklearn", "matplotlib", "scipy", "pyarrow", "lightgbm")


#: The old parser hung for minutes on these inputs; speed is measured in
#: benchmarks/bench_startup.py, so this bound only catches a hang, on any machine load.
HANG_SECONDS = 30.0

def run_fresh(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    return proc.stdout


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    assert "unexpected" not in err
    return lines[0]


# ------------------------------------------------------------------- start-up


@pytest.mark.parametrize("args", [
    ["run", "missing.yaml"],
    ["run", "CFG"],
    ["run", "CFG", "--set", "name=../x"],
    ["pretrain", "CFG"],
    ["config", "show"],
    ["--help"],
    ["run", "--help"],
    ["fetch", "--symbol", "BTCUSDT", "--interval", "7", "--start", "2024-01-01"],
])
def test_usage_and_config_errors_answer_before_any_heavy_import(tmp_path: Path,
                                                                args: list[str]) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("training:\n  epoch: 3\n")
    args = [str(cfg) if a == "CFG" else a for a in args]
    code = (f"import sys, json\nfrom selfdistill.cli import main\nrc = main({args!r})\n"
            f"print(json.dumps([rc, [m for m in {HEAVY!r} if m in sys.modules]]))")
    rc, loaded = json.loads(run_fresh(code).strip().splitlines()[-1])
    assert rc in (0, 2)
    assert loaded == []


def test_import_selfdistill_shows_only_public_names() -> None:
    code = ("import selfdistill, json\nprint(json.dumps([dir(selfdistill), "
            "[k for k in vars(selfdistill) if not k.startswith('_')]]))")
    shown, public = json.loads(run_fresh(code))
    assert shown == ["SelfDistillClassifier", "__version__"]
    assert public == []


# ----------------------------------------------------------------------- help


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["demo", "--help"],
                                  ["init", "--help"], ["pretrain", "--help"]])
def test_flags_show_as_plain_flags(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "<bool>" not in out
    for flag in ("--overwrite", "--debug", "--verbose", "--help"):
        for line in out.splitlines():
            if line.strip().startswith(flag):
                assert "<" not in line.split(flag, 1)[1].split("  ")[0], line


# -------------------------------------------------- hostile configs through the CLI


@pytest.mark.parametrize(("content", "fragment"), [
    ("name: régime\n".encode("latin-1"), "is not UTF-8 text"),
    (bytes(range(256)) * 8, "is a binary file"),
    (("[" * 10_000 + "]" * 10_000).encode(), "nests deeper than"),
    (b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n".encode()
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)), "expands to more than"),
    (b"training:\n  epochs: 3\n  epochs: 4\n", "appears twice"),
    (b"born_again:\n  temperature: .inf\n", "must be a finite number"),
])
def test_hostile_configs_exit_2_with_one_line(tmp_path: Path, content: bytes, fragment: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    start = time.perf_counter()
    assert main(["run", str(path)]) == 2
    assert time.perf_counter() - start < HANG_SECONDS  # a hang detector, not a speed target
    assert fragment in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("name", ["/abs/dir/x", "../../..", "a/b"])
def test_a_name_that_is_a_path_writes_nothing(tmp_path: Path, name: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    target = name if name != "/abs/dir/x" else str(tmp_path / "abs" / "x")
    assert main(["demo", "--set", f"name={target}"]) == 2
    assert "name: must be a plain file name" in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "c"]


def test_a_failed_allocation_is_one_line_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    import selfdistill.evaluation.experiment as experiment

    def too_big(*args: object, **kwargs: object) -> None:
        torch.empty(2**45)  # 140 TB: the allocator refuses at once

    monkeypatch.setattr(experiment, "run_experiment", too_big)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: big\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "out of memory: could not allocate 140,737.5 GB" in line
    assert "batch_size" in line


# ------------------------------------------------------------------------- init


def test_init_writes_a_commented_config_that_runs_as_is(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    path = tmp_path / "first.yaml"
    assert main(["init", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    text = path.read_text()
    assert text.count("#") > 20
    cfg = load_config(path)
    assert cfg.name == "first-run"
    assert cfg.data.source == "synthetic"
    assert cfg.data.synthetic.interval == "60"  # written as 1h


def test_init_refuses_to_overwrite_without_the_flag(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: keep-me\n")
    assert main(["init", str(path)]) == 2
    assert "already exists" in one_error_line(capsys.readouterr().err)
    assert path.read_text() == "name: keep-me\n"
    assert main(["init", str(path), "--overwrite"]) == 0
    assert load_config(path).name == "first-run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml"]  # no temporary file


@pytest.mark.parametrize(("file", "source"), [("BTC USDT 1h.csv", "csv"),
                                              ("eth.parquet", "parquet"),
                                              ("quotes.csv.gz", "csv")])
def test_init_with_data_points_the_config_at_the_file(tmp_path: Path, file: str,
                                                      source: str) -> None:
    data = tmp_path / file
    data.write_text("open_time,open,high,low,close,volume\n")
    path = tmp_path / "cfg.yaml"
    assert main(["init", str(path), "--data", str(data)]) == 0
    cfg = load_config(path)
    assert (cfg.data.source, cfg.data.path) == (source, str(data))
    assert cfg.name == file.split(".")[0].replace(" ", "-")


@pytest.mark.parametrize(("file", "fragment"), [("prices.json", "cannot tell the format"),
                                                ("missing.csv", "is not a file")])
def test_init_with_unusable_data_is_a_usage_error(tmp_path: Path, file: str, fragment: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    if file != "missing.csv":
        (tmp_path / file).write_text("{}")
    path = tmp_path / "cfg.yaml"
    assert main(["init", str(path), "--data", str(tmp_path / file)]) == 2
    assert fragment in one_error_line(capsys.readouterr().err)
    assert not path.exists()


# ------------------------------------------------------------------ config show


def test_config_show_prints_the_resolved_config(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  epochs: 3\ndata:\n  synthetic:\n    interval: 4h\n")
    assert main(["config", "show", str(path), "--set", "born_again.generations=7"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    cfg = parse_config(shown)
    assert (cfg.training.epochs, cfg.born_again.generations) == (3, 7)
    assert cfg.data.synthetic.interval == "240"
    assert shown["training"]["batch_size"] == 256  # defaults are written out
    assert main(["config", "show"]) == 0
    assert capsys.readouterr().out == dump_config(parse_config({}))


def test_config_show_of_a_bad_config_is_a_config_error(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  epoch: 3\n")
    assert main(["config", "show", str(path)]) == 2
    assert "did you mean 'epochs'?" in one_error_line(capsys.readouterr().err)


# ------------------------------------------------------- intervals on the CLI


def test_fetch_accepts_common_interval_spellings(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with FakeBybit(history_start="2023-12-01") as fake:
        args = ["fetch", "--symbol", "BTCUSDT", "--interval", "1h", "--start", "2024-01-01",
                "--end", "2024-01-02", "--base-url", fake.url, "--data-dir", str(tmp_path),
                "--rate", "500"]
        assert main(args) == 0
    assert "store holds linear BTCUSDT 60:" in capsys.readouterr().out


def test_fetch_suggests_an_interval(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["fetch", "--symbol", "BTCUSDT", "--interval", "1H", "--start", "2024-01-01"]
    assert main(args) == 2
    assert "did you mean '60'?" in one_error_line(capsys.readouterr().err)


def test_cli_defaults_match_the_library() -> None:
    from selfdistill.cli import data as cli_data
    from selfdistill.data.bybit.client import MAINNET_URL
    from selfdistill.data.bybit.ratelimit import DEFAULT_RATE

    assert (cli_data.MAINNET_URL, cli_data.DEFAULT_RATE) == (MAINNET_URL, DEFAULT_RATE)


def test_run_title_names_folds_and_seeds() -> None:
    from selfdistill.cli.run import _cells_text

    assert _cells_text(4, 2) == "4 cells = 2 folds x 2 seeds"
    assert _cells_text(3, 1) == "3 cells = 3 folds x 1 seed"

"""Every method end to end through `selfdistill run`, on the shipped configs made small."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from selfdistill.cli import main
from selfdistill.config import load_config
from selfdistill.methods import METHODS
from selfdistill.modelio.weights import load_model
from selfdistill.nn.multi_exit import MultiExitMLP

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

#: shrink a shipped config to a few seconds: small market, short feature windows, few epochs
SMALL = [
    "data.synthetic.n_bars=1500",
    "features.return_windows=[1,4,12]", "features.volatility_windows=[12,24]",
    "features.ma_windows=[12,24]", "features.volume_window=24", "features.range_window=12",
    "features.skew_window=24", "labels.horizon=6", "labels.vol_span=50",
    "training.epochs=2", "training.batch_size=128", "model.hidden=[16,16,16]",
    "report.enabled=false",
]
ALL_METHODS = [*SMALL, "born_again.generations=2", "snapshot.cycles=3",
               "snapshot.epochs_per_cycle=1", "byot.thresholds=[0.0,0.5,1.0]",
               "byot.latency_samples=10", "lightgbm.n_estimators=20", "hmm.n_init=1"]


def _run(config: str, overrides: list[str], out: Path) -> int:
    args = ["run", str(CONFIGS / config), "--out", str(out), "--no-report"]
    for item in overrides:
        args += ["--set", item]
    return main(args)


def _records(out: Path, split: str = "test") -> list[dict[str, Any]]:
    payload = json.loads((out / "metrics.json").read_text())
    return [r for r in payload["records"]
            if r["split"] == split and not r.get("aggregate")]


@pytest.fixture(scope="module")
def all_methods_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One small run of configs/all_methods.yaml: (run directory, printed output)."""
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test settings
    out = tmp_path_factory.mktemp("e2e") / "all"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = _run("all_methods.yaml", ALL_METHODS, out)
    assert code == 0
    return out, printed.getvalue()


def test_all_methods_config_names_every_registered_method_it_can_share() -> None:
    cfg = load_config(CONFIGS / "all_methods.yaml")
    assert set(cfg.methods) == set(METHODS) - {"ema_teacher"}  # ema_teacher needs windows


def test_every_method_has_rows(all_methods_run: tuple[Path, str]) -> None:
    out, _ = all_methods_run
    trading = {"buy_and_hold", "always_flat", "random"}
    methods = {r["method"] for r in _records(out)} - trading
    assert {m for m in methods if m.endswith("_selected")} == {
        "born_again_selected", "byot_selected", "snapshot_selected"}
    methods = {m for m in methods if not m.endswith("_selected")}
    assert methods == {"majority", "baseline", "label_smoothing", "born_again",
                       "born_again_ensemble", "byot", "snapshot", "snapshot_ensemble",
                       "lightgbm", "logistic", "hmm"}
    for rec in _records(out):
        if rec["method"] in trading:
            continue
        for key in ("accuracy", "nll", "ece", "seed", "generation"):
            assert key in rec, (rec["method"], key)


def test_byot_records_carry_exit(all_methods_run: tuple[Path, str]) -> None:
    out, _ = all_methods_run
    for split in ("val", "test"):
        byot = [r for r in _records(out, split) if r["method"] == "byot"]
        assert [r["exit"] for r in byot] == [1, 2, 3, "ensemble", "early_exit@0.0",
                                             "early_exit@0.5", "early_exit@1.0"]
        assert sum(r.get("selected", False) for r in byot) == 1
        early = {r["exit"]: r for r in byot if str(r["exit"]).startswith("early_exit")}
        for rec in early.values():
            shares = [rec[f"exit_share_{i}"] for i in (1, 2, 3)]
            assert sum(shares) == pytest.approx(1.0)
        assert early["early_exit@0.0"]["exit_share_1"] == 1.0
        assert early["early_exit@1.0"]["mean_exit_depth"] == 3.0
        deepest = next(r for r in byot if r["exit"] == 3)
        assert early["early_exit@1.0"]["accuracy"] == deepest["accuracy"]


def test_snapshot_records_carry_snapshot_and_cycle(all_methods_run: tuple[Path, str]) -> None:
    out, _ = all_methods_run
    snaps = [r for r in _records(out) if r["method"] == "snapshot"]
    assert [(r["snapshot"], r["cycle"]) for r in snaps] == [(1, 1), (2, 2), (3, 3)]
    (ensemble,) = [r for r in _records(out) if r["method"] == "snapshot_ensemble"]
    assert ensemble["snapshot"] is None


def test_cost_and_latency_in_timings(all_methods_run: tuple[Path, str]) -> None:
    out, _ = all_methods_run
    timings = json.loads((out / "timings.json").read_text())["cells"][0]["methods"]
    assert timings["snapshot"]["epochs"] == 3
    assert timings["born_again"]["epochs"] == 6
    for name in ("snapshot", "born_again", "byot"):
        assert timings[name]["seconds"] > 0
    for key in ("latency_us_exit_1", "latency_us_exit_3", "latency_us_early_exit@0.5"):
        assert timings["byot"][key] > 0


def test_printed_table_shows_exits_and_snapshots(all_methods_run: tuple[Path, str]) -> None:
    _, stdout = all_methods_run
    for text in ("exit=1", "exit=ensemble", "exit=early_exit@0.5", "snapshot=3",
                 "snapshot_ensemble"):
        assert text in stdout, text


def test_byot_model_files_reload_as_multi_exit(all_methods_run: tuple[Path, str]) -> None:
    out, _ = all_methods_run
    stems = sorted(p.with_suffix("") for p in (out / "models" / "byot").glob("*.safetensors"))
    loaded = [load_model(stem) for stem in stems]
    assert sorted((meta["keys"]["exit"], meta["output"]) for _, meta in loaded) == [
        (1, 0), (2, 1), (3, 2)]
    assert all(isinstance(model, MultiExitMLP) for model, _ in loaded)


def test_born_again_8gen_has_a_row_per_generation(tmp_path: Path) -> None:
    out = tmp_path / "ban"
    assert _run("born_again_8gen.yaml", [*SMALL, "training.epochs=1"], out) == 0
    gens = [r["generation"] for r in _records(out) if r["method"] == "born_again"]
    assert gens == list(range(9))


def test_byot_on_a_one_block_model_is_a_config_error(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = _run("all_methods.yaml", [*SMALL, "methods=[byot]", "model.hidden=[16]"],
                tmp_path / "bad")
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "model.hidden" in err


def test_byot_and_snapshot_metrics_are_deterministic(tmp_path: Path) -> None:
    overrides = [*ALL_METHODS, "methods=[byot,snapshot]"]
    texts = []
    for i in range(2):
        assert _run("all_methods.yaml", overrides, tmp_path / f"r{i}") == 0
        texts.append((tmp_path / f"r{i}" / "metrics.json").read_text())
    assert texts[0] == texts[1]  # latency lives in timings.json, not in the metrics


def test_method_picks_one_method(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "one.yaml"
    config.write_text("name: one\nmethod: snapshot\n")
    args = ["run", str(config), "--out", str(tmp_path / "one"), "--no-report"]
    for item in [*SMALL, "snapshot.cycles=2", "snapshot.epochs_per_cycle=1"]:
        args += ["--set", item]
    assert main(args) == 0
    methods = {r["method"] for r in _records(tmp_path / "one")}
    assert methods - {"buy_and_hold", "always_flat", "random"} == {
        "snapshot", "snapshot_ensemble", "snapshot_selected"}
    both = main(["run", str(config), "--out", str(tmp_path / "both"), "--set", "methods=[byot]"])
    assert both == 2
    assert "not both" in capsys.readouterr().err

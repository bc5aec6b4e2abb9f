"""`selfdistill pretrain` end to end through the CLI entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from selfdistill.cli import main
from selfdistill.methods.ema_teacher.checkpoint import load_pretrained_encoder

SMALL = {
    "name": "small",
    "data": {"source": "synthetic", "synthetic": {"n_bars": 1500}},
    "features": {"return_windows": [1, 4, 12], "volatility_windows": [12, 24],
                 "ma_windows": [12, 24], "volume_window": 24, "range_window": 12,
                 "skew_window": 24},
    "labels": {"horizon": 6, "vol_span": 50},
    "model": {"kind": "cnn", "hidden": [8], "window": 8, "dropout": 0.0},
    "training": {"epochs": 2, "batch_size": 128, "patience": 1},
    "ema_teacher": {"epochs": 2, "batch_size": 128, "projection_dim": 8, "projection_hidden": 16,
                    "predictor_hidden": 16, "monitor_rows": 128, "label_fractions": [0.2, 1.0]},
}


@pytest.fixture
def small_config(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def test_pretrain_writes_checkpoint_history_and_comparison(
        small_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pt"
    assert main(["pretrain", str(small_config), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"config.yaml", "history.json", "pretrain.json", "pretrain-e2.safetensors",
                     "comparison.json"}
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1.0, 2.0]
    for key in ("loss", "embedding_std", "effective_rank", "teacher_entropy", "loss_at_uniform"):
        assert key in history[0]
    comparison = json.loads((out / "comparison.json").read_text())
    # 2 fractions x (probe_random, scratch, and a probe and a fine-tune of each of 2 encoders)
    assert len(comparison["records"]) == 12
    assert {r["arm"] for r in comparison["table"]} == {
        "probe_pretrained", "probe_random", "finetune_pretrained", "scratch"}
    assert {r["pretrained"] for r in comparison["table"]} == {None, "byol/student",
                                                               "byol/teacher"}
    assert comparison["downstream"] == ["byol/student"]  # BYOL keeps the online encoder
    assert all("test_accuracy_true" in r for r in comparison["records"])  # synthetic truth
    printed = capsys.readouterr()
    assert "does EMA-teacher pretraining help?" in printed.out
    assert "ema_teacher.checkpoint=" in printed.err
    spec = json.loads((out / "pretrain.json").read_text())["encoder_spec"]
    assert spec["kind"] == "cnn"
    assert spec["window"] == 8
    encoder = load_pretrained_encoder(out)
    assert encoder(torch.zeros(2, spec["n_features"], 8)).shape == (2, 8)


def test_every_objective_is_compared_with_valid_verdicts(
        small_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "all"
    assert main(["pretrain", str(small_config), "--out", str(out), "--set",
                 "ema_teacher.compare_objectives=[masked, contrastive, clustering]", "--set",
                 "ema_teacher.compare_encoders=downstream", "--set",
                 "ema_teacher.label_fractions=[0.05, 0.2, 1.0]", "--set",
                 "ema_teacher.epochs=1"]) == 0
    for name in ("masked", "contrastive", "clustering"):
        assert (out / f"objective-{name}" / "pretrain.json").is_file()
    table = json.loads((out / "comparison.json").read_text())["table"]
    encoders = {r["pretrained"] for r in table} - {None}
    assert encoders == {f"{o}/{w}" for o in ("byol", "masked", "contrastive", "clustering")
                        for w in ("student", "teacher")}
    for fraction in (0.05, 0.2, 1.0):
        rows = [r for r in table if r["fraction"] == fraction]
        assert {r["arm"] for r in rows if r["pretrained"] is None} == {"probe_random", "scratch"}
        finetuned = {r["pretrained"] for r in rows if r["arm"] == "finetune_pretrained"}
        assert finetuned == {f"{o}/student" for o in ("byol", "masked", "contrastive",
                                                      "clustering")}
    verdicts = {r["verdict"] for r in table if "versus" in r}
    assert verdicts <= {"better", "worse", "no significant difference", "not testable"}
    assert all(r["p_adjusted"] >= r["p_value"] for r in table if r.get("p_value") is not None)
    printed = capsys.readouterr().out
    assert "clustering/student *" in printed  # the encoder kept downstream is marked


def test_rerun_resumes_instead_of_starting_over(small_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "pt"
    assert main(["pretrain", str(small_config), "--out", str(out), "--no-compare"]) == 0
    assert not (out / "comparison.json").exists()
    first = load_file(str(out / "pretrain-e2.safetensors"))
    # same config: the checkpoint is complete, so nothing is trained again
    assert main(["pretrain", str(small_config), "--out", str(out), "--no-compare"]) == 0
    again = load_file(str(out / "pretrain-e2.safetensors"))
    assert all(torch.equal(first[k], again[k]) for k in first)
    # more epochs under another config: refused unless --fresh
    assert main(["pretrain", str(small_config), "--out", str(out), "--no-compare",
                 "--set", "ema_teacher.epochs=3"]) == 2
    assert main(["pretrain", str(small_config), "--out", str(out), "--no-compare", "--fresh",
                 "--set", "ema_teacher.epochs=3"]) == 0
    assert len(json.loads((out / "history.json").read_text())) == 3


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "model.kind=mlp"], "model.kind must be one of cnn, gru"),
        (["--set", "ema_teacher.form=simclr"], "ema_teacher.form"),
        (["--set", "ema_teacher.augment.jiter=0.1"], "unknown key"),
    ],
)
def test_config_errors_are_one_line_exit_2(small_config: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           args: list[str], fragment: str) -> None:
    assert main(["pretrain", str(small_config), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err
    assert len(err.splitlines()) == 1


def test_missing_config_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "selfdistill", *args]


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["consistency", "masked", "contrastive", "clustering"])
def test_killed_process_resumes_to_the_uninterrupted_result(small_config: Path,
                                                            tmp_path: Path,
                                                            objective: str) -> None:
    cfg = yaml.safe_load(small_config.read_text())
    epochs = 40  # long enough that the kill lands mid-run even on a fast machine
    cfg["ema_teacher"]["epochs"] = epochs
    cfg["ema_teacher"]["objective"] = objective
    small_config.write_text(yaml.safe_dump(cfg))
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_cli("pretrain", str(small_config), "--out", str(whole), "--no-compare"),
                   check=True, env=env, capture_output=True)
    proc = subprocess.Popen(_cli("pretrain", str(small_config), "--out", str(killed),
                                 "--no-compare"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "pretrain.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads((killed / "pretrain.json").read_text())["epoch"]
    assert 1 <= done < epochs  # really interrupted mid-run
    subprocess.run(_cli("pretrain", str(small_config), "--out", str(killed), "--no-compare"),
                   check=True, env=env, capture_output=True)
    a = load_file(str(whole / f"pretrain-e{epochs}.safetensors"))
    b = load_file(str(killed / f"pretrain-e{epochs}.safetensors"))
    for key in a:
        if key.startswith(("student.", "teacher.", "dino.", "online.", "queue.")):
            assert torch.equal(a[key], b[key]), key


def test_run_starts_supervised_methods_from_the_pretrained_encoder(
        small_config: Path, tmp_path: Path) -> None:
    """`ema_teacher.checkpoint` in a run config: window models begin from the encoder."""
    from selfdistill.config import load_config
    from selfdistill.features import feature_names
    from selfdistill.methods import TrainData
    from selfdistill.methods.common import fresh_model

    ckpt = tmp_path / "pt"
    assert main(["pretrain", str(small_config), "--out", str(ckpt), "--no-compare"]) == 0
    encoder = load_pretrained_encoder(ckpt)
    cfg = load_config(small_config, [f"ema_teacher.checkpoint={ckpt}"])
    n_features = len(feature_names(cfg.features))
    data = TrainData(x=torch.zeros(4, n_features, 8), y=torch.zeros(4, dtype=torch.long),
                     train_rows=torch.arange(2), val_rows=torch.arange(2, 4))
    model = fresh_model(data, cfg, seed=1)
    for name, tensor in encoder.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[name], tensor)
    scratch = fresh_model(data, load_config(small_config), seed=1)
    assert any(not torch.equal(scratch.encoder.state_dict()[k], v)
               for k, v in encoder.state_dict().items())
    out = tmp_path / "run"
    assert main(["run", str(small_config), "--out", str(out), "--no-report",
                 "--set", f"ema_teacher.checkpoint={ckpt}",
                 "--set", "methods=[baseline,born_again]",
                 "--set", "born_again.generations=1"]) == 0
    records = json.loads((out / "metrics.json").read_text())["records"]
    assert any(r["method"] == "born_again" and r["generation"] == 1 for r in records)

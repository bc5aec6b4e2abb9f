"""Pretraining checkpoints: contents, safety checks, and loading the encoder."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfdistill.config import RunConfig, parse_config
from selfdistill.errors import ConfigError, ModelFileError
from selfdistill.methods.base import TrainData
from selfdistill.methods.ema_teacher.checkpoint import (
    init_from_pretrained,
    load_pretrained_encoder,
    read_checkpoint,
)
from selfdistill.methods.ema_teacher.pretraining import PretrainResult, pretrain
from selfdistill.nn.encoders import WindowClassifier


def _cfg(form: str = "dino") -> RunConfig:
    return parse_config({
        "model": {"kind": "cnn", "hidden": [8], "window": 8, "dropout": 0.0},
        "ema_teacher": {"form": form, "epochs": 2, "batch_size": 64, "projection_dim": 8,
                        "projection_hidden": 16, "predictor_hidden": 16, "prototypes": 16,
                        "bottleneck": 8, "monitor_rows": 64},
    })


def _data() -> TrainData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=g).cumsum(0) / 10
    rows = torch.arange(200)
    return TrainData(x=x, y=torch.zeros(300, dtype=torch.int64), train_rows=rows,
                     val_rows=torch.arange(210, 300), unlabeled_rows=rows)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PretrainResult]:
    out = tmp_path_factory.mktemp("pretrain")
    return out, pretrain(_data(), _cfg(), seed=0, out_dir=out)


def test_checkpoint_holds_everything_needed_to_resume(run: tuple[Path, PretrainResult]) -> None:
    out, _ = run
    tensors, meta = read_checkpoint(out)
    prefixes = {k.split(".")[0] for k in tensors}
    assert prefixes == {"student", "teacher", "dino", "optim", "rng"}
    assert "dino.0.center" in tensors
    assert {"rng.torch", "rng.generator"} <= set(tensors)
    assert meta["epoch"] == 2
    assert meta["step"] == meta["total_steps"] == 2 * meta["steps_per_epoch"]
    assert meta["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3)
    assert len(meta["history"]) == 2


def test_weights_file_is_plain_safetensors_and_json(run: tuple[Path, PretrainResult]) -> None:
    out, _ = run
    weights = out / json.loads((out / "pretrain.json").read_text())["weights"]
    raw = weights.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])  # a JSON header, no pickle anywhere
    assert "teacher.encoder.blocks.0.conv1.weight" in header
    assert load_file(str(weights))["teacher.encoder.blocks.0.conv1.weight"].dtype == torch.float32


def test_history_json_writes_missing_metrics_as_null(tmp_path: Path) -> None:
    pretrain(_data(), _cfg("byol"), seed=0, out_dir=tmp_path)
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history) == 2
    assert history[0]["teacher_entropy"] is None  # BYOL has no prototypes
    assert isinstance(history[0]["embedding_std"], float)


def test_load_pretrained_encoder_returns_the_teacher(run: tuple[Path, PretrainResult]) -> None:
    out, result = run
    x = torch.randn(5, 4, 8)
    teacher = load_pretrained_encoder(out)
    student = load_pretrained_encoder(out / "pretrain.json", which="student")
    assert torch.equal(teacher(x), result.teacher.encoder.eval()(x))
    assert torch.equal(student(x), result.student.encoder.eval()(x))
    assert not torch.equal(teacher(x), student(x))
    with pytest.raises(ConfigError, match="teacher, student"):
        load_pretrained_encoder(out, which="online")


def test_init_from_pretrained_copies_the_encoder(run: tuple[Path, PretrainResult]) -> None:
    out, result = run
    model = WindowClassifier(4, 3, kind="cnn", window=8, hidden=[8])
    init_from_pretrained(model, out)
    x = torch.randn(3, 4, 8)
    assert torch.equal(model.encoder(x), result.teacher.encoder(x))


def test_init_from_pretrained_rejects_another_architecture(
        run: tuple[Path, PretrainResult]) -> None:
    out, _ = run
    with pytest.raises(ConfigError, match="kind=gru") as info:
        init_from_pretrained(WindowClassifier(4, 3, kind="gru", hidden=[8]), out)
    assert isinstance(info.value.__cause__, RuntimeError)  # every mismatched key, for --debug
    with pytest.raises(ConfigError, match="hidden"):
        init_from_pretrained(WindowClassifier(4, 3, kind="cnn", hidden=[16]), out)


def test_tampered_or_missing_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="selfdistill pretrain"):
        read_checkpoint(tmp_path)
    pretrain(_data(), _cfg(), seed=0, out_dir=tmp_path)
    meta = json.loads((tmp_path / "pretrain.json").read_text())
    weights = tmp_path / meta["weights"]
    raw = weights.read_bytes()
    weights.write_bytes(raw[:-4] + bytes(b ^ 0xFF for b in raw[-4:]))  # flip a few bits
    with pytest.raises(ModelFileError, match="checksum"):
        load_pretrained_encoder(tmp_path)
    (tmp_path / "pretrain.json").write_text(json.dumps(meta | {"format_version": 99}))
    with pytest.raises(ModelFileError, match="format"):
        read_checkpoint(tmp_path)
    (tmp_path / "pretrain.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        read_checkpoint(tmp_path)

"""Gradient accumulation and activation checkpointing: same results, one EMA update a step."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from selfdistill.config import RunConfig, parse_config
from selfdistill.methods.base import TrainData
from selfdistill.methods.ema_teacher import pretraining
from selfdistill.methods.ema_teacher.pretraining import pretrain
from selfdistill.nn.encoders import WindowClassifier, build_encoder
from selfdistill.nn.windows import make_windows
from selfdistill.training.accumulate import accumulate, micro_batches
from selfdistill.training.loop import FitSettings, fit, make_optimizer

COMBINED = {"consistency": 1.0, "masked": 1.0, "contrastive": 1.0, "clustering": 1.0}


def _cfg(**ema: Any) -> RunConfig:
    return parse_config({
        "model": {"kind": "cnn", "hidden": [8, 8], "window": 8, "dropout": 0.0},
        "ema_teacher": {"epochs": 2, "batch_size": 64, "projection_dim": 8,
                        "projection_hidden": 16, "predictor_hidden": 16, "prototypes": 8,
                        "bottleneck": 8, "queue_size": 64, "monitor_rows": 32, **ema},
    })


def _data(n: int = 300) -> TrainData:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g).cumsum(0) / 10
    rows = torch.arange(200)
    return TrainData(x=x, y=torch.randint(0, 3, (n,), generator=g), train_rows=rows,
                     val_rows=torch.arange(210, n), unlabeled_rows=rows)


def test_micro_batches_cover_the_batch_once() -> None:
    for n, k in ((10, 3), (64, 4), (5, 8), (1, 1)):
        parts = micro_batches(n, k)
        assert len(parts) == min(n, k)
        assert [i for s in parts for i in range(s.start, s.stop)] == list(range(n))
        sizes = [s.stop - s.start for s in parts]
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="k >= 1"):
        micro_batches(4, 0)


def test_accumulated_gradients_equal_the_whole_batch() -> None:
    torch.manual_seed(0)
    w = torch.randn(3, requires_grad=True)
    x, y = torch.randn(10, 3), torch.randn(10)

    def loss_of(s: slice) -> dict[str, torch.Tensor]:
        return {"loss": ((x[s] @ w - y[s]) ** 2).mean()}

    whole = accumulate(loss_of, 10, 1)["loss"]
    g_whole = w.grad.clone()  # type: ignore[union-attr]
    w.grad = None
    parts = accumulate(loss_of, 10, 3)["loss"]
    torch.testing.assert_close(w.grad, g_whole)
    assert float(parts) == pytest.approx(float(whole), rel=1e-6)


@pytest.mark.parametrize(("objective", "form"), [
    ("consistency", "byol"), ("consistency", "dino"), ("masked", "byol"),
    ("contrastive", "byol"), ("clustering", "byol"), ("combined", "byol"), ("combined", "dino")])
def test_b_and_b_over_k_times_k_give_the_same_networks(objective: str, form: str) -> None:
    """No batch-dependent layers (layer norm, no dropout): B = 64 vs 4 x 16, to float rounding.

    The Sinkhorn codes, the mask, the queue and the DINO center are computed once for the
    whole batch, so even the batch-wide clustering objective matches.
    """
    obj: Any = COMBINED if objective == "combined" else objective
    whole = pretrain(_data(), _cfg(form=form, objective=obj), seed=5)
    parts = pretrain(_data(), _cfg(form=form, objective=obj, accumulation_steps=4), seed=5)
    for net in ("student", "teacher"):
        a, b = getattr(whole, net).state_dict(), getattr(parts, net).state_dict()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=2e-5, msg=key)
    for ra, rb in zip(whole.history, parts.history, strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-4)


def test_the_teacher_moves_once_per_optimizer_step_never_per_micro_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_update, real_after = pretraining.update_ema, pretraining.after_step
    real_accumulate = pretraining.accumulate

    def update(*args: Any, **kwargs: Any) -> None:
        calls.append("ema")
        real_update(*args, **kwargs)

    def after(*args: Any, **kwargs: Any) -> None:
        calls.append("queue+center")
        real_after(*args, **kwargs)

    def counted(loss_of: Any, n: int, k: int) -> Any:
        def each(s: slice) -> Any:
            calls.append("micro")
            return loss_of(s)
        return real_accumulate(each, n, k)

    monkeypatch.setattr(pretraining, "update_ema", update)
    monkeypatch.setattr(pretraining, "after_step", after)
    monkeypatch.setattr(pretraining, "accumulate", counted)
    result = pretrain(_data(), _cfg(objective=COMBINED, accumulation_steps=4), seed=0)
    steps = 2 * (200 - 7) // 64  # 193 windows, batches of 64, two epochs
    assert calls.count("ema") == calls.count("queue+center") == steps
    assert calls.count("micro") == 4 * steps
    assert calls[:6] == ["micro"] * 4 + ["ema", "queue+center"]  # after all four, once
    assert len(result.history) == 2


def test_supervised_fit_accumulates_to_the_same_model() -> None:
    data = _data()
    x = make_windows(data.x, 8)

    def train(k: int) -> WindowClassifier:
        torch.manual_seed(0)
        model = WindowClassifier(4, 3, kind="cnn", window=8, hidden=[8])
        opt = make_optimizer(model, kind="adamw", lr=1e-3, weight_decay=1e-4)
        settings = FitSettings(epochs=2, batch_size=64, accumulation_steps=k)
        fit(model, x=x, y=data.y, train_rows=data.train_rows, val_rows=data.val_rows,
            loss_fn=lambda m, xb, rows: F.cross_entropy(m(xb), data.y[rows]), optimizer=opt,
            generator=torch.Generator().manual_seed(0), settings=settings)
        return model

    a, b = train(1).state_dict(), train(3).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize(("kind", "dropout"), [("cnn", 0.0), ("cnn", 0.3), ("gru", 0.3)])
def test_activation_checkpointing_gives_the_same_gradients(kind: str, dropout: float) -> None:
    x = torch.randn(6, 4, 10)
    grads = []
    for flag in (False, True):
        torch.manual_seed(0)
        enc = build_encoder(kind, 4, hidden=[8, 8], dropout=dropout, checkpoint_activations=flag)
        enc.train()
        torch.manual_seed(1)  # the same dropout masks, recomputed identically in backward
        enc(x).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in enc.parameters()])  # type: ignore[union-attr]
    for g0, g1 in zip(*grads, strict=True):
        torch.testing.assert_close(g0, g1)


def test_checkpointed_pretraining_equals_the_plain_one() -> None:
    a = pretrain(_data(), _cfg(objective="masked", epochs=1), seed=2)
    b = pretrain(_data(), _cfg(objective="masked", epochs=1, activation_checkpointing=True),
                 seed=2)
    assert b.student.encoder.checkpoint_activations
    for key, value in a.teacher.state_dict().items():
        torch.testing.assert_close(value, b.teacher.state_dict()[key])


@pytest.mark.parametrize("kind", ["cnn", "gru"])
def test_per_bar_features_are_causal_and_pool_to_the_embedding(kind: str) -> None:
    torch.manual_seed(0)
    enc = build_encoder(kind, 4, hidden=[8, 6])
    x = torch.randn(3, 4, 12)
    h = enc.sequence(x)
    assert h.shape == (3, 6, 12)
    torch.testing.assert_close(enc.pool(h), enc(x))
    later = x.clone()
    later[:, :, 7:] = torch.randn(3, 4, 5)
    torch.testing.assert_close(enc.sequence(later)[:, :, :7], h[:, :, :7])  # bars <= 6 unmoved

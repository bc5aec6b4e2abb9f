"""The one training loop: learns, stops early on validation, is reproducible."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfdistill.errors import TrainingError
from selfdistill.nn import MLP
from selfdistill.training.loop import Callback, fit, make_optimizer, predict_logits


def _task(n: int = 1200, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, :3] + 0.3 * torch.randn(n, 3, generator=g)).argmax(1)
    return x, y


def _ce(y: Tensor):
    return lambda m, xb, rows: F.cross_entropy(m(xb), y[rows])


def _fit(model: nn.Module, x: Tensor, y: Tensor, **kw: object):
    opt = make_optimizer(model, kind="adam", lr=1e-2, weight_decay=0.0)
    args = dict(x=x, y=y, train_rows=torch.arange(0, 800), val_rows=torch.arange(800, 1000),
                loss_fn=_ce(y), epochs=10, batch_size=64, optimizer=opt,
                generator=torch.Generator().manual_seed(0))
    args.update(kw)
    return fit(model, **args)  # type: ignore[arg-type]


def test_fit_learns_a_learnable_task() -> None:
    x, y = _task()
    torch.manual_seed(0)
    model = MLP(6, 3, hidden=(16,))
    result = _fit(model, x, y)
    acc = (predict_logits(model, x, torch.arange(1000, 1200)).argmax(1) == y[1000:]).float()
    assert acc.mean() > 0.8
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_same_seed_same_weights() -> None:
    x, y = _task()
    weights = []
    for _ in range(2):
        torch.manual_seed(3)
        model = MLP(6, 3, hidden=(16,), dropout=0.1)
        _fit(model, x, y, epochs=3)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_early_stopping_restores_best_validation_weights() -> None:
    x, y = _task()
    y_noisy = y.clone()
    y_noisy[:800] = torch.randint(0, 3, (800,), generator=torch.Generator().manual_seed(9))
    torch.manual_seed(0)
    model = MLP(6, 3, hidden=(128, 128))
    result = _fit(model, x, y_noisy, loss_fn=_ce(y_noisy), epochs=40, patience=3)
    assert result.epochs_run < 40
    best = min(r["val_loss"] for r in result.history)
    final = F.cross_entropy(predict_logits(model, x, torch.arange(800, 1000)), y_noisy[800:1000])
    assert float(final) == pytest.approx(best, rel=1e-5)


def test_callbacks_see_every_epoch() -> None:
    seen: list[str] = []

    class Recorder(Callback):
        def on_fit_begin(self, label: str, epochs: int) -> None:
            seen.append(f"begin {epochs}")

        def on_epoch_end(self, label: str, record: dict[str, float]) -> None:
            seen.append("epoch")

        def on_fit_end(self, label: str, history: list[dict[str, float]]) -> None:
            seen.append("end")

    x, y = _task()
    _fit(MLP(6, 3, hidden=(8,)), x, y, epochs=4, callbacks=[Recorder()])
    assert seen == ["begin 4", "epoch", "epoch", "epoch", "epoch", "end"]


def test_lr_schedule_is_applied_per_step() -> None:
    x, y = _task()
    model = MLP(6, 3, hidden=(8,))
    result = _fit(model, x, y, epochs=2, lr_at=lambda step: 1e-3 / (1 + step))
    steps_per_epoch = 800 // 64 + 1
    assert result.history[-1]["lr"] == pytest.approx(1e-3 / (2 * steps_per_epoch))


def test_diverging_loss_raises_training_error() -> None:
    x, y = _task()

    def bad_loss(m: nn.Module, xb: Tensor, rows: Tensor) -> Tensor:
        return m(xb).sum() * float("nan")

    with pytest.raises(TrainingError, match=r"lower training\.lr"):
        _fit(MLP(6, 3, hidden=(8,)), x, y, loss_fn=bad_loss, epochs=1)

"""The one training loop: learns, stops early on validation, is reproducible."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfdistill.config import TrainingConfig
from selfdistill.errors import TrainingError
from selfdistill.nn import MLP
from selfdistill.training.loop import (
    Callback,
    FitResult,
    FitSettings,
    LossFn,
    fit,
    make_optimizer,
    predict_logits,
)


def _task(n: int = 1200, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, :3] + 0.3 * torch.randn(n, 3, generator=g)).argmax(1)
    return x, y


def _ce(y: Tensor):
    return lambda m, xb, rows: F.cross_entropy(m(xb), y[rows])


def _fit(model: nn.Module, x: Tensor, y: Tensor, *, loss_fn: LossFn | None = None,
         callbacks: Sequence[Callback] = (), val_rows: Tensor | None = None,
         **settings: Any) -> FitResult:
    opt = make_optimizer(model, kind="adam", lr=1e-2, weight_decay=0.0)
    return fit(model, x=x, y=y, train_rows=torch.arange(0, 800),
               val_rows=torch.arange(800, 1000) if val_rows is None else val_rows,
               loss_fn=loss_fn or _ce(y), optimizer=opt,
               generator=torch.Generator().manual_seed(0),
               settings=FitSettings(**{"epochs": 10, "batch_size": 64, **settings}),
               callbacks=callbacks)


def _overfitting(epochs: int = 40, **settings: Any) -> tuple[nn.Module, FitResult, float]:
    """A big model on noisy training labels: its validation loss rises after a few epochs.

    Returns the model, the fit result and the validation loss of the weights it holds.
    """
    x, y = _task()
    y_noisy = y.clone()
    y_noisy[:800] = torch.randint(0, 3, (800,), generator=torch.Generator().manual_seed(9))
    torch.manual_seed(0)
    model = MLP(6, 3, hidden=(128, 128))
    result = _fit(model, x, y_noisy, loss_fn=_ce(y_noisy), epochs=epochs, **settings)
    held = F.cross_entropy(predict_logits(model, x, torch.arange(800, 1000)), y_noisy[800:1000])
    return model, result, float(held)


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
    _, result, held = _overfitting(patience=3)
    assert result.epochs_run < 40
    losses = [r["val_loss"] for r in result.history]
    assert held == pytest.approx(min(losses), rel=1e-5)
    assert result.best_epoch == losses.index(min(losses)) + 1 < result.epochs_run
    assert result.best_val_loss == pytest.approx(held, rel=1e-5)


@pytest.mark.parametrize("settings", [{"patience": 0}, {"patience": 3, "restore_best": False}],
                         ids=["no-early-stopping", "no-restore"])
def test_best_epoch_is_the_epoch_of_the_weights_returned(settings: dict[str, Any]) -> None:
    # regression: without restoring, best_epoch / best_val_loss described the best validation
    # epoch, whose weights the model no longer held
    _, result, held = _overfitting(epochs=12, **settings)
    losses = [r["val_loss"] for r in result.history]
    assert min(losses) < losses[-1] - 1e-3  # the last epoch is not the best one
    assert result.best_epoch == result.epochs_run
    assert result.best_val_loss == pytest.approx(held, rel=1e-5)
    assert result.best_val_loss == losses[-1]


def test_without_validation_rows_the_last_epoch_is_returned() -> None:
    x, y = _task()
    result = _fit(MLP(6, 3, hidden=(8,)), x, y, epochs=3, patience=2,
                  val_rows=torch.arange(0))
    assert result.best_epoch == result.epochs_run >= 1
    assert math.isnan(result.best_val_loss)


def test_settings_from_the_training_section() -> None:
    tr = TrainingConfig(epochs=7, batch_size=32, patience=2, grad_clip=1.5)
    settings = FitSettings.from_config(tr, label="gen 1", patience=0)
    assert settings == FitSettings(epochs=7, batch_size=32, patience=0, grad_clip=1.5,
                                   label="gen 1")


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

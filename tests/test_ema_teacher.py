"""EMA-teacher pretraining: the step, the schedules, no look-ahead, collapse, resume."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from selfdistill.config import RunConfig, parse_config
from selfdistill.errors import ConfigError
from selfdistill.losses.consistency import byol_loss
from selfdistill.methods import get_method
from selfdistill.methods.base import TrainData
from selfdistill.methods.ema_teacher.checkpoint import load_pretrained_encoder
from selfdistill.methods.ema_teacher.collapse import CollapseWarning
from selfdistill.methods.ema_teacher.pretraining import (
    build_state,
    pretrain,
    pretrain_loss,
    pretrain_rows,
    train_step,
)
from selfdistill.nn.windows import make_windows
from selfdistill.training.augment import AugmentSpec
from selfdistill.training.loop import Callback
from selfdistill.training.schedules import cosine_tau

COLLAPSE_KEYS = ("embedding_std", "effective_rank", "teacher_entropy", "loss_at_uniform")


def _cfg(model: dict[str, Any] | None = None, **ema: Any) -> RunConfig:
    return parse_config({
        "model": {"kind": "cnn", "hidden": [8], "window": 8, "dropout": 0.0} | (model or {}),
        "training": {"epochs": 2, "batch_size": 64, "patience": 1},
        "ema_teacher": {"epochs": 2, "batch_size": 64, "projection_dim": 8, "projection_hidden": 16,
                        "predictor_hidden": 16, "prototypes": 16, "bottleneck": 8,
                        "monitor_rows": 128, **ema},
    })


def _toy_data(n: int = 400, f: int = 4, n_train: int = 240, seed: int = 0) -> TrainData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, f, generator=g).cumsum(0) / 10  # smooth, autocorrelated features
    y = torch.randint(0, 3, (n,), generator=g)
    train, val = torch.arange(n_train), torch.arange(n_train + 10, n)
    return TrainData(x=x, y=y, train_rows=train, val_rows=val, unlabeled_rows=train)


@pytest.fixture(scope="module")
def market() -> TrainData:
    """Scaled causal features of a small synthetic market, through the pipeline."""
    from selfdistill.evaluation.fold import (
        build_dataset,
        holdout_split,
        load_candles,
        make_train_data,
    )

    cfg = parse_config({"data": {"synthetic": {"n_bars": 1500}}})
    candles, truth, interval = load_candles(cfg)
    ds = build_dataset(cfg, candles, truth, interval)
    data, _, _ = make_train_data(ds, holdout_split(ds, cfg), cfg, torch.device("cpu"))
    return data


# ------------------------------------------------------------------ the step


def test_teacher_is_frozen_and_outside_the_optimizer() -> None:
    state = build_state(4, 200, _cfg(), seed=0)
    optimised = {id(p) for group in state.optimizer.param_groups for p in group["params"]}
    assert all(not p.requires_grad for p in state.teacher.parameters())
    assert not optimised & {id(p) for p in state.teacher.parameters()}
    assert {id(p) for p in state.student.parameters()} <= optimised
    assert state.predictors is not None
    assert {id(p) for p in state.predictors.parameters()} <= optimised


def test_one_step_updates_teacher_by_ema_after_the_optimizer_step() -> None:
    cfg = _cfg()
    state = build_state(4, 200, cfg, seed=0)
    before_t = [p.clone() for p in state.teacher.parameters()]
    before_s = [p.clone() for p in state.student.parameters()]
    xb = torch.randn(16, 4, 8)
    train_step(state, xb, cfg.ema_teacher, AugmentSpec())
    tau = cosine_tau(0, total_steps=state.total_steps, tau_base=0.996)
    for t, t0, s, s0 in zip(state.teacher.parameters(), before_t, state.student.parameters(),
                            before_s, strict=True):
        assert not torch.equal(s, s0)  # the student moved
        assert torch.allclose(t, tau * t0 + (1 - tau) * s, atol=1e-7)  # with the new student
        assert t.grad is None
    assert state.step == 1


def test_multi_head_loss_is_the_sum_over_heads() -> None:
    cfg = _cfg(heads=3)
    state = build_state(4, 200, cfg, seed=0)
    views = torch.randn(20, 4, 8)
    got = pretrain_loss(state, views, cfg.ema_teacher)
    assert state.predictors is not None
    with torch.no_grad():
        _, outs_s = state.student(views)
        _, outs_t = state.teacher(views)
        expected = sum(byol_loss(p(o).chunk(2), t.chunk(2), divergence="cosine")
                       for p, o, t in zip(state.predictors.heads, outs_s, outs_t, strict=True))
    assert len(outs_s) == 3
    assert float(got.detach()) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("form", ["byol", "dino"])
def test_history_logs_schedules_and_collapse_metrics_every_epoch(form: str) -> None:
    cfg = _cfg(form=form, epochs=3, teacher_temperature_warmup_epochs=2)
    result = pretrain(_toy_data(), cfg, seed=0)
    assert [r["epoch"] for r in result.history] == [1.0, 2.0, 3.0]
    for rec in result.history:
        for key in (*COLLAPSE_KEYS, "loss", "tau", "collapsed"):
            assert key in rec
    assert result.history[-1]["tau"] == pytest.approx(1.0)  # cosine from tau_base to 1
    assert result.history[0]["tau"] < result.history[1]["tau"] < 1.0
    temps = [r["teacher_temperature"] for r in result.history]
    assert temps[0] < temps[1] == pytest.approx(0.07)  # warmed up over two epochs
    if form == "dino":
        assert all(math.isfinite(r["teacher_entropy"]) for r in result.history)
    else:
        assert all(math.isnan(r["teacher_entropy"]) for r in result.history)


# ------------------------------------------------------------- no look-ahead


def test_pretraining_reads_training_bars_only() -> None:
    data = _toy_data()
    not_train = torch.ones(len(data.x), dtype=torch.bool)
    not_train[data.train_rows] = False
    data.x[not_train] = math.nan  # any read of a validation / later bar would poison the loss
    result = pretrain(data, _cfg(epochs=2), seed=0)
    assert all(math.isfinite(r["loss"]) for r in result.history)
    assert all(torch.isfinite(p).all() for p in result.teacher.parameters())


def test_windows_after_a_gap_in_training_rows_are_dropped() -> None:
    data = _toy_data()
    data.unlabeled_rows = torch.cat([torch.arange(0, 100), torch.arange(150, 240)])
    rows = pretrain_rows(data, window=8)
    assert rows.tolist() == list(range(0, 100)) + list(range(157, 240))


def test_windowed_inputs_are_used_as_given() -> None:
    data = _toy_data()
    data.x = make_windows(data.x, 8)
    result = pretrain(data, _cfg(epochs=1), seed=0)
    assert len(result.history) == 1


# --------------------------------------------------------------- collapse


@pytest.mark.filterwarnings("ignore::selfdistill.config.sections.HyperparameterWarning")
def test_dino_without_centering_collapses_and_the_monitor_flags_it() -> None:
    setup = {"form": "dino", "lr": 0.05, "tau_base": 0.9, "epochs": 4}
    with pytest.warns(CollapseWarning, match="prototypes"):
        bare = pretrain(_toy_data(), _cfg(centering=False, **setup), seed=0)
    assert all(r["collapsed"] == 1.0 for r in bare.history)
    assert math.exp(bare.history[-1]["teacher_marginal_entropy"]) < 2.0  # ~one prototype
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)
        centred = pretrain(_toy_data(), _cfg(centering=True, **setup), seed=0)
    assert centred.history[-1]["collapsed"] == 0.0  # centering is what prevents it
    assert (centred.history[-1]["teacher_marginal_entropy"]
            > bare.history[-1]["teacher_marginal_entropy"] + 0.5)


@pytest.mark.filterwarnings("ignore::selfdistill.config.sections.HyperparameterWarning")
def test_absurd_learning_rate_collapses_and_the_monitor_flags_it() -> None:
    cfg = _cfg(form="dino", lr=3.0, grad_clip=None, epochs=2)
    with pytest.warns(CollapseWarning, match="embedding_std"):
        result = pretrain(_toy_data(), cfg, seed=0)
    assert result.collapsed
    assert result.history[-1]["embedding_std"] * math.sqrt(8) < 0.1


def test_default_setup_does_not_collapse_on_the_synthetic_market(market: TrainData) -> None:
    cfg = _cfg(epochs=3)  # default form, tau, lr, augmentations; a small encoder
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        result = pretrain(market, cfg, seed=0)
    last = result.history[-1]
    assert not result.collapsed
    assert last["embedding_std"] * math.sqrt(8) > 0.3
    assert last["effective_rank"] > 2.0
    assert result.history[-1]["loss"] < result.history[0]["loss"]  # it learns something


# --------------------------------------------------------- checkpoint / resume


class _Kill(Callback):
    """Stops the run right after the checkpoint of epoch ``at`` (like a kill)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_end(self, label: str, record: dict[str, float]) -> None:
        if record["epoch"] == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("form", ["byol", "dino"])
def test_killed_run_resumes_to_the_same_weights(form: str, tmp_path: Path) -> None:
    cfg = _cfg(form=form, epochs=3)
    data = _toy_data()
    full = pretrain(data, cfg, seed=1)
    with pytest.raises(KeyboardInterrupt):
        pretrain(data, cfg, seed=1, out_dir=tmp_path, callbacks=[_Kill(at=1)])
    torch.manual_seed(999)  # a resumed process starts with another global RNG state
    resumed = pretrain(data, cfg, seed=1, out_dir=tmp_path)
    for a, b in ((full.student, resumed.student), (full.teacher, resumed.teacher)):
        for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(),
                                     strict=True):
            assert torch.equal(p, q), name
    assert len(full.history) == len(resumed.history) == 3
    for a_rec, b_rec in zip(full.history, resumed.history, strict=True):
        for key, value in a_rec.items():
            if key != "seconds":
                assert value == b_rec[key] or (math.isnan(value) and math.isnan(b_rec[key])), key
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "history.json", "pretrain-e3.safetensors", "pretrain.json"]


def test_resume_with_dropout_reproduces_the_global_rng(tmp_path: Path) -> None:
    cfg = _cfg({"kind": "gru", "hidden": [8, 8], "dropout": 0.3}, epochs=2)
    data = _toy_data()
    full = pretrain(data, cfg, seed=2)
    with pytest.raises(KeyboardInterrupt):
        pretrain(data, cfg, seed=2, out_dir=tmp_path, callbacks=[_Kill(at=1)])
    torch.manual_seed(5)
    resumed = pretrain(data, cfg, seed=2, out_dir=tmp_path)
    for p, q in zip(full.teacher.parameters(), resumed.teacher.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.filterwarnings("ignore::selfdistill.config.sections.HyperparameterWarning")
def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    data = _toy_data()
    pretrain(data, _cfg(epochs=1), seed=0, out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"ema_teacher\.lr"):
        pretrain(data, _cfg(epochs=1, lr=0.01), seed=0, out_dir=tmp_path)
    again = pretrain(data, _cfg(epochs=1, lr=0.01), seed=0, out_dir=tmp_path, resume=False)
    assert len(again.history) == 1


# ------------------------------------------------------------- the method


def test_method_pretrains_then_fine_tunes_a_window_classifier() -> None:
    data = _toy_data()
    data.x = make_windows(data.x, 8)
    lineage = get_method("ema_teacher")(data, _cfg(epochs=1), seed=0)
    assert lineage.method == "ema_teacher"
    member = lineage.members[0]
    assert member.predict_proba(data.x, data.val_rows).shape == (len(data.val_rows), 3)
    assert "pretrain_seconds" in lineage.info


def test_method_starts_from_a_checkpoint(tmp_path: Path) -> None:
    data = _toy_data()
    data.x = make_windows(data.x, 8)
    pretrain(data, _cfg(epochs=1), seed=0, out_dir=tmp_path)
    cfg = _cfg(epochs=1, checkpoint=str(tmp_path))
    lineage = get_method("ema_teacher")(data, cfg, seed=0)
    assert "pretrain_seconds" not in lineage.info  # no second pretraining
    encoder = load_pretrained_encoder(tmp_path)
    assert encoder(data.x[:5]).shape == (5, 8)


def test_method_needs_windows_and_a_window_encoder() -> None:
    with pytest.raises(ConfigError, match="cnn or gru"):
        get_method("ema_teacher")(_toy_data(), _cfg(), seed=0)
    with pytest.raises(ConfigError, match=r"model\.kind"):
        pretrain(_toy_data(), _cfg({"kind": "mlp"}), seed=0)

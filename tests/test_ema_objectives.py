"""EMA-teacher objectives end to end: masked, contrastive, clustering, combined; monitors."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from selfdistill.config import RunConfig, parse_config
from selfdistill.config.sections import HyperparameterWarning
from selfdistill.methods import get_method
from selfdistill.methods.base import TrainData
from selfdistill.methods.ema_teacher.checkpoint import load_pretrained_encoder, read_checkpoint
from selfdistill.methods.ema_teacher.collapse import CollapseMonitor
from selfdistill.methods.ema_teacher.pretraining import build_state, objective_name, pretrain
from selfdistill.nn.windows import make_windows
from selfdistill.training.loop import Callback

OBJECTIVES: list[Any] = ["masked", "contrastive", "clustering",
                         {"consistency": 1.0, "masked": 0.5, "contrastive": 1.0,
                          "clustering": 2.0}]


def _cfg(**ema: Any) -> RunConfig:
    return parse_config({
        "model": {"kind": "cnn", "hidden": [8], "window": 8, "dropout": 0.0},
        "training": {"epochs": 1, "batch_size": 64, "patience": 1},
        "ema_teacher": {"epochs": 2, "batch_size": 64, "projection_dim": 8,
                        "projection_hidden": 16, "predictor_hidden": 16, "prototypes": 8,
                        "bottleneck": 8, "queue_size": 64, "monitor_rows": 64, **ema},
    })


def _data(n: int = 300, n_train: int = 200) -> TrainData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g).cumsum(0) / 10
    train = torch.arange(n_train)
    return TrainData(x=x, y=torch.randint(0, 3, (n,), generator=g), train_rows=train,
                     val_rows=torch.arange(n_train + 10, n), unlabeled_rows=train)


class _Kill(Callback):
    def on_epoch_end(self, label: str, record: dict[str, float]) -> None:
        if record["epoch"] == 1:
            raise KeyboardInterrupt


@pytest.mark.parametrize("objective", OBJECTIVES, ids=["masked", "contrastive", "clustering",
                                                       "combined"])
def test_objective_trains_logs_its_terms_and_resumes_exactly(objective: Any,
                                                             tmp_path: Path) -> None:
    cfg, data = _cfg(objective=objective), _data()
    full = pretrain(data, cfg, seed=3)
    names = [objective] if isinstance(objective, str) else list(objective)
    last = full.history[-1]
    for name in ("consistency", "masked", "contrastive", "clustering"):
        assert math.isfinite(last[f"loss_{name}"]) == (name in names), name
    weights = cfg.ema_teacher.objective
    assert last["loss"] == pytest.approx(sum(w * last[f"loss_{n}"] for n, w in weights.items()),
                                         rel=1e-5)
    metric = {"masked": "target_std", "contrastive": "key_std", "clustering": "cluster_usage"}
    for name, key in metric.items():
        assert math.isfinite(last[key]) == (name in names), key
    with pytest.raises(KeyboardInterrupt):
        pretrain(data, cfg, seed=3, out_dir=tmp_path, callbacks=[_Kill()])
    torch.manual_seed(123)
    resumed = pretrain(data, cfg, seed=3, out_dir=tmp_path)
    for a, b in ((full.student, resumed.student), (full.teacher, resumed.teacher)):
        for (key, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.equal(p, q), key
    tensors, _ = read_checkpoint(tmp_path)
    if "contrastive" in names:  # the queue and the pointer are part of what resumes
        assert {"queue.keys", "queue.pointer"} <= set(tensors)
    if "masked" in names:
        assert "online.masked.token" in tensors


@pytest.mark.parametrize("objective", ["masked", "contrastive", "clustering"])
def test_the_method_pretrains_each_objective_and_fine_tunes(objective: str) -> None:
    data = _data()
    data.x = make_windows(data.x, 8)
    lineage = get_method("ema_teacher")(data, _cfg(objective=objective, epochs=1), seed=0)
    assert lineage.info["pretrain_encoder"] == "student"  # byol form: the online encoder
    proba = lineage.members[0].predict_proba(data.x, data.val_rows)
    assert proba.shape == (len(data.val_rows), 3)
    assert torch.allclose(torch.as_tensor(proba).sum(1), torch.ones(len(data.val_rows),
                                                                    dtype=torch.float64))


def test_masked_student_reads_masked_bars_and_teacher_the_whole_window() -> None:
    """Poisoning the masked bars changes nothing for the student; the teacher sees them."""
    from selfdistill.methods.ema_teacher.objectives import student_terms, teacher_targets

    cfg = _cfg(objective="masked", mask_ratio=0.5)
    e = cfg.ema_teacher
    state = build_state(4, 200, cfg, seed=0)
    views = torch.randn(8, 4, 8)
    targets = teacher_targets(state, views, e)
    assert targets.mask is not None
    assert targets.mask.sum(1).tolist() == [4] * 8  # the same count in every window
    loss = student_terms(state, targets, slice(0, 4), e)["masked"].detach()
    poisoned = views.clone()
    poisoned[targets.mask[:, None, :].expand_as(views)] = 1e6
    targets.views = poisoned  # what the student reads, masked, is unchanged
    again = student_terms(state, targets, slice(0, 4), e)["masked"].detach()
    assert float(again) == float(loss)
    moved = teacher_targets(state, poisoned, e)
    assert moved.sequence is not None
    assert targets.sequence is not None
    assert not torch.allclose(moved.sequence, targets.sequence)


def test_clustering_codes_are_balanced_within_each_view() -> None:
    from selfdistill.methods.ema_teacher.objectives import teacher_targets

    cfg = _cfg(objective="clustering", sinkhorn_iterations=20)
    state = build_state(4, 200, cfg, seed=0)
    targets = teacher_targets(state, torch.randn(64, 4, 8), cfg.ema_teacher)
    assert targets.codes is not None
    for view in targets.codes.chunk(2):
        torch.testing.assert_close(view.sum(0), torch.full((8,), 32 / 8), rtol=0.02, atol=0.02)


def test_encoder_default_follows_the_form(tmp_path: Path) -> None:
    assert _cfg().ema_teacher.downstream_encoder() == "student"
    assert _cfg(form="dino").ema_teacher.downstream_encoder() == "teacher"
    assert _cfg(form="dino", encoder="student").ema_teacher.downstream_encoder() == "student"
    for form, which in (("byol", "student"), ("dino", "teacher")):
        out = tmp_path / form
        result = pretrain(_data(), _cfg(form=form, epochs=1), seed=0, out_dir=out)
        loaded = load_pretrained_encoder(out)  # auto: the checkpoint's form decides
        expected = result.encoder(which).state_dict()
        other = result.encoder("teacher" if which == "student" else "student").state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
        assert any(not torch.equal(v, other[k]) for k, v in loaded.state_dict().items())


def test_objective_names() -> None:
    assert objective_name(_cfg().ema_teacher) == "byol"
    assert objective_name(_cfg(form="dino", objective="clustering").ema_teacher) == "clustering"
    assert objective_name(_cfg(objective={"consistency": 1, "masked": 0.5}).ema_teacher) == (
        "byol+masked0.5")


# ------------------------------------------------------------------ config ranges


@pytest.mark.parametrize(("key", "value"), [("tau_base", 0.95), ("lr", 0.01),
                                            ("student_temperature", 0.05),
                                            ("contrastive_temperature", 2.0),
                                            ("objective", {"masked": 3.0})])
def test_settings_outside_the_recommended_ranges_warn_but_run(key: str, value: Any) -> None:
    with pytest.warns(HyperparameterWarning, match=rf"ema_teacher\.{key}"):
        cfg = _cfg(**{key: value})
    assert getattr(cfg.ema_teacher, key) == (value if key != "objective" else {"masked": 3.0})


def test_recommended_settings_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", HyperparameterWarning)
        _cfg(tau_base=0.9999, lr=1e-4, student_temperature=1.0,
             objective={"consistency": 0.5, "contrastive": 2.0})


@pytest.mark.parametrize(("ema", "fragment"), [
    ({"objective": "simclr"}, "objective"),
    ({"objective": {"masked": 0}}, "greater than 0"),
    ({"accumulation_steps": 65}, "accumulation_steps"),
])
def test_bad_objectives_and_accumulation_are_config_errors(ema: dict[str, Any],
                                                           fragment: str) -> None:
    from selfdistill.errors import ConfigError

    with pytest.raises(ConfigError, match=fragment):
        _cfg(**ema)


# ------------------------------------------------------------------ collapse monitor


def test_monitor_flags_each_objectives_collapse_and_ignores_unused_metrics() -> None:
    monitor = CollapseMonitor(8, clusters=16, key_dim=8)
    healthy = {"embedding_std": 0.3, "effective_rank": 4.0, "cluster_usage": 9.0,
               "key_std": 0.2, "contrastive_at_uniform": 0.0, "target_std": 0.8}
    assert monitor.problems(healthy) == []
    for key, value, fragment in (("cluster_usage", 1.2, "clusters"),
                                 ("key_std", 0.001, "key_std"),
                                 ("contrastive_at_uniform", 1.0, "ln\\(1 \\+ queue size\\)"),
                                 ("target_std", 0.01, "target_std")):
        problems = monitor.problems(healthy | {key: value})
        assert len(problems) == 1
        assert fragment.replace("\\", "") in problems[0]
    unused = {"embedding_std": 0.3, "effective_rank": 4.0, "cluster_usage": math.nan,
              "key_std": math.nan, "target_std": math.nan}
    assert CollapseMonitor(8).problems(unused) == []


def test_collapsed_clustering_teacher_is_reported() -> None:
    """A teacher head that maps every window to one point assigns all to one cluster."""
    from selfdistill.methods.ema_teacher.monitor import collapse_record, make_monitor

    cfg = _cfg(objective="clustering")
    state = build_state(4, 200, cfg, seed=0)
    with torch.no_grad():
        head = state.teacher.aux["clustering"]
        last = head.mlp.net[-1]
        last.weight.zero_()  # the bottleneck no longer depends on the window ...
        last.bias.copy_(head.prototypes[2])  # ... and sits on prototype 2
    record = collapse_record(state, torch.randn(64, 4, 8), {"loss": 1.0, "clustering": 1.0},
                             cfg.ema_teacher)
    assert record["cluster_usage"] == pytest.approx(1.0)
    assert any("clusters" in p for p in make_monitor(cfg).problems(record))

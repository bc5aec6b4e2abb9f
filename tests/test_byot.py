"""Be Your Own Teacher as a method: exits as members, early exit, latency."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfdistill.config import RunConfig, parse_config
from selfdistill.errors import ConfigError
from selfdistill.methods import get_method
from selfdistill.methods.base import Member, TrainData
from selfdistill.methods.byot import (
    build_multi_exit,
    early_exit_choice,
    early_exit_probabilities,
    exit_shares,
    fit_byot,
    measure_latency,
)


def blobs(n: int = 900, f: int = 6, seed: int = 0) -> TrainData:
    """A learnable three-class task: Gaussian clusters."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(3, f, generator=g)[y] * 1.5 + torch.randn(n, f, generator=g)
    cut = int(n * 0.7)
    return TrainData(x=x, y=y, train_rows=torch.arange(cut), val_rows=torch.arange(cut, n))


def small_cfg(**byot: object) -> RunConfig:
    return parse_config({"model": {"hidden": [16, 16, 16], "dropout": 0.0},
                         "training": {"epochs": 12, "batch_size": 64, "lr": 0.01,
                                      "patience": 0},
                         "byot": {"bottleneck": 8, "thresholds": [0.0, 0.6, 1.0],
                                  "latency_samples": 20, **byot}})


def _probs(*rows: list[list[float]]) -> list[np.ndarray]:
    return [np.asarray(r, dtype=np.float64) for r in rows]


def test_early_exit_threshold_zero_is_first_one_is_deepest() -> None:
    probs = _probs([[0.4, 0.3, 0.3], [0.9, 0.05, 0.05]],
                   [[0.6, 0.2, 0.2], [0.95, 0.03, 0.02]],
                   [[0.7, 0.2, 0.1], [0.8, 0.1, 0.1]])
    assert early_exit_choice(probs, 0.0).tolist() == [0, 0]
    assert early_exit_choice(probs, 1.0).tolist() == [2, 2]
    assert early_exit_choice(probs, 0.55).tolist() == [1, 0]
    assert early_exit_choice(probs, 0.92).tolist() == [2, 1]
    # a probability of exactly 1 is the one way out before the deepest exit at 1.0
    certain = _probs([[1.0, 0.0, 0.0]], [[0.5, 0.5, 0.0]])
    assert early_exit_choice(certain, 1.0).tolist() == [0]


def test_early_exit_probabilities_and_shares() -> None:
    probs = _probs([[0.4, 0.3, 0.3], [0.9, 0.05, 0.05], [0.5, 0.4, 0.1]],
                   [[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    got = early_exit_probabilities(probs, 0.5)
    np.testing.assert_allclose(got, [[0.2, 0.7, 0.1], [0.9, 0.05, 0.05], [0.5, 0.4, 0.1]])
    shares = exit_shares(probs, 0.5)
    assert shares == pytest.approx({"exit_share_1": 2 / 3, "exit_share_2": 1 / 3,
                                    "mean_exit_depth": 4 / 3})


@pytest.fixture(scope="module")
def fitted() -> tuple[TrainData, RunConfig, object]:
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test settings
    torch.manual_seed(0)
    data, cfg = blobs(), small_cfg()
    return data, cfg, fit_byot(data, cfg, seed=0)


def _accuracy(member: Member, data: TrainData) -> float:
    pred = member.predict_proba(data.x, data.val_rows).argmax(axis=1)
    return float((pred == data.y[data.val_rows].numpy()).mean())


def test_every_exit_improves_over_the_untrained_net(fitted: tuple) -> None:
    data, cfg, lineage = fitted
    untrained = build_multi_exit(data, cfg, seed=123).eval()
    for member in lineage.members:
        before = _accuracy(Member(member.keys, untrained, output=member.output), data)
        after = _accuracy(member, data)
        assert after > 0.8, member.keys
        assert after > before + 0.2, member.keys


def test_lineage_has_one_member_per_exit_and_derived_rows(fitted: tuple) -> None:
    _, cfg, lineage = fitted
    assert lineage.method == "byot"
    assert [m.keys for m in lineage.members] == [{"exit": 1}, {"exit": 2}, {"exit": 3}]
    assert [m.output for m in lineage.members] == [0, 1, 2]
    assert all(m.model is lineage.members[0].model for m in lineage.members)  # one network
    assert [d.keys["exit"] for d in lineage.derived] == [
        "ensemble", "early_exit@0.0", "early_exit@0.6", "early_exit@1.0"]
    assert {d.method for d in lineage.derived} == {"byot"}
    assert lineage.disagreement
    scores = lineage.info["val_nll"]
    assert lineage.selected == int(np.argmin(scores))
    assert lineage.info["epochs"] == cfg.training.epochs
    assert not any(p.requires_grad for p in lineage.members[0].model.parameters())


def test_early_exit_rows_on_the_fitted_net(fitted: tuple) -> None:
    data, _, lineage = fitted
    probs = [m.predict_proba(data.x, data.val_rows) for m in lineage.members]
    first, mid, last = lineage.derived[1:]
    np.testing.assert_allclose(first.combine(probs), probs[0])
    np.testing.assert_allclose(last.combine(probs), probs[-1])
    extras = mid.extras(probs)
    shares = [extras[f"exit_share_{i}"] for i in (1, 2, 3)]
    assert sum(shares) == pytest.approx(1.0)
    assert 1.0 <= extras["mean_exit_depth"] <= 3.0
    assert first.extras(probs)["exit_share_1"] == 1.0
    assert last.extras(probs)["mean_exit_depth"] == 3.0
    # the network's own early exit (which skips blocks) makes the same choices
    _, where = lineage.members[0].model.early_exit(data.x[data.val_rows], 0.6)
    agree = (where.numpy() == early_exit_choice(probs, 0.6)).mean()
    assert agree > 0.99


def test_latency_is_measured_per_exit_and_threshold(fitted: tuple) -> None:
    _, _, lineage = fitted
    keys = ["latency_us_exit_1", "latency_us_exit_2", "latency_us_exit_3",
            "latency_us_early_exit@0.0", "latency_us_early_exit@0.6",
            "latency_us_early_exit@1.0"]
    for key in keys:
        value = lineage.info[key]
        assert isinstance(value, float)
        assert 0 < value < 1e6, key
    assert [m.info["latency_us"] for m in lineage.members] == [
        lineage.info[k] for k in keys[:3]]


def test_measure_latency_can_be_skipped() -> None:
    data, cfg = blobs(60), small_cfg()
    model = build_multi_exit(data, cfg, seed=0)
    assert measure_latency(model, data.x, data.val_rows, [0.5], n_samples=0) == {}
    got = measure_latency(model, data.x, data.val_rows, [0.5], n_samples=3)
    assert sorted(got) == ["latency_us_early_exit@0.5", "latency_us_exit_1",
                           "latency_us_exit_2", "latency_us_exit_3"]
    assert all(math.isfinite(v) for v in got.values())


def test_registered_and_same_seed_same_model() -> None:
    assert get_method("byot") is fit_byot
    data = blobs(300)
    cfg = parse_config({"model": {"hidden": [8, 8]},
                        "training": {"epochs": 2, "batch_size": 64},
                        "byot": {"latency_samples": 0, "thresholds": [0.5]}})
    a, b = fit_byot(data, cfg, seed=3), fit_byot(data, cfg, seed=3)
    for pa, pb in zip(a.members[0].model.parameters(), b.members[0].model.parameters(),
                      strict=True):
        torch.testing.assert_close(pa, pb)


@pytest.mark.parametrize(("model", "match"), [
    ({"hidden": [32]}, r"at least 2 blocks.*\[32\]"),
    ({"kind": "gru"}, "model.kind must be 'mlp', got 'gru'"),
])
def test_bad_backbone_is_a_config_error(model: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        fit_byot(blobs(100), parse_config({"model": model}), seed=0)

"""The pretrained-vs-random-vs-scratch comparison with few labels."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

from selfdistill.config import parse_config
from selfdistill.evaluation.pretrain_compare import (
    ARMS,
    CompareData,
    compare_arms,
    label_subset,
    summarise,
)
from selfdistill.nn.encoders import TCNEncoder
from selfdistill.nn.windows import make_windows


def _data(n: int = 500) -> CompareData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = (x[:, 0] > 0.5).long() + (x[:, 0] < -0.5).long() * 2  # learnable from the last bar
    truth = y.numpy().copy()
    return CompareData(make_windows(x, 6), y, torch.arange(300), torch.arange(310, 400),
                       torch.arange(410, n), truth)


def test_label_subset_sizes_and_reproducibility() -> None:
    rows = torch.arange(100, 1100)
    five = label_subset(rows, 0.05, seed=1)
    assert len(five) == 50
    assert torch.equal(five, five.sort().values)
    assert set(five.tolist()) <= set(rows.tolist())
    assert torch.equal(five, label_subset(rows, 0.05, seed=1))
    assert not torch.equal(five, label_subset(rows, 0.05, seed=2))
    assert len(label_subset(rows, 0.001, seed=1)) == 32  # a floor of 32 labels
    assert torch.equal(label_subset(rows, 1.0, seed=1), rows)
    with pytest.raises(ValueError, match="fraction"):
        label_subset(rows, 0.0, seed=1)


def test_compare_runs_every_arm_at_every_fraction_and_scores_test_once() -> None:
    cfg = parse_config({"model": {"kind": "cnn", "hidden": [8], "window": 6, "dropout": 0.0},
                        "training": {"epochs": 3, "batch_size": 64, "patience": 2,
                                     "lr": 0.01}})
    torch.manual_seed(0)
    encoder = TCNEncoder(3, [8])
    before = copy.deepcopy(encoder.state_dict())
    records = compare_arms(_data(), encoder, cfg, seed=0, fractions=[0.2, 1.0])
    assert [(r["fraction"], r["arm"]) for r in records] == [
        (f, a) for f in (0.2, 1.0) for a in ARMS]
    assert {r["n_labels"] for r in records} == {60, 300}
    for rec in records:
        for key in ("val_accuracy", "test_accuracy", "test_nll", "test_accuracy_true"):
            assert 0.0 <= rec[key] < 10.0
    full = {r["arm"]: r for r in records if r["fraction"] == 1.0}
    assert full["scratch"]["test_accuracy"] > 0.6  # the task is learnable from the last bar
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key])  # the caller's encoder is never trained


def _records(seeds: int, n_bars: int = 600) -> list[dict[str, Any]]:
    """Per-bar test correctness of the four arms; probe_pretrained right on 10% more bars."""
    rng = np.random.default_rng(0)
    out: list[dict[str, Any]] = []
    for seed in range(seeds):
        for arm, base in zip(ARMS, (0.6, 0.5, 0.62, 0.55), strict=True):
            correct = (rng.random(n_bars) < base).astype(int)
            out.append({"seed": seed, "fraction": 0.2, "arm": arm,
                        "test_accuracy": float(correct.mean()), "test_correct": correct.tolist()})
    return out


def test_summary_has_intervals_and_paired_differences_with_seeds() -> None:
    table = summarise(_records(3))
    by_arm = {r["arm"]: r for r in table}
    assert set(by_arm) == set(ARMS)
    probe = by_arm["probe_pretrained"]
    assert probe["versus"] == "probe_random"
    assert probe["diff"] == pytest.approx(0.1, abs=0.03)
    assert probe["diff_low"] > 0
    assert probe["p_adjusted"] >= probe["p_value"]
    assert probe["verdict"] == "better"
    assert by_arm["finetune_pretrained"]["versus"] == "scratch"
    assert by_arm["scratch"]["ci_low"] < by_arm["scratch"]["mean"] < by_arm["scratch"]["ci_high"]


def test_summary_with_one_seed_tests_the_bars_and_tiny_differences_are_not_verdicts() -> None:
    """Three seeds of 0.501 vs 0.5 said 'better' under the old bootstrap; now per-bar tests."""
    table = summarise(_records(1))
    probe = next(r for r in table if r["arm"] == "probe_pretrained")
    assert probe["ci_low"] is not None  # one seed: a per-bar test of the test period
    tiny = _records(3)
    for rec in tiny:
        if rec["arm"] == "probe_random":
            rec["test_correct"] = next(r["test_correct"] for r in tiny
                                       if r["arm"] == "probe_pretrained"
                                       and r["seed"] == rec["seed"])
            rec["test_correct"][0] = 1 - rec["test_correct"][0]  # differ on one bar only
    probe = next(r for r in summarise(tiny) if r["arm"] == "probe_pretrained")
    assert probe["verdict"] == "no significant difference"


def test_several_encoders_share_the_reference_arms_and_fine_tune_only_those_asked() -> None:
    cfg = parse_config({"model": {"kind": "cnn", "hidden": [8], "window": 6, "dropout": 0.0},
                        "training": {"epochs": 2, "batch_size": 64, "patience": 1,
                                     "lr": 0.01}})
    torch.manual_seed(0)
    encoders = {"a/student": TCNEncoder(3, [8]), "a/teacher": TCNEncoder(3, [8])}
    records = compare_arms(_data(), encoders, cfg, seed=0, fractions=[0.2, 1.0],
                           finetune={"a/student"})
    cells = [(r["fraction"], r["arm"], r["pretrained"]) for r in records]
    assert cells == [(f, arm, name) for f in (0.2, 1.0) for arm, name in (
        ("probe_pretrained", "a/student"), ("probe_pretrained", "a/teacher"),
        ("probe_random", None), ("finetune_pretrained", "a/student"), ("scratch", None))]
    table = summarise(records)
    probes = [r for r in table if r["arm"] == "probe_pretrained"]
    assert {r["pretrained"] for r in probes} == {"a/student", "a/teacher"}
    assert all(r["versus"] == "probe_random" and "verdict" in r for r in probes)
    assert len([r for r in table if r["arm"] == "scratch"]) == 2  # one per fraction

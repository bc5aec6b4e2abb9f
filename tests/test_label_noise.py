"""Controlled label noise (``labels.noise``): training rows only, the stated rate, seeded."""

from __future__ import annotations

import math
import typing

import numpy as np
import pytest

from selfdistill.config import LabelNoiseConfig, parse_config
from selfdistill.errors import ConfigError
from selfdistill.labels import BEAR, BULL, NOISE_PAIRS, SIDEWAYS, noisy_labels

N = 30_000


@pytest.fixture
def labels() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 3, N)


def _within_binomial(observed: float, rate: float, n: int) -> bool:
    """|observed - rate| within 4 binomial standard errors (a 1 in 15,000 false alarm)."""
    return abs(observed - rate) <= 4 * math.sqrt(rate * (1 - rate) / n)


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_symmetric_flip_rate_is_the_stated_rate(labels: np.ndarray, rate: float,
                                                seed: int) -> None:
    train = np.arange(20_000)
    out = noisy_labels(labels, train, LabelNoiseConfig(rate=rate), seed=seed)
    changed = out[train] != labels[train]
    assert _within_binomial(float(changed.mean()), rate, len(train))


def test_symmetric_flips_go_to_each_other_class_equally(labels: np.ndarray) -> None:
    train = np.arange(N)
    out = noisy_labels(labels, train, LabelNoiseConfig(rate=0.3), seed=0)
    changed = out != labels
    step = (out[changed] - labels[changed]) % 3  # 1 or 2: which other class
    assert set(np.unique(step)) == {1, 2}
    assert _within_binomial(float((step == 1).mean()), 0.5, int(changed.sum()))


def test_only_training_rows_change(labels: np.ndarray) -> None:
    train = np.arange(2_000, 18_000)  # validation / test rows on both sides
    out = noisy_labels(labels, train, LabelNoiseConfig(rate=0.4), seed=5)
    outside = np.setdiff1d(np.arange(N), train)
    np.testing.assert_array_equal(out[outside], labels[outside])
    assert (out[train] != labels[train]).any()
    assert labels.dtype == out.dtype


def test_reproducible_by_seed_and_the_noise_seed_overrides(labels: np.ndarray) -> None:
    train = np.arange(N)
    noise = LabelNoiseConfig(rate=0.2)
    a = noisy_labels(labels, train, noise, seed=7)
    np.testing.assert_array_equal(a, noisy_labels(labels, train, noise, seed=7))
    assert (a != noisy_labels(labels, train, noise, seed=8)).any()
    fixed = LabelNoiseConfig(rate=0.2, seed=11)  # the same noise whatever the cell's seed
    np.testing.assert_array_equal(noisy_labels(labels, train, fixed, seed=1),
                                  noisy_labels(labels, train, fixed, seed=2))


def test_a_bar_keeps_its_noisy_label_across_folds_and_later_bars(labels: np.ndarray) -> None:
    """Causal and fold-consistent: a row's flip depends on the seed and that row only."""
    noise = LabelNoiseConfig(rate=0.3)
    first = noisy_labels(labels, np.arange(10_000), noise, seed=4)  # fold 1's training rows
    second = noisy_labels(labels, np.arange(20_000), noise, seed=4)  # fold 2's (expanding)
    np.testing.assert_array_equal(first[:10_000], second[:10_000])
    shorter = noisy_labels(labels[:10_000], np.arange(10_000), noise, seed=4)  # no later bars
    np.testing.assert_array_equal(shorter, first[:10_000])


@pytest.mark.parametrize("kind", sorted(NOISE_PAIRS))
def test_class_conditional_flips_only_between_the_named_classes(labels: np.ndarray,
                                                                kind: str) -> None:
    a, b = NOISE_PAIRS[kind]
    train = np.arange(N)
    out = noisy_labels(labels, train, LabelNoiseConfig(rate=0.25, kind=kind), seed=0)
    changed = out != labels
    third = ({BULL, BEAR, SIDEWAYS} - {a, b}).pop()
    assert not changed[labels == third].any()
    moved = set(zip(labels[changed].tolist(), out[changed].tolist(), strict=True))
    assert moved == {(a, b), (b, a)}
    pair = (labels == a) | (labels == b)
    assert _within_binomial(float(changed[pair].mean()), 0.25, int(pair.sum()))


def test_rate_zero_changes_nothing(labels: np.ndarray) -> None:
    out = noisy_labels(labels, np.arange(N), LabelNoiseConfig(), seed=0)
    np.testing.assert_array_equal(out, labels)


def test_config_noise_shorthand_bounds_and_kinds() -> None:
    cfg = parse_config({"labels": {"noise": 0.2}})
    assert cfg.labels.noise == LabelNoiseConfig(rate=0.2, kind="symmetric")
    cfg = parse_config({"labels": {"noise": {"rate": 0.1, "kind": "bull_sideways"}}})
    assert cfg.labels.noise.kind == "bull_sideways"
    with pytest.raises(ConfigError, match=r"labels\.noise\.rate"):
        parse_config({"labels": {"noise": {"rate": 1.0}}})
    with pytest.raises(ConfigError, match=r"labels\.noise\.kind"):
        parse_config({"labels": {"noise": {"rate": 0.1, "kind": "bull_to_moon"}}})
    with pytest.raises(ConfigError, match=r"labels\.noise\.rat.*did you mean 'rate'"):
        parse_config({"labels": {"noise": {"rat": 0.1}}})
    kinds = typing.get_args(LabelNoiseConfig.model_fields["kind"].annotation)
    assert set(kinds) == {"symmetric", *NOISE_PAIRS}


def test_make_train_data_noises_training_rows_only() -> None:
    """Through the fold's data path: train labels noisy, validation and test clean, and
    the clean rows the same whatever the noise setting."""
    import torch

    from selfdistill.evaluation.fold import (
        build_dataset,
        holdout_split,
        load_candles,
        make_train_data,
    )
    from selfdistill.splits import Split

    def train_data(rate: float, seed: int) -> tuple[np.ndarray, np.ndarray, Split]:
        cfg = parse_config({"data": {"synthetic": {"n_bars": 3000}}, "device": "cpu",
                            "labels": {"noise": {"rate": rate}}})
        ds = build_dataset(cfg, *load_candles(cfg))
        split = holdout_split(ds, cfg)
        data, _, _ = make_train_data(ds, split, cfg, torch.device("cpu"), seed=seed)
        return data.y.numpy(), ds.labels.y.to_numpy(), split

    noisy, clean, split = train_data(0.3, seed=1)
    train = np.asarray(split.train)
    kept = np.setdiff1d(np.arange(len(clean)), train)  # validation, test and purged rows
    np.testing.assert_array_equal(noisy[kept], clean[kept])
    assert _within_binomial(float((noisy[train] != clean[train]).mean()), 0.3, len(train))
    again, _, _ = train_data(0.3, seed=1)
    np.testing.assert_array_equal(again, noisy)
    other, _, _ = train_data(0.3, seed=2)
    assert (other[train] != noisy[train]).any()
    np.testing.assert_array_equal(other[kept], clean[kept])
    none, _, _ = train_data(0.0, seed=1)
    np.testing.assert_array_equal(none, clean)

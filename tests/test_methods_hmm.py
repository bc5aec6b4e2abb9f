"""The ``hmm`` method: causal through the method path, training rows only, sequences, model files.

The pure filter and EM are tested in test_classic_hmm.py; `selfdistill run` / predict /
the estimator in test_methods_classic_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from selfdistill.config import RunConfig, parse_config
from selfdistill.errors import ConfigError, DataError, ModelFileError, TrainingError
from selfdistill.evaluation.fold import build_dataset, holdout_split, load_candles, make_train_data
from selfdistill.methods import TrainData, get_method
from selfdistill.methods import hmm as hmm_method
from selfdistill.methods.common import derive_seed
from selfdistill.modelio.weights import load_model, save_model
from selfdistill.nn.classic.modules import HMMClassifier
from selfdistill.nn.registry import model_from_spec
from tiny_experiment import tiny_config


@pytest.fixture(scope="module")
def market() -> tuple[TrainData, torch.Tensor, np.ndarray]:
    """(TrainData, (R, F) inputs of every labelled row, test rows) of a tiny holdout split."""
    cfg = tiny_config(evaluation={"scheme": "holdout", "folds": 1, "seeds": 1})
    candles, truth, interval = load_candles(cfg)
    ds = build_dataset(cfg, candles, truth, interval)
    split = holdout_split(ds, cfg)
    data, x, _ = make_train_data(ds, split, cfg, torch.device("cpu"))
    return data, x, np.asarray(split.test)


def _cfg(**hmm: object) -> RunConfig:
    return RunConfig.model_validate({"hmm": {"n_init": 2, **hmm}})


@pytest.fixture(scope="module")
def fitted(market: tuple[TrainData, torch.Tensor, np.ndarray]) -> HMMClassifier:
    data, _, _ = market
    model = get_method("hmm")(data, _cfg(), seed=0).members[0].model
    assert isinstance(model, HMMClassifier)
    return model


def test_registered_and_gives_distributions(
        market: tuple[TrainData, torch.Tensor, np.ndarray]) -> None:
    data, x, test = market
    lineage = get_method("hmm")(data, _cfg(), seed=0)
    assert lineage.method == "hmm"
    assert [m.keys for m in lineage.members] == [{"generation": None}]
    assert [h["epoch"] for h in lineage.members[0].history] == [1.0, 2.0]  # one row per EM init
    proba = lineage.members[0].predict_proba(x, torch.as_tensor(test))
    assert proba.shape == (len(test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_future_rows_never_change_the_past_through_the_member(
        market: tuple[TrainData, torch.Tensor, np.ndarray]) -> None:
    """The cardinal sin, checked where evaluation reads it: Member.predict_proba(x, rows)."""
    data, x, test = market
    member = get_method("hmm")(data, _cfg(), seed=0).members[0]
    base = member.predict_proba(x)  # (R, C)
    rng = np.random.default_rng(0)
    for t in (0, int(test[0]) - 1, int(test[0]), int(test[len(test) // 2]), len(x) - 2):
        changed = x.clone()
        changed[t + 1:] = torch.as_tensor(rng.normal(0.0, 3.0, changed[t + 1:].shape),
                                          dtype=changed.dtype)  # rewrite the future
        for variant in (changed, x[: t + 1]):
            np.testing.assert_array_equal(member.predict_proba(variant)[: t + 1], base[: t + 1])
        assert not np.array_equal(member.predict_proba(changed)[t + 1:], base[t + 1:])


def test_rows_asked_for_do_not_change_their_probabilities(
        market: tuple[TrainData, torch.Tensor, np.ndarray]) -> None:
    """Evaluation asks for train, val and test rows apart: each sees the same past."""
    data, x, test = market
    member = get_method("hmm")(data, _cfg(), seed=0).members[0]
    full = member.predict_proba(x)
    for rows in (test, test[::-1].copy(), data.val_rows.numpy(), np.array([int(test[-1])])):
        np.testing.assert_array_equal(member.predict_proba(x, torch.as_tensor(rows)), full[rows])
    # a batch of test rows alone would restart the filter: another (wrong) answer
    alone = member.predict_proba(x[torch.as_tensor(test)])
    assert not np.allclose(alone[:5], full[test][:5], atol=1e-6)


def test_fit_reads_training_rows_only(market: tuple[TrainData, torch.Tensor, np.ndarray]) -> None:
    data, _, _ = market
    base = get_method("hmm")(data, _cfg(), seed=0).members[0].model
    scrambled = TrainData(x=data.x.clone(), y=data.y.clone(), train_rows=data.train_rows,
                          val_rows=data.val_rows)
    outside = torch.ones(len(data.x), dtype=torch.bool)
    outside[data.train_rows] = False
    scrambled.x[outside] = torch.randn(int(outside.sum()), data.x.shape[1]) * 10
    scrambled.y[outside] = 2
    other = get_method("hmm")(scrambled, _cfg(), seed=0).members[0].model
    for name, value in base.state_dict().items():
        torch.testing.assert_close(other.state_dict()[name], value, rtol=0, atol=0)


def test_same_seed_same_model_other_seed_other_inits(
        market: tuple[TrainData, torch.Tensor, np.ndarray]) -> None:
    data, _, _ = market
    a, b, c = (get_method("hmm")(data, _cfg(), seed=s).members[0] for s in (1, 1, 2))
    torch.testing.assert_close(a.model.state_dict(), b.model.state_dict(), rtol=0, atol=0)
    assert a.history == b.history
    assert a.history != c.history  # the EM inits follow the run seed


def test_training_sequences_break_at_blocks_and_gaps() -> None:
    """Purged k-fold's training blocks, and dropped bars, start new EM sequences."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=gen)
    y = (x[:, 0] > 0).long()
    rows = torch.cat([torch.arange(0, 150), torch.arange(250, 400)])
    positions = torch.arange(400) + (torch.arange(400) >= 60) * 25  # 25 bars missing at row 60
    data = TrainData(x=x, y=y, train_rows=rows, val_rows=torch.arange(150, 200),
                     positions=positions)
    assert hmm_method.train_lengths(rows.numpy(), positions.numpy()) == [60, 90, 150]
    got = get_method("hmm")(data, _cfg(), seed=3).members[0].model
    assert isinstance(got, HMMClassifier)
    want = hmm_method.fit(x.double().numpy()[rows], y.numpy()[rows], n_states=3, n_classes=3,
                          seed=derive_seed(3, "hmm"), n_init=2, lengths=[60, 90, 150])
    np.testing.assert_array_equal(got.params.transmat, want.transmat)
    joined = hmm_method.fit(x.double().numpy()[rows], y.numpy()[rows], n_states=3,
                            n_classes=3, seed=derive_seed(3, "hmm"), n_init=2)
    assert not np.array_equal(joined.transmat, want.transmat)  # the lengths mattered


def test_window_inputs_use_the_last_bar(fitted: HMMClassifier,
                                        market: tuple[TrainData, torch.Tensor, np.ndarray]) -> None:
    _, x, _ = market
    windows = torch.stack([torch.zeros_like(x), x], dim=2)  # (R, F, 2)
    torch.testing.assert_close(fitted(windows), fitted(x), rtol=0, atol=0)


def test_state_dict_round_trip_needs_no_pickle(
        fitted: HMMClassifier, market: tuple[TrainData, torch.Tensor, np.ndarray]) -> None:
    _, x, _ = market
    state = fitted.state_dict()
    assert set(state) == {"startprob", "transmat", "means", "variances", "state_to_class"}
    assert all(v.dtype == torch.float64 for v in state.values())
    shell = model_from_spec(fitted.spec())
    assert isinstance(shell, HMMClassifier)
    shell.load_state_dict(state)
    torch.testing.assert_close(shell(x), fitted(x), rtol=0, atol=0)


def test_saved_model_loads_in_a_fresh_process_without_the_methods(
        fitted: HMMClassifier, market: tuple[TrainData, torch.Tensor, np.ndarray],
        tmp_path: Path) -> None:
    _, x, _ = market
    save_model(fitted, tmp_path / "hmm", {"method": "hmm"})
    np.save(tmp_path / "x.npy", x.numpy())
    code = ("import sys, numpy as np, torch\n"
            "from selfdistill.modelio.weights import load_model\n"
            f"model, _ = load_model({str(tmp_path / 'hmm')!r})\n"
            f"x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))\n"
            "np.save(sys.argv[1], model(x).numpy())\n"
            "assert 'selfdistill.methods' not in sys.modules, 'the methods were imported'\n"
            "assert 'hmmlearn' not in sys.modules, 'hmmlearn is needed to fit, not to predict'\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out.npy")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), fitted(x).numpy())


def _rewrite_weights(stem: Path, change: dict[str, np.ndarray]) -> None:
    """Replace arrays of a saved member and re-sign it, as a careful forger would."""
    weights, meta_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    save_file({**load_file(weights), **change}, weights)
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))


def test_stored_arrays_that_are_no_model_are_refused(fitted: HMMClassifier,
                                                     tmp_path: Path) -> None:
    save_model(fitted, tmp_path / "hmm", {})
    load_model(tmp_path / "hmm")  # intact: loads
    _rewrite_weights(tmp_path / "hmm", {"transmat": np.ones((3, 3))})
    with pytest.raises(ModelFileError, match="transmat rows must be probability"):
        load_model(tmp_path / "hmm")


def test_inputs_of_the_wrong_width_are_a_data_error(fitted: HMMClassifier) -> None:
    with pytest.raises(DataError, match="x has 2 features, the model expects 9"):
        fitted(torch.zeros(4, 2))
    with pytest.raises(DataError, match="NaN/inf"):
        fitted(torch.full((1, 9), float("nan")))


def test_too_few_training_rows_is_a_training_error() -> None:
    data = TrainData(x=torch.randn(30, 2), y=torch.arange(30) % 3, train_rows=torch.arange(5),
                     val_rows=torch.arange(10, 20))
    with pytest.raises(TrainingError, match="hmm: x_train has 5 rows; fitting 6 states"):
        get_method("hmm")(data, _cfg(n_states=6), seed=0)


@pytest.mark.parametrize(("section", "match"), [
    ({"n_states": 1}, "hmm.n_states"),
    ({"n_init": 0}, "hmm.n_init"),
    ({"covariance": "full"}, "hmm.covariance"),
    ({"states": 3}, "hmm.states"),
])
def test_config_errors_name_the_field(section: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config({"methods": ["hmm"], "hmm": section})

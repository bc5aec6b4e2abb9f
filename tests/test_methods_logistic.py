"""The ``logistic`` method: selection on validation rows only, determinism, model files.

The pure model and grid fit are tested in test_classic_logistic.py; `selfdistill run` /
predict / the estimator in test_methods_classic_e2e.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from selfdistill.config import RunConfig, parse_config
from selfdistill.errors import ConfigError
from selfdistill.estimator import SelfDistillClassifier
from selfdistill.methods import TrainData, get_method
from selfdistill.nn.classic import logistic
from selfdistill.nn.classic.modules import LogisticClassifier
from selfdistill.nn.registry import model_from_spec


def _data(n: int = 900, seed: int = 0) -> TrainData:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=gen)
    score = x[:, 0] - 0.5 * x[:, 1] + 0.8 * torch.randn(n, generator=gen)
    y = torch.where(score > 0.4, 0, torch.where(score < -0.4, 1, 2)).long()
    rows = torch.arange(n)
    return TrainData(x=x, y=y, train_rows=rows[:600], val_rows=rows[600:750],
                     feature_names=tuple(f"f{i}" for i in range(5)))


def _cfg(**section: object) -> RunConfig:
    return RunConfig.model_validate({"logistic": section})


def _fit(data: TrainData, **section: object) -> LogisticClassifier:
    model = get_method("logistic")(data, _cfg(**section), seed=0).members[0].model
    assert isinstance(model, LogisticClassifier)
    return model


def test_learns_a_signal_and_reports_its_choice() -> None:
    data = _data()
    lineage = get_method("logistic")(data, _cfg(), seed=0)
    assert lineage.method == "logistic"
    member = lineage.members[0]
    proba = member.predict_proba(data.x, torch.arange(750, 900))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert (proba.argmax(axis=1) == data.y[750:].numpy()).mean() > 0.6  # chance ~0.33
    assert [h["C"] for h in member.history] == [0.01, 0.1, 1.0, 10.0]
    best = min(member.history, key=lambda h: h["val_loss"])
    assert lineage.info["C"] == best["C"] == float(member.model.params.chosen_c)


def test_test_rows_change_nothing() -> None:
    """Shuffling the labels (and features) of rows outside train / val leaves the model as it is."""
    data = _data()
    base = _fit(data)
    scrambled = TrainData(x=data.x.clone(), y=data.y.clone(), train_rows=data.train_rows,
                          val_rows=data.val_rows)
    test = torch.arange(750, 900)
    scrambled.y[test] = scrambled.y[test][torch.randperm(150)]
    scrambled.x[test] = torch.randn(150, 5) * 100
    other = _fit(scrambled)
    torch.testing.assert_close(other.state_dict(), base.state_dict(), rtol=0, atol=0)


def test_the_choice_follows_the_validation_labels() -> None:
    data = _data()
    base = _fit(data)
    noisy = TrainData(x=data.x, y=data.y.clone(), train_rows=data.train_rows,
                      val_rows=data.val_rows)
    noisy.y[data.val_rows] = torch.randint(0, 3, (len(data.val_rows),),
                                           generator=torch.Generator().manual_seed(1))
    other = _fit(noisy)
    assert not np.array_equal(other.params.val_nll, base.params.val_nll)
    assert float(other.params.chosen_c) == 0.01  # noise labels: the strongest penalty wins


def test_grid_of_one_uses_it() -> None:
    model = _fit(_data(), grid=[0.5])
    assert float(model.params.chosen_c) == 0.5
    assert model.params.grid.tolist() == [0.5]


def test_same_seed_same_coefficients() -> None:
    a, b = _fit(_data()), _fit(_data())
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)


def test_log_probabilities_are_the_models_probabilities() -> None:
    data = _data()
    model = _fit(data)
    logp = model(data.x)
    assert logp.dtype == torch.float64
    np.testing.assert_allclose(np.exp(logp.numpy()),
                               logistic.predict_proba(model.params, data.x.double().numpy()),
                               rtol=1e-12, atol=0)
    windows = torch.stack([torch.zeros_like(data.x), data.x], dim=2)  # (N, F, 2): last bar
    torch.testing.assert_close(model(windows), logp, rtol=0, atol=0)


def test_absent_class_keeps_a_finite_floor() -> None:
    data = _data()
    data.y[data.train_rows] = torch.where(data.y[data.train_rows] == 1, 0,
                                          data.y[data.train_rows])  # bear never in training
    logp = _fit(data)(data.x)
    assert torch.isfinite(logp).all()
    np.testing.assert_allclose(logp[:, 1].exp().numpy(), 1.0 / (600 + 3), rtol=1e-12)


def test_state_dict_round_trip_needs_no_pickle() -> None:
    data = _data()
    model = _fit(data)
    state = model.state_dict()
    assert set(state) == {"coef", "intercept", "present", "floor", "chosen_c", "grid",
                          "val_nll"}
    assert state["present"].dtype == torch.bool
    shell = model_from_spec(model.spec())
    assert isinstance(shell, LogisticClassifier)
    shell.load_state_dict(state)
    torch.testing.assert_close(shell(data.x), model(data.x), rtol=0, atol=0)


@pytest.mark.parametrize(("section", "match"), [
    ({"grid": []}, "logistic.grid"),
    ({"grid": [1.0, -0.1]}, "logistic.grid"),
    ({"grid": 1.0}, "logistic.grid"),
    ({"max_iter": 0}, "logistic.max_iter"),
    ({"C": 1.0}, "logistic.C"),
])
def test_config_errors_name_the_field(section: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config({"methods": ["logistic"], "logistic": section})


@parametrize_with_checks([SelfDistillClassifier("logistic", random_state=0)])
def test_sklearn_estimator_checks(estimator: Any, check: Any) -> None:
    """The estimator contract holds for logistic too (hmm is order-dependent by design)."""
    check(estimator)

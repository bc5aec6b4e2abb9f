"""The causal Gaussian HMM (nn.classic.hmm, methods.hmm.fit): causality, agreement with
hmmlearn, recovery, storage, bad inputs. The method and predict paths: test_methods_hmm.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hmmlearn.hmm import GaussianHMM
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load, save
from threadpoolctl import threadpool_limits

from selfdistill.methods import hmm as hmm_method
from selfdistill.methods.hmm_em import FlooredGaussianHMM
from selfdistill.nn.classic import hmm


def random_params(rng: np.random.Generator, k: int = 3, f: int = 2, c: int = 3) -> hmm.HMMParams:
    """A valid model with random, non-degenerate parameters."""
    return hmm.HMMParams(
        startprob=rng.dirichlet(np.ones(k)),
        transmat=rng.dirichlet(np.ones(k), size=k),
        means=rng.normal(0.0, 1.5, (k, f)),
        variances=rng.uniform(0.3, 2.0, (k, f)),
        state_to_class=rng.dirichlet(np.ones(c), size=k),
    )


def simulate(params: hmm.HMMParams, n: int, rng: np.random.Generator,
             ) -> tuple[np.ndarray, np.ndarray]:
    """(n, F) observations and (n,) hidden states drawn from ``params``."""
    states = np.empty(n, dtype=np.int64)
    states[0] = rng.choice(params.n_states, p=params.startprob)
    for t in range(1, n):
        states[t] = rng.choice(params.n_states, p=params.transmat[states[t - 1]])
    noise = rng.standard_normal((n, params.n_features))
    return params.means[states] + noise * np.sqrt(params.variances[states]), states


def hmmlearn_model(params: hmm.HMMParams) -> GaussianHMM:
    """An hmmlearn model holding exactly ``params`` (no fitting)."""
    model = GaussianHMM(n_components=params.n_states, covariance_type="diag")
    model.n_features = params.n_features
    model.startprob_ = np.array(params.startprob)
    model.transmat_ = np.array(params.transmat)
    model.means_ = np.array(params.means)
    model.covars_ = np.array(params.variances)
    return model


SIM = hmm.HMMParams(  # three sticky regimes: bull (up drift), bear (down, volatile), sideways
    startprob=np.full(3, 1 / 3),
    transmat=np.array([[0.97, 0.015, 0.015], [0.015, 0.97, 0.015], [0.015, 0.015, 0.97]]),
    means=np.array([[0.8, -0.3], [-0.8, 0.9], [0.0, -0.6]]),
    variances=np.array([[0.6, 0.4], [1.0, 0.8], [0.3, 0.2]]),
    state_to_class=np.eye(3),
)


@pytest.fixture(scope="module")
def regime_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x_train, y_train = simulate(SIM, 2000, rng)
    x_test, y_test = simulate(SIM, 2000, rng)
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="module")
def fitted(regime_data: tuple[np.ndarray, ...]) -> hmm.HMMParams:
    x_train, y_train, _, _ = regime_data
    return hmm_method.fit(x_train, y_train, n_states=3, n_classes=3, seed=0, n_init=3)


# (a) causality --------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None, database=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), cut=st.integers(0, 39),
       extra=st.integers(0, 10), scale=st.sampled_from([1.0, 1e3]))
def test_future_rows_never_change_the_past(seed: int, n: int, cut: int, extra: int,
                                           scale: float) -> None:
    rng = np.random.default_rng(seed)
    params = random_params(rng, k=int(rng.integers(2, 5)), f=int(rng.integers(1, 4)))
    x = rng.normal(0.0, 2.0, (n, params.n_features))
    t = min(cut, n - 1)
    changed = np.concatenate([x, rng.normal(0.0, 1.0, (extra, params.n_features))])
    changed[t + 1:] = rng.normal(0.0, scale, changed[t + 1:].shape)  # rewrite the future
    base = hmm.filter_proba(params, x)
    for variant in (changed, x[: t + 1]):
        np.testing.assert_array_equal(hmm.filter_proba(params, variant)[: t + 1], base[: t + 1])
        np.testing.assert_array_equal(hmm.predict_proba(params, variant)[: t + 1],
                                      hmm.predict_proba(params, x)[: t + 1])


def test_long_prefixes_are_bit_identical() -> None:
    """Long arrays take other numpy code paths than the short ones drawn above."""
    rng = np.random.default_rng(11)
    x, _ = simulate(SIM, 3000, rng)
    full = hmm.predict_proba(SIM, x)
    for t in (0, 6, 999, 2500):
        np.testing.assert_array_equal(hmm.predict_proba(SIM, x[: t + 1]), full[: t + 1])


def test_hmmlearn_smoothing_looks_ahead() -> None:
    """Why filter_proba exists: hmmlearn's predict_proba at t moves when later rows move."""
    x = np.repeat(SIM.means[:1], 60, axis=0)  # bull throughout
    x[30] = SIM.means[:2].mean(axis=0)  # halfway between bull and bear: the future decides
    changed = x.copy()
    changed[31:] = SIM.means[1]  # the future now sits in the bear state
    smoothed = hmmlearn_model(SIM).predict_proba
    assert np.abs(smoothed(x)[30] - smoothed(changed)[30]).max() > 1e-3
    np.testing.assert_array_equal(hmm.filter_proba(SIM, x)[:31],
                                  hmm.filter_proba(SIM, changed)[:31])


def test_lengths_restart_each_sequence() -> None:
    rng = np.random.default_rng(2)
    params = random_params(rng)
    x = rng.normal(size=(30, 2))
    joined = hmm.filter_proba(params, x, lengths=[12, 18])
    np.testing.assert_array_equal(joined[:12], hmm.filter_proba(params, x[:12]))
    np.testing.assert_array_equal(joined[12:], hmm.filter_proba(params, x[12:]))


# (b) reference: smoothed == filtered at the final observation ---------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filter_matches_hmmlearn_at_last_row(seed: int) -> None:
    rng = np.random.default_rng(seed)
    params = random_params(rng, k=3 + seed, f=1 + seed)
    x, _ = simulate(params, 80, rng)
    alpha = hmm.filter_proba(params, x)
    model = hmmlearn_model(params)
    for t in (0, 1, 5, 17, 40, 79):
        np.testing.assert_allclose(alpha[t], model.predict_proba(x[: t + 1])[-1],
                                   rtol=0, atol=1e-8)


def test_filter_survives_far_outliers() -> None:
    """Emissions of -1e12 in log space must not underflow to NaN (log-space normalisation)."""
    x = np.array([[0.0, 0.0], [1e6, -1e6], [0.0, 0.0]])
    alpha = hmm.filter_proba(SIM, x)
    assert np.isfinite(alpha).all()
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, atol=1e-12)


# (c) recovery and determinism -----------------------------------------------------------------

def test_recovers_simulated_regimes(fitted: hmm.HMMParams,
                                    regime_data: tuple[np.ndarray, ...]) -> None:
    _, _, x_test, y_test = regime_data
    accuracy = (hmm.predict_proba(fitted, x_test).argmax(axis=1) == y_test).mean()
    oracle = (hmm.predict_proba(SIM, x_test).argmax(axis=1) == y_test).mean()
    assert accuracy > 0.8  # chance is about 1/3
    assert accuracy > oracle - 0.05  # close to the filter with the true parameters


def test_fit_is_deterministic_for_a_seed(fitted: hmm.HMMParams,
                                         regime_data: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, _, _ = regime_data
    again = hmm_method.fit(x_train, y_train, n_states=3, n_classes=3, seed=0, n_init=3)
    for name, value in hmm.to_arrays(fitted).items():
        np.testing.assert_array_equal(value, getattr(again, name), err_msg=name)


def test_more_inits_never_lower_the_training_likelihood(
        regime_data: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, _, _ = regime_data
    x, y = x_train[:600], y_train[:600]

    def train_ll(n_init: int) -> float:
        params = hmm_method.fit(x, y, n_states=3, n_classes=3, seed=5, n_init=n_init, n_iter=30)
        return float(hmmlearn_model(params).score(x))

    assert train_ll(3) >= train_ll(1) - 1e-9  # init 1 is shared, the best of 3 wins


def test_variance_floor_holds_for_a_constant_feature() -> None:
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.normal(size=300), np.full(300, 2.5)])
    params = hmm_method.fit(x, rng.integers(0, 3, 300), n_states=2, n_classes=3, seed=0, n_init=1)
    assert (params.variances[:, 1] >= 1e-3).all()  # constant column: floor 1e-3 x 1
    assert np.isfinite(hmm.predict_proba(params, x)).all()


def test_em_keeps_the_floor_where_plain_em_collapses() -> None:
    """Regression: hmmlearn's min_covar only shapes the init; a clipped value collapsed a state."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2))
    x[::3, 0] = 5.0  # a third of the rows sit on the scaler's clip value
    smallest = {}
    for cls in (GaussianHMM, FlooredGaussianHMM):
        model = cls(n_components=3, covariance_type="diag", n_iter=50, random_state=0)
        model.variance_floor = np.full(2, 1e-3)
        with threadpool_limits(limits=1):  # k-means on contended OpenMP threads crawls
            model.fit(x)
        smallest[cls] = np.diagonal(model.covars_, axis1=1, axis2=2).min()
    assert smallest[GaussianHMM] < 1e-4  # the collapse this guards against
    assert smallest[FlooredGaussianHMM] >= 1e-3


# (d) distributions ----------------------------------------------------------------------------

def test_state_to_class_comes_from_filtered_training_posteriors(
        fitted: hmm.HMMParams, regime_data: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, _, _ = regime_data
    alpha = hmm.filter_proba(fitted, x_train)
    counts = alpha.T @ np.eye(3)[y_train] + 1.0  # soft counts + Laplace prior 1
    np.testing.assert_allclose(fitted.state_to_class, counts / counts.sum(1, keepdims=True),
                               rtol=0, atol=1e-12)


def test_probabilities_are_distributions(fitted: hmm.HMMParams,
                                         regime_data: tuple[np.ndarray, ...]) -> None:
    _, _, x_test, _ = regime_data
    assert (fitted.state_to_class > 0).all()
    np.testing.assert_allclose(fitted.state_to_class.sum(axis=1), 1.0, atol=1e-12)
    proba = hmm.predict_proba(fitted, x_test)
    assert proba.shape == (len(x_test), 3)
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_more_states_than_classes() -> None:
    rng = np.random.default_rng(4)
    x, states = simulate(SIM, 400, rng)
    params = hmm_method.fit(x, states % 2, n_states=3, n_classes=2, seed=1, n_init=1)
    assert params.state_to_class.shape == (3, 2)
    assert hmm.predict_proba(params, x).shape == (400, 2)


# storage --------------------------------------------------------------------------------------

def test_safetensors_round_trip(fitted: hmm.HMMParams) -> None:
    loaded = hmm.from_arrays(load(save(hmm.to_arrays(fitted))))
    for name, value in hmm.to_arrays(fitted).items():
        np.testing.assert_array_equal(getattr(loaded, name), value)


def test_params_are_read_only(fitted: hmm.HMMParams) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        fitted.means = np.zeros((3, 2))  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        fitted.means[0, 0] = 1.0


@pytest.mark.parametrize(("change", "match"), [
    (lambda d: d.pop("transmat"), "missing \\['transmat'\\]"),
    (lambda d: d.update(extra=np.zeros(3)), "unexpected \\['extra'\\]"),
    (lambda d: d.update(means=np.zeros((4, 2))), "means has shape \\(4, 2\\)"),
    (lambda d: d.update(transmat=np.ones((3, 3))), "transmat rows must be probability"),
    (lambda d: d.update(variances=np.full((3, 2), np.nan)), "variances holds NaN"),
    (lambda d: d.update(variances=np.zeros((3, 2))), "variances must all be > 0"),
])
def test_from_arrays_rejects_bad_arrays(change: object, match: str) -> None:
    arrays = hmm.to_arrays(SIM)
    change(arrays)  # type: ignore[operator]
    with pytest.raises(ValueError, match=match):
        hmm.from_arrays(arrays)


# (e) bad inputs -------------------------------------------------------------------------------

X_OK = np.random.default_rng(0).normal(size=(50, 2))
Y_OK = np.arange(50) % 3


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"x_train": np.where(np.eye(50, 2) > 0, np.nan, X_OK)},
     "2 NaN/inf value\\(s\\), first at row 0, column 0"),
    ({"x_train": X_OK[:, 0]}, "x_train must be 2-D"),
    ({"y_train": Y_OK[:-1]}, "y_train must have shape \\(50,\\)"),
    ({"y_train": Y_OK + 1}, "class id 3; valid ids are 0..2"),
    ({"n_states": 1}, "n_states must be an integer >= 2, got 1"),
    ({"n_classes": 1}, "n_classes must be an integer >= 2, got 1"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"n_init": 0}, "n_init must be an integer >= 1, got 0"),
    ({"covariance": "full"}, "covariance 'full' is not one of diag"),
    ({"lengths": [20, 20]}, "lengths sum to 40 but x has 50 rows"),
    ({"lengths": [50, 0]}, "positive integers"),
    ({"var_floor": 0.0}, "var_floor must be a finite number > 0"),
    ({"n_states": 60}, "x_train has 50 rows; fitting 60 states needs more"),
])
def test_fit_rejects_bad_inputs(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"x_train": X_OK, "y_train": Y_OK, "n_states": 2, "n_classes": 3,
                               "seed": 0, "n_init": 1}
    with pytest.raises(ValueError, match=match):
        hmm_method.fit(**(args | kwargs))


@pytest.mark.parametrize(("x", "match"), [
    (np.zeros((5, 3)), "x has 3 features, the model expects 2"),
    (np.array([[0.0, np.inf]]), "NaN/inf"),
    (np.zeros((0, 2)), "at least one row"),
    (np.zeros((2, 2, 2)), "must be 2-D"),
])
def test_filter_rejects_bad_inputs(x: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        hmm.filter_proba(SIM, x)


# the NumPy models need no torch --------------------------------------------------------------

def test_the_numpy_models_import_no_torch_and_no_fitting_library() -> None:
    """Their own imports (the package ``selfdistill.nn`` above them loads torch for the MLP)."""
    import grimp

    graph = grimp.build_graph("selfdistill", include_external_packages=True, cache_dir=None)
    assert graph.chain_exists(importer="selfdistill.nn.classic.modules", imported="torch")
    for module in ("hmm", "logistic", "checks"):
        for heavy in ("torch", "hmmlearn", "sklearn"):
            assert not graph.chain_exists(importer=f"selfdistill.nn.classic.{module}",
                                          imported=heavy), (module, heavy)

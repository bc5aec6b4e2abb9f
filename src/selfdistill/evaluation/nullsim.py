"""Simulations of the verdict engine under the null (and under an alternative).

Each scenario draws per-bar differentials ``d[s, t]`` for ``n_seeds`` seeds over
``n_folds`` test blocks of ``bars_per_fold`` bars, with true mean ``effect``:

* ``iid``: a shared bar component, independent across bars, plus seed noise;
* ``ar1(0.5)`` / ``ar1(0.9)``: the shared bar component is AR(1) with that rho
  (overlapping label windows and persistent regimes look like this), buried in
  bar-to-bar noise;
* ``clustered``: 5 seeds share the bars (AR(1) rho 0.5) and each (fold, seed)
  cell adds its own training shift, as in the shipped walk-forward config
  (seeds of a fold share the test rows).

:func:`error_rates` runs the engine on many draws and returns the share of
"significant" calls (the false-positive rate when ``effect == 0``, the power
otherwise) and the coverage of the interval. :func:`sharpe_error_rates` and
:func:`auroc_error_rates` do the same for the Sharpe-ratio and AUROC tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selfdistill.evaluation.ranking import auroc_comparison
from selfdistill.evaluation.statistics import mean_difference_batch, sharpe_difference_test

__all__ = ["SCENARIOS", "Scenario", "auroc_error_rates", "draw", "error_rates",
           "sharpe_error_rates"]


@dataclass(frozen=True)
class Scenario:
    """A null model of per-bar differentials."""

    name: str
    rho: float
    n_seeds: int
    cell_sd: float  # sd of each (fold, seed) cell's training shift


SCENARIOS = {
    "iid": Scenario("iid", 0.0, 1, 0.0),
    "ar1(0.5)": Scenario("ar1(0.5)", 0.5, 1, 0.0),
    "ar1(0.9)": Scenario("ar1(0.9)", 0.9, 1, 0.0),
    "clustered": Scenario("clustered", 0.5, 5, 0.15),
}


def ar1(rng: np.random.Generator, shape: tuple[int, ...], rho: float) -> np.ndarray:
    """Unit-variance stationary AR(1) series along the last axis."""
    e = rng.standard_normal(shape)
    if rho == 0:
        return e
    x = np.empty(shape)
    x[..., 0] = e[..., 0] / np.sqrt(1 - rho**2)
    for t in range(1, shape[-1]):
        x[..., t] = rho * x[..., t - 1] + e[..., t]
    return x * np.sqrt(1 - rho**2)


def draw(scenario: Scenario, *, n_sims: int, n_folds: int, bars_per_fold: int,
         effect: float = 0.0, seed: int = 0) -> np.ndarray:
    """(n_sims, n_seeds, T) differentials of one scenario, T = n_folds * bars_per_fold."""
    rng = np.random.default_rng(seed)
    n_bars = n_folds * bars_per_fold
    shared = ar1(rng, (n_sims, 1, n_bars), scenario.rho)
    d = shared + 0.5 * rng.standard_normal((n_sims, scenario.n_seeds, n_bars))
    if scenario.cell_sd > 0:
        cells = scenario.cell_sd * rng.standard_normal((n_sims, scenario.n_seeds, n_folds))
        d = d + np.repeat(cells, bars_per_fold, axis=-1)
    return d + effect


def error_rates(scenario: Scenario, *, n_sims: int, n_folds: int, bars_per_fold: int = 250,
                effect: float = 0.0, seed: int = 0, alpha: float = 0.05
                ) -> dict[str, float]:
    """Share of p < alpha, and coverage of the (1 - alpha) interval of the true mean."""
    d = draw(scenario, n_sims=n_sims, n_folds=n_folds, bars_per_fold=bars_per_fold,
             effect=effect, seed=seed)
    out = mean_difference_batch(d, fold_sizes=[bars_per_fold] * n_folds, level=1 - alpha)
    covered = (out["ci_low"] <= effect) & (effect <= out["ci_high"])
    return {"rejections": float((out["p_value"] < alpha).mean()),
            "coverage": float(covered.mean())}


def persistent_positions(rng: np.random.Generator, n: int, hold: float = 20.0) -> np.ndarray:
    """(n,) positions in {-1, 0, 1}, redrawn with probability 1 / hold at each bar."""
    redraw = rng.random(n) < 1.0 / hold
    redraw[0] = True
    values = rng.integers(-1, 2, size=n).astype(np.float64)
    last = np.maximum.accumulate(np.where(redraw, np.arange(n), 0))
    return values[last]


def sharpe_error_rates(*, n_sims: int, n_bars: int, n_seeds: int = 1, seed: int = 0,
                       alpha: float = 0.05) -> dict[str, float]:
    """Two strategies with equal true Sharpe (random persistent positions on one
    drifting, heavy-tailed asset): share of "different" calls and of untestable draws."""
    rng = np.random.default_rng(seed)
    hits = untestable = 0
    for _ in range(n_sims):
        asset = 1e-3 * rng.standard_t(5, size=n_bars) + 2e-4
        a = np.stack([persistent_positions(rng, n_bars) * asset for _ in range(n_seeds)])
        b = np.stack([persistent_positions(rng, n_bars) * asset for _ in range(n_seeds)])
        res = sharpe_difference_test(a, b)
        untestable += not res.testable
        hits += res.p_value is not None and res.p_value < alpha
    return {"rejections": hits / n_sims, "untestable": untestable / n_sims}


def auroc_error_rates(*, n_sims: int, n_bars: int, rho: float, seed: int = 0,
                      alpha: float = 0.05) -> dict[str, float]:
    """Scores unrelated to persistent errors (true AUROC 0.5, equal AUROCs): coverage of
    the AUROC interval and share of "different" calls for the paired difference."""
    rng = np.random.default_rng(seed)
    covered = hits = 0
    for _ in range(n_sims):
        error = ar1(rng, (n_bars,), rho) > 0.3
        scores = {"a": ar1(rng, (n_bars,), rho), "b": ar1(rng, (n_bars,), rho)}
        out = auroc_comparison(scores, error, reference="b", level=1 - alpha)
        a, diff = out["a"]["auroc"], out["a"]["vs_reference"]
        covered += a["ci_low"] is not None and a["ci_low"] <= 0.5 <= a["ci_high"]
        hits += diff["p_value"] is not None and diff["p_value"] < alpha
    return {"coverage": covered / n_sims, "rejections": hits / n_sims}

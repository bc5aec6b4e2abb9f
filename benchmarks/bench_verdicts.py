"""The verdict engine's error rates, simulated: false-positive rate, coverage and power.

Prints, for every null scenario (iid, AR(1) rho 0.5 and 0.9 per-bar differentials,
fold-clustered cells with 5 seeds sharing the bars) and 1, 2, 3, 4, 5, 10 and 20
folds of 250 test bars, the share of draws the engine calls "better" or "worse"
(nominal 0.05) and the coverage of its 95% interval (nominal 0.95); then the power for
a stated effect, the Sharpe-ratio test under equal Sharpe ratios, the AUROC interval's
coverage, and the old engine's figures for comparison (percentile bootstrap over cells).

    python benchmarks/bench_verdicts.py [--sims 2000]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from selfdistill.evaluation import nullsim

FOLDS = (1, 2, 3, 4, 5, 10, 20)


def _old_engine_fpr(n_cells: int, sims: int, seed: int) -> float:
    """The first engine: percentile bootstrap of the mean over n iid cells, >= 3 pairs."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(sims):
        d = rng.standard_normal(n_cells)
        boot = d[rng.integers(0, n_cells, (1000, n_cells))].mean(axis=1)
        low, high = np.quantile(boot, [0.025, 0.975])
        hits += n_cells >= 3 and (low > 0 or high < 0)
    return hits / sims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=2000, help="draws per cell of the table")
    sims = parser.parse_args().sims
    mc = 3 * math.sqrt(0.05 * 0.95 / sims)
    t0 = time.perf_counter()
    print(f"false-positive rate (nominal 0.050, Monte-Carlo +-{mc:.3f}) / coverage "
          f"(nominal 0.950); {sims} draws each, 250 test bars per fold")
    print(f"{'scenario':<11}" + "".join(f"{f'{n} fold' + 's' * (n > 1):>15}" for n in FOLDS))
    for name, scenario in nullsim.SCENARIOS.items():
        cells = []
        for k, n in enumerate(FOLDS):
            r = nullsim.error_rates(scenario, n_sims=sims, n_folds=n, seed=1000 + k)
            cells.append(f"{r['rejections']:.3f}/{r['coverage']:.3f}")
        print(f"{name:<11}" + "".join(f"{c:>15}" for c in cells))
    power = nullsim.error_rates(nullsim.SCENARIOS["iid"], n_sims=sims, n_folds=4,
                                effect=0.12, seed=7)
    print(f"power: a mean difference of 0.12 (0.11 per-bar SD) over 4 x 250 iid bars is "
          f"found {power['rejections']:.3f} of the time")
    sharpe = nullsim.sharpe_error_rates(n_sims=min(sims, 500), n_bars=1000, seed=8)
    print(f"Sharpe test, equal Sharpe ratios (positions held ~20 bars, t(5) returns with "
          f"drift), 1000 bars: false-positive rate {sharpe['rejections']:.3f}")
    auroc = nullsim.auroc_error_rates(n_sims=min(sims, 500), n_bars=500, rho=0.9, seed=9)
    print(f"AUROC, scores unrelated to AR(1) rho 0.9 errors, 500 bars: interval coverage "
          f"{auroc['coverage']:.3f}, paired difference false-positive rate "
          f"{auroc['rejections']:.3f}")
    old = {n: _old_engine_fpr(n, min(sims, 1000), seed=n) for n in (3, 4, 5, 10, 20)}
    print("old engine (percentile bootstrap over n iid cells), false-positive rate: "
          + ", ".join(f"n={n}: {v:.3f}" for n, v in old.items()))
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()

"""Bootstrap intervals and paired comparisons with plain verdicts.

The unit of resampling is one (fold, seed) cell: every metric value of a
method on one fold with one seed. An aggregate is the mean over cells with a
percentile-bootstrap 95% interval. A paired comparison takes two methods
evaluated on the *same* cells, bootstraps the mean of their per-cell
differences, and calls the result

* ``better`` when the interval of (candidate - reference) lies entirely on the
  good side of zero (above for accuracy, below for NLL / ECE / Brier),
* ``worse`` when it lies entirely on the bad side,
* ``no significant difference`` otherwise, and whenever there are fewer than
  :data:`MIN_PAIRS` pairs (a bootstrap of one or two values claims far too much).

Cells within a fold share the test rows, so they are not independent; the
interval is conditional on the folds evaluated, which is why comparisons are
paired: the fold's difficulty cancels in the difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from selfdistill.errors import ConfigError, DataError

__all__ = [
    "BETTER",
    "LOWER_IS_BETTER",
    "MIN_PAIRS",
    "NO_DIFFERENCE",
    "WORSE",
    "Comparison",
    "Interval",
    "bootstrap_interval",
    "higher_is_better",
    "paired_comparison",
    "verdict",
]

BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no significant difference"
#: Fewest pairs for a verdict other than "no significant difference".
MIN_PAIRS = 3

#: Metrics where a smaller value is the better one.
LOWER_IS_BETTER = frozenset({
    "nll", "ece", "brier", "max_drawdown", "max_drawdown_bars", "max_drawdown_days",
    "annual_vol", "turnover", "turnover_per_year",
})


def higher_is_better(metric: str) -> bool:
    """Whether larger values of ``metric`` are better (see :data:`LOWER_IS_BETTER`)."""
    return metric not in LOWER_IS_BETTER


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with a bootstrap interval (None bounds when n < 2)."""

    mean: float
    ci_low: float | None
    ci_high: float | None
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """Candidate minus reference, paired on the same cells."""

    mean_diff: float
    ci_low: float | None
    ci_high: float | None
    n: int
    verdict: str

    def to_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


def _clean(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise DataError(f"{what}: no values to summarise")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{what}: values must be finite, got {arr[~np.isfinite(arr)][:3]}")
    return arr


def _check_level(level: float, n_boot: int) -> None:
    if not 0.0 < level < 1.0:
        raise ConfigError(f"confidence level {level} must be in (0, 1), e.g. 0.95")
    if n_boot < 1:
        raise ConfigError(f"evaluation.bootstrap must be >= 1 resamples, got {n_boot}")


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot,) means of resamples with replacement, in bounded memory."""
    rng = np.random.default_rng(seed)
    n = len(values)
    out = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)  # at most ~16 MB of indices at a time
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def bootstrap_interval(values: Sequence[float] | np.ndarray, *, n_boot: int = 2000,
                       level: float = 0.95, seed: int = 0) -> Interval:
    """Mean and percentile-bootstrap interval of ``values`` (one per fold x seed cell).

    Args:
        values: (n,) finite metric values.
        n_boot: bootstrap resamples.
        level: interval coverage, 0.95 for a 95% interval.
        seed: seed of the resampling (results are reproducible).
    """
    _check_level(level, n_boot)
    arr = _clean(values, "bootstrap_interval")
    mean = float(arr.mean())
    if arr.size < 2:
        return Interval(mean, None, None, int(arr.size))
    means = _bootstrap_means(arr, n_boot, seed)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(mean, float(low), float(high), int(arr.size))


def verdict(ci_low: float | None, ci_high: float | None, *, higher_better: bool) -> str:
    """``better`` / ``worse`` / ``no significant difference`` for an interval of differences."""
    if ci_low is None or ci_high is None or math.isnan(ci_low) or math.isnan(ci_high):
        return NO_DIFFERENCE
    if ci_low > 0:
        return BETTER if higher_better else WORSE
    if ci_high < 0:
        return WORSE if higher_better else BETTER
    return NO_DIFFERENCE


def paired_comparison(candidate: Sequence[float] | np.ndarray,
                      reference: Sequence[float] | np.ndarray, *, metric: str,
                      n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Comparison:
    """Paired bootstrap of ``mean(candidate - reference)`` over matched cells.

    Args:
        candidate / reference: (n,) metric values on the same cells, in the same order.
        metric: the metric name; decides the direction of the verdict.
        n_boot / level / seed: as in :func:`bootstrap_interval`.
    """
    a = _clean(candidate, f"paired_comparison({metric}) candidate")
    b = _clean(reference, f"paired_comparison({metric}) reference")
    if a.shape != b.shape:
        raise DataError(f"paired_comparison({metric}): {a.size} candidate values but "
                        f"{b.size} reference values; pairs must match cell by cell")
    diff = bootstrap_interval(a - b, n_boot=n_boot, level=level, seed=seed)
    said = verdict(diff.ci_low, diff.ci_high, higher_better=higher_is_better(metric))
    if diff.n < MIN_PAIRS:
        said = NO_DIFFERENCE
    return Comparison(diff.mean, diff.ci_low, diff.ci_high, diff.n, said)

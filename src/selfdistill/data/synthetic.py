"""A synthetic regime-switching market that knows its true regimes.

The offline default data source. A Markov chain moves between bull (0), bear
(1) and sideways (2): each bar it stays with probability ``persistence``,
otherwise it jumps to one of the other two regimes with equal probability.
Within a regime:

* log volatility follows an AR(1) process pulled towards the regime's level,
  so volatility clusters (calm and wild stretches) and drifts to the new level
  over a few dozen bars after a switch rather than jumping;
* log returns are the regime's drift plus volatility times Student-t(5) noise
  (fat tails), and the price is ``start_price * exp(cumsum(returns))``, so it
  stays positive;
* open = previous close; high / low extend the body by a random intrabar range
  that scales with volatility, so low <= open, close <= high and low > 0;
* volume is lognormal around the regime's level and rises with volatility.

The default parameters (per bar) resemble hourly BTC: regimes last 200 bars on
average at persistence 0.995. A classifier on trailing returns, volatility and
volume beats chance clearly but is far from perfect: the regimes are learnable,
not given away. The same parameters are used for any ``interval``; the interval
only sets the timestamps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from selfdistill.data.candles import validate_candles
from selfdistill.data.intervals import interval_to_timedelta
from selfdistill.errors import ConfigError

__all__ = ["DEFAULT_PARAMS", "REGIME_NAMES", "RegimeParams", "generate_market",
           "simulate_regimes"]

logger = logging.getLogger(__name__)

#: Class names in label order: 0 = bull, 1 = bear, 2 = sideways.
REGIME_NAMES: tuple[str, ...] = ("bull", "bear", "sideways")


@dataclass(frozen=True)
class RegimeParams:
    """How one regime moves, per bar.

    Attributes:
        drift: mean log return per bar (e.g. 0.0006 is +0.06 % a bar).
        vol: typical standard deviation of the log return per bar (> 0); the
            actual volatility wanders around it (volatility clustering).
        volume: median traded volume per bar (> 0).
    """

    drift: float
    vol: float
    volume: float


#: Bull, bear, sideways: trends drift +-0.15 % a bar (so the market has no net
#: drift in the long run), bears are the most volatile and most traded,
#: sideways is calm and thinly traded. The drift is strong enough that the
#: default forward-return labels (h = 12) are predictable from causal features
#: well above the majority rate (~0.45 vs ~0.36 for a logistic regression) yet
#: far from trivially, which is what makes the synthetic market a useful bench.
DEFAULT_PARAMS: tuple[RegimeParams, ...] = (
    RegimeParams(drift=0.0015, vol=0.007, volume=1200.0),
    RegimeParams(drift=-0.0015, vol=0.010, volume=1500.0),
    RegimeParams(drift=0.0, vol=0.0045, volume=700.0),
)

_VOL_PERSISTENCE = 0.97  # AR(1) coefficient of log volatility
_VOL_OF_VOL = 0.10  # std of the log-volatility shock per bar
_T_DOF = 5.0  # Student-t degrees of freedom of return shocks
_RANGE_SCALE = 0.6  # intrabar wick length in units of the bar's volatility
_VOLUME_NOISE = 0.35  # std of log volume around its level
_VOLUME_VOL_BETA = 0.8  # elasticity of volume to excess volatility
_AR_BLOCK = 128  # block length of the vectorised AR(1) recursion
_COLUMNS = ("open", "high", "low", "close", "volume")


def generate_market(
    n_bars: int = 20_000,
    *,
    seed: int = 0,
    persistence: float = 0.995,
    interval: str = "60",
    start: str = "2022-01-01",
    start_price: float = 30_000.0,
    params: Sequence[RegimeParams] | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Simulate a regime-switching market.

    Args:
        n_bars: number of candles (>= 2).
        seed: seed of the numpy Generator; same seed, same market.
        persistence: probability of staying in the current regime each bar, in
            [0, 1]; the mean regime length is ``1 / (1 - persistence)`` bars.
        interval: bar interval (Bybit spelling); sets the timestamps only.
        start: open time of the first bar (naive = UTC); for "M" bars start at
            the first month start on or after it.
        start_price: open of the first bar (> 0).
        params: bull, bear and sideways :class:`RegimeParams`, in that order;
            :data:`DEFAULT_PARAMS` when None.

    Returns:
        ``(candles, regime)``: validated candles (no gaps) and the true regime of
        every bar, an int8 Series (0 = bull, 1 = bear, 2 = sideways) named
        ``regime`` on the same index.

    Raises:
        ConfigError: an argument is out of range (the message says what is valid).
    """
    regime_params = _check_args(n_bars, persistence, start_price, params)
    index = _bar_index(start, n_bars, interval)
    rng = np.random.default_rng(seed)
    regimes = simulate_regimes(n_bars, persistence, rng).astype(np.int8)
    ohlcv = np.empty((5, n_bars))  # (5, n): the candles' columns, written in place
    log_sigma, excess = _volatility(regimes, regime_params, rng)
    _prices(ohlcv, regimes, log_sigma, regime_params, start_price, rng)
    del log_sigma
    # log volume: the regime's level, more when volatility runs above its level, noise
    log_volume = np.log([p.volume for p in regime_params])[regimes]
    excess *= _VOLUME_VOL_BETA
    log_volume += excess
    del excess
    noise = rng.standard_normal(n_bars)
    noise *= _VOLUME_NOISE
    log_volume += noise
    del noise
    np.exp(log_volume, out=ohlcv[4])
    del log_volume
    frame = pd.DataFrame(ohlcv.T, index=index, columns=list(_COLUMNS), copy=False)
    candles = validate_candles(frame, interval=interval, gaps="error", source="synthetic market",
                               copy=False)
    logger.debug("synthetic market: %d bars, regime shares %s", n_bars,
                 np.bincount(regimes, minlength=3) / n_bars)
    return candles, pd.Series(regimes, index=candles.index, name="regime", copy=False)


def _volatility(regimes: np.ndarray, params: Sequence[RegimeParams],
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n,) log volatility, an AR(1) pulled to each regime's level, and its excess over it."""
    log_level = np.log([p.vol for p in params])[regimes]  # (n,) where log vol is pulled to
    noise = rng.standard_normal(len(regimes))
    noise *= _VOL_OF_VOL
    log_sigma = _ar1(log_level, _VOL_PERSISTENCE, noise)
    del noise
    np.subtract(log_sigma, log_level, out=log_level)
    return log_sigma, log_level


def _prices(ohlcv: np.ndarray, regimes: np.ndarray, log_sigma: np.ndarray,
            params: Sequence[RegimeParams], start_price: float, rng: np.random.Generator
            ) -> None:
    """Write open, high, low, close (rows 0..3 of ``ohlcv``, (5, n)) in place.

    Close is ``start_price * exp(cumsum(drift + sigma * t5))``; open is the previous
    close; the wicks extend the body by ``_RANGE_SCALE * sigma * |normal|``.
    """
    open_, high, low, close = ohlcv[0], ohlcv[1], ohlcv[2], ohlcv[3]
    sigma = np.exp(log_sigma)
    step = rng.standard_t(_T_DOF, len(regimes))
    step /= math.sqrt(_T_DOF / (_T_DOF - 2.0))  # unit-variance shocks
    step *= sigma
    step += np.array([p.drift for p in params])[regimes]
    np.cumsum(step, out=step)
    np.exp(step, out=step)
    np.multiply(start_price, step, out=close)
    del step
    open_[0] = start_price
    open_[1:] = close[:-1]
    sigma *= _RANGE_SCALE
    wicks = rng.standard_normal((2, len(regimes)))  # (2, n)
    np.abs(wicks, out=wicks)
    wicks *= sigma
    del sigma
    np.exp(wicks[0], out=wicks[0])
    np.maximum(open_, close, out=high)
    high *= wicks[0]
    np.negative(wicks[1], out=wicks[1])
    np.exp(wicks[1], out=wicks[1])
    np.minimum(open_, close, out=low)
    low *= wicks[1]


def simulate_regimes(n_bars: int, persistence: float, rng: np.random.Generator,
                     n_regimes: int = 3) -> np.ndarray:
    """Sample a symmetric Markov chain over ``n_regimes`` states.

    Each bar the chain stays with probability ``persistence`` and otherwise moves
    to one of the other states uniformly, so the first state is uniform (the
    stationary distribution) and regime lengths are geometric with mean
    ``1 / (1 - persistence)``. Sampled as run lengths, not bar by bar.

    Returns:
        (n_bars,) int64 array of states in ``[0, n_regimes)``.
    """
    first = int(rng.integers(n_regimes))
    if persistence >= 1.0:
        return np.full(n_bars, first, dtype=np.int64)
    chunk = int(n_bars * (1.0 - persistence) * 1.2) + 16
    lengths = rng.geometric(1.0 - persistence, size=chunk)
    while lengths.sum() < n_bars:
        lengths = np.concatenate([lengths, rng.geometric(1.0 - persistence, size=chunk)])
    n_runs = int(np.searchsorted(np.cumsum(lengths), n_bars)) + 1
    moves = rng.integers(1, n_regimes, size=n_runs - 1)  # never 0: a run ends in a switch
    states = (first + np.concatenate([[0], np.cumsum(moves)])) % n_regimes
    return np.repeat(states, lengths[:n_runs])[:n_bars].astype(np.int64)


def _ar1(level: np.ndarray, phi: float, noise: np.ndarray) -> np.ndarray:
    """x[t] = phi * x[t-1] + (1 - phi) * level[t] + noise[t], x[-1] = level[0].

    Vectorised within blocks of :data:`_AR_BLOCK` steps (a scaled cumulative sum;
    phi ** -_AR_BLOCK stays small), looping only over blocks.

    Args:
        level: (n,) the mean the process is pulled towards at each step.
        phi: persistence in [0, 1).
        noise: (n,) shocks; overwritten (used as scratch).

    Returns:
        (n,) the process.
    """
    drive = noise  # overwritten: the caller's noise is spent
    drive += (1.0 - phi) * level
    n = len(drive)
    powers = phi ** np.arange(1, _AR_BLOCK + 1)  # phi^(k+1) for k in block
    out = np.empty(n)
    prev = float(level[0])
    for start in range(0, n, _AR_BLOCK):
        block = drive[start:start + _AR_BLOCK]
        p = powers[:len(block)]
        within = np.cumsum(block / p) * p  # sum_j phi^(k-j) * drive[j]
        out[start:start + len(block)] = within + p * prev
        prev = float(out[start + len(block) - 1])
    return out


def _check_args(n_bars: int, persistence: float, start_price: float,
                params: Sequence[RegimeParams] | None) -> tuple[RegimeParams, ...]:
    if int(n_bars) != n_bars or n_bars < 2:
        raise ConfigError(f"n_bars must be an integer >= 2, got {n_bars!r}")
    if not 0.0 <= persistence <= 1.0:
        raise ConfigError(f"persistence must be a probability in [0, 1], got {persistence!r}")
    if not (math.isfinite(start_price) and start_price > 0):
        raise ConfigError(f"start_price must be a positive number, got {start_price!r}")
    chosen = tuple(DEFAULT_PARAMS if params is None else params)
    if len(chosen) != len(REGIME_NAMES):
        raise ConfigError(
            f"params needs one RegimeParams per regime ({', '.join(REGIME_NAMES)}), "
            f"got {len(chosen)}"
        )
    for name, p in zip(REGIME_NAMES, chosen, strict=True):
        if not (math.isfinite(p.drift) and p.vol > 0 and p.volume > 0
                and math.isfinite(p.vol) and math.isfinite(p.volume)):
            raise ConfigError(
                f"{name} regime params {p} are invalid: drift must be finite, "
                "vol and volume finite and > 0"
            )
    return chosen


def _bar_index(start: str, n_bars: int, interval: str) -> pd.DatetimeIndex:
    step = interval_to_timedelta(interval)
    try:
        first = pd.Timestamp(start)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"start {start!r} is not a date; use ISO-8601 such as '2022-01-01'"
        ) from exc
    first = first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")
    freq = "MS" if step is None else step
    try:
        return pd.date_range(first, periods=n_bars, freq=freq, name="open_time").as_unit("ns")
    except pd.errors.OutOfBoundsDatetime as exc:
        raise ConfigError(
            f"{n_bars} bars of interval {interval!r} from {first.date()} run past "
            f"{pd.Timestamp.max.date()}, the last date a timestamp can hold; use fewer bars, "
            "a shorter interval (e.g. interval: \"1\") or an earlier start") from exc

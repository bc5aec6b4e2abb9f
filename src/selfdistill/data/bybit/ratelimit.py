"""Politeness towards the exchange: a token-bucket rate limiter and a retry policy.

Both take their clock and sleep function as arguments, so tests can run the
backoff schedule of a long outage in microseconds and assert the exact waits.

Bybit allows 600 requests per 5 s per IP across the whole API; the default
here (10 requests/s, bursts of 10, so at most 60 in any 5 s) leaves the rest of
that budget to whatever else the user runs from the same address. A bucket
allows at most ``burst + rate * t`` requests in any ``t`` seconds.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BYBIT_LIMIT_PER_5S", "DEFAULT_RATE", "Cancelled", "RetryPolicy", "TokenBucket",
           "max_in_window"]

logger = logging.getLogger(__name__)

#: Default client-side request rate (requests per second).
DEFAULT_RATE = 10.0
#: Bybit's limit per IP over the whole API.
BYBIT_LIMIT_PER_5S = 600

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class Cancelled(Exception):
    """A wait was abandoned because the fetch it served was cancelled."""


class TokenBucket:
    """A thread-safe token bucket: at most ``burst + rate * t`` requests in any ``t`` seconds.

    Args:
        rate: tokens added per second (the sustained request rate), > 0.
        burst: bucket size (requests allowed back to back); default ``rate`` capped
            to [1, 10], so a raised rate does not also raise the burst.
        clock: monotonic time in seconds (``time.monotonic``).
        sleep: how to wait; tests pass a fake that advances ``clock``. The default
            (None) sleeps for real and wakes early when the caller's ``cancel`` is set.

    Example:
        >>> bucket = TokenBucket(rate=100.0, burst=2)
        >>> bucket.acquire(); bucket.acquire()  # two immediate tokens
    """

    def __init__(self, rate: float = DEFAULT_RATE, burst: float | None = None, *,
                 clock: Clock = time.monotonic, sleep: Sleep | None = None) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate!r}")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else min(10.0, max(1.0, self.rate))
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1 request, got {burst!r}")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()
        self._paused_until = float("-inf")

    def acquire(self, cancel: threading.Event | None = None) -> None:
        """Take one token, waiting as long as needed.

        Raises:
            Cancelled: ``cancel`` was set while waiting.
        """
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled
            wait = self._try_take()
            if wait <= 0:
                return
            if self._sleep is not None:
                self._sleep(wait)
            elif cancel is not None:
                cancel.wait(wait)
            else:
                time.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` (after the exchange said "too many visits")."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._tokens = 0.0

    def _try_take(self) -> float:
        """Take a token and return 0, or return how long to wait before trying again."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return self._paused_until - now
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0 - 1e-9:  # tolerance: float refills may fall short by 1 ulp
                self._tokens = max(0.0, self._tokens - 1.0)
                return 0.0
            return (1.0 - self._tokens) / self.rate


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for retryable exchange faults.

    Attempt ``k`` (0-based) that failed waits ``min(max_delay, base_delay * 2**k)``
    times a random factor in [0.5, 1] ("equal jitter": never zero, never in
    lock-step with other clients). When the exchange said when its limit resets
    (``X-Bapi-Limit-Reset-Timestamp``), the wait is until then plus up to
    ``base_delay`` of jitter, capped at ``max_wait``.

    Attributes:
        max_retries: retries after the first attempt (so ``max_retries + 1`` tries).
        base_delay: first backoff in seconds.
        max_delay: cap of the exponential backoff in seconds.
        max_wait: cap of a wait taken from the exchange's reset header, in seconds.
    """

    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_wait: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries!r}")
        if not (self.base_delay >= 0 and self.max_delay >= 0 and self.max_wait >= 0):
            raise ValueError("base_delay, max_delay and max_wait must be >= 0 seconds")

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based).

        Args:
            attempt: how many attempts failed before this one, minus one.
            retry_after: seconds until the exchange's limit resets, when it said so.
            rng: source of jitter (seeded in tests).
        """
        if retry_after is not None:
            return min(self.max_wait, max(0.0, retry_after) + rng.random() * self.base_delay)
        backoff = min(self.max_delay, self.base_delay * 2.0**attempt)
        return backoff * (0.5 + 0.5 * rng.random())


def max_in_window(stamps: list[float], window: float) -> int:
    """The largest number of ``stamps`` (seconds) that fall in any ``window``-second span.

    Used by tests and the benchmark to check that a limiter held.
    """
    ordered = sorted(stamps)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best

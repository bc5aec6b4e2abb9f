"""What the live loop counts, and how it answers ``/metrics`` (Prometheus text) and ``/health``.

Counters only grow; the latency histogram has fixed buckets, so memory stays constant
however long the loop runs. Latency is measured from the moment a confirmed candle's
message is read from the WebSocket to the moment its signal line is written (and
fsynced, with ``--out FILE``).
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from selfdistill.serving.http import Response

__all__ = ["COUNTERS", "LATENCY_BUCKETS", "LiveMetrics", "live_routes"]

#: Upper bounds (seconds) of the latency histogram buckets.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1.0)

#: Counter name -> help text (``selfdistill_live_<name>_total`` in /metrics).
COUNTERS = {
    "candles": "Closed candles processed (one signal line each).",
    "stream_candles": "Closed candles taken from the WebSocket stream.",
    "rest_candles": "Closed candles taken from REST backfill (outages, holes, start).",
    "unconfirmed": "Updates of still-open candles seen and ignored.",
    "duplicates": "Confirmed candles received again and ignored.",
    "conflicts": "Candles whose stream and REST values differed (REST wins).",
    "malformed": "Stream messages or candles skipped as malformed.",
    "reconnects": "WebSocket reconnects (drops, stale feeds, failed heartbeats).",
    "stale": "Reconnects because no kline push came within the stale limit.",
    "backfills": "REST backfills (start, reconnects, holes in the stream).",
    "model_reloads": "Models switched in by hot reload.",
    "model_refused": "New models refused by hot reload (the old one kept serving).",
    "store_commits": "Commits of streamed candles to the candle store.",
    "store_errors": "Failed commits to the candle store (kept and retried).",
}


@dataclass
class LiveMetrics:
    """Counters, gauges and the latency histogram of one live process."""

    interval_seconds: float
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    latency_count: int = 0
    connected: bool = False
    last_open: pd.Timestamp | None = None
    model_id: str = ""
    started: float = field(default_factory=time.time)

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def observe_latency(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def lag(self, now: float) -> float | None:
        """Seconds from the close of the last candle processed to ``now``."""
        if self.last_open is None:
            return None
        return now - self.last_open.timestamp() - self.interval_seconds

    def health(self, now: float) -> tuple[bool, dict[str, Any]]:
        """(healthy, body): connected and the last candle no older than two intervals."""
        lag = self.lag(now)
        healthy = self.connected and lag is not None and lag <= 2 * self.interval_seconds
        return healthy, {
            "status": "ok" if healthy else "degraded", "connected": self.connected,
            "last_candle": None if self.last_open is None else self.last_open.isoformat(),
            "lag_seconds": None if lag is None else round(lag, 3), "model_id": self.model_id,
            "candles": self.counts["candles"], "reconnects": self.counts["reconnects"],
            "uptime_seconds": round(time.time() - self.started, 1)}

    def prometheus(self, now: float) -> str:
        """The Prometheus text exposition of every metric."""
        lines = []
        for name, text in COUNTERS.items():
            metric = f"selfdistill_live_{name}_total"
            lines += [f"# HELP {metric} {text}", f"# TYPE {metric} counter",
                      f"{metric} {self.counts[name]}"]
        lag = self.lag(now)
        gauges = {"connected": (float(self.connected), "1 while the stream is subscribed."),
                  "lag_seconds": (float("nan") if lag is None else lag,
                                  "Seconds since the close of the last candle processed."),
                  "last_candle_timestamp_seconds": (
                      float("nan") if self.last_open is None else self.last_open.timestamp(),
                      "Open time of the last candle processed (Unix seconds).")}
        for name, (value, text) in gauges.items():
            metric = f"selfdistill_live_{name}"
            lines += [f"# HELP {metric} {text}", f"# TYPE {metric} gauge", f"{metric} {value:g}"]
        lines += self._histogram()
        info = "selfdistill_live_model_info"
        lines += [f"# HELP {info} The model serving (value 1).", f"# TYPE {info} gauge",
                  f'{info}{{model_id="{self.model_id}"}} 1']
        return "\n".join(lines) + "\n"

    def _histogram(self) -> list[str]:
        metric = "selfdistill_live_latency_seconds"
        lines = [f"# HELP {metric} Confirmed candle read to signal line written.",
                 f"# TYPE {metric} histogram"]
        total = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.buckets, strict=True):
            total += count
            label = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'{metric}_bucket{{le="{label}"}} {total}')
        lines += [f"{metric}_sum {self.latency_sum:.6f}", f"{metric}_count {self.latency_count}"]
        return lines


def live_routes(metrics: LiveMetrics, latest: Callable[[], dict[str, Any] | None],
                clock: Callable[[], float]) -> dict[str, Callable[[], Response]]:
    """``/signal`` (the latest line), ``/health`` and ``/metrics`` of a live loop."""
    def signal_() -> Response:
        record = latest()
        if record is None:
            return 503, "application/json", b'{"error": "no signal yet"}\n'
        return 200, "application/json", (json.dumps(record) + "\n").encode()

    def health() -> Response:
        ok, body = metrics.health(clock())
        return (200 if ok else 503), "application/json", (json.dumps(body) + "\n").encode()

    def prometheus() -> Response:
        return 200, "text/plain; version=0.0.4; charset=utf-8", metrics.prometheus(clock()).encode()

    return {"/signal": signal_, "/health": health, "/metrics": prometheus}

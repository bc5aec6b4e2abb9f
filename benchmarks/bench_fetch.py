"""Fetch 200,000 one-minute candles from the local fake Bybit into a temporary store.

Prints candles/s, requests made, and the peak request rate the server saw in
any 1 s and 5 s window next to what the client-side limiter allows
(``burst + rate * window``) and Bybit's own limit (600 per 5 s). Then a short
run at the default rate shows the limiter holding at its real setting.
Exits 1 if the limiter was exceeded or the stored candles are not exactly
the server's.

    .venv/bin/python benchmarks/bench_fetch.py [--candles 200000] [--rate 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bybit_server import FakeBybit
from selfdistill.data.bybit import BybitClient
from selfdistill.data.bybit.ratelimit import BYBIT_LIMIT_PER_5S, DEFAULT_RATE, max_in_window
from selfdistill.data.bybit.request import MarketKey
from selfdistill.data.store import CandleStore
from selfdistill.data.storefile import COLUMNS

START = pd.Timestamp("2024-01-01", tz="UTC")


def run(fake: FakeBybit, symbol: str, candles: int, rate: float, concurrency: int,
        data_dir: Path) -> bool:
    """One fetch; print its numbers; return whether the limiter held and the data match."""
    key = MarketKey("linear", symbol, "1")
    stop = START + pd.Timedelta(minutes=candles)
    before = fake.request_count
    with BybitClient(fake.url, rate=rate, concurrency=concurrency) as client:
        began = time.perf_counter()
        CandleStore(data_dir).update(key, client, START, stop)
        seconds = time.perf_counter() - began
    stamps = [r.time for r in fake.requests[before:]]
    burst = client.limiter.burst
    stored = CandleStore(data_dir).read(key)[list(COLUMNS)]
    truth = fake.candles("linear", symbol, "1", START, stop)
    exact = len(stored) == candles and stored.equals(truth)
    print(f"\n{symbol}: limiter {rate:g} req/s (burst {burst:g}), concurrency {concurrency}")
    print(f"  candles stored      {len(stored):>10,}  (expected {candles:,}; "
          f"{'identical to' if exact else 'DIFFERENT FROM'} the server's)")
    print(f"  time                {seconds:>10.2f} s")
    print(f"  throughput          {candles / seconds:>10,.0f} candles/s")
    print(f"  requests made       {len(stamps):>10,}  ({candles / max(1, len(stamps)):,.0f} "
          "candles per request)")
    held = True
    for window in (1.0, 5.0):
        peak, allowed = max_in_window(stamps, window), burst + rate * window
        ok = peak <= allowed + 1  # +1: arrival times are taken on the server side
        held &= ok
        bybit = f"; Bybit allows {BYBIT_LIMIT_PER_5S}" if window == 5.0 else ""
        print(f"  peak in any {window:g} s     {peak:>10,}  (limiter allows {allowed:,.0f}: "
              f"{peak / allowed:.2f} of it{bybit}){'' if ok else '  LIMITER EXCEEDED'}")
    return held and exact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=100.0, help="req/s for the big run")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--short", type=int, default=60_000,
                        help="candles for the run at the default rate (0: skip)")
    args = parser.parse_args(argv)
    ok = True
    with FakeBybit(history_start="2023-12-01") as fake, \
            tempfile.TemporaryDirectory() as tmp:
        ok &= run(fake, "BTCUSDT", args.candles, args.rate, args.concurrency, Path(tmp))
        if args.short:
            ok &= run(fake, "ETHUSDT", args.short, DEFAULT_RATE, 3, Path(tmp))
    print("\nlimiter held and data exact" if ok else "\nFAILED: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

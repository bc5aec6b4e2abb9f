"""Speed of the data layer: validating, loading and generating candles.

Prints, measured in this one run: seconds to validate 1,000,000 one-minute
candles, to load them from CSV and from Parquet, and to generate the default
20,000-bar synthetic market; plus rows per second. Targets: validation of a
million rows well under 1 s; the synthetic market well under 1 s.

    .venv/bin/python benchmarks/bench_data.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from selfdistill.data.candles import validate_candles
from selfdistill.data.files import load_candles_file, save_candles
from selfdistill.data.synthetic import generate_market


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Fastest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def random_walk_candles(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    index = pd.date_range("2020-01-01", periods=n, freq="min", tz="UTC", name="open_time")
    frame = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.0005,
                          "low": np.minimum(open_, close) * 0.9995, "close": close,
                          "volume": rng.lognormal(3.0, 1.0, n)}, index=index)
    return frame.drop(index[[10, 500, n // 2]])  # a few gaps to find


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    raw = random_walk_candles(rows)
    rows = len(raw)
    results = {"validate_candles": best_of(lambda: validate_candles(raw))}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("candles.csv", "candles.parquet"):
            path = Path(tmp) / name
            save_candles(validate_candles(raw), path)
            results[f"load {name}"] = best_of(lambda p=path: load_candles_file(p), repeats=1)
    synthetic = best_of(lambda: generate_market(20_000, seed=0))
    for what, seconds in results.items():
        print(f"{what:<26} {rows:>9,} rows  {seconds:7.3f} s  {rows / seconds:>12,.0f} rows/s")
    print(f"{'generate_market':<26} {20_000:>9,} bars  {synthetic:7.3f} s")
    per_million = results["validate_candles"] / (rows / 1e6)
    print(f"validate: {per_million:.3f} s per 1M rows = {per_million:.2f}x the 1 s budget")


if __name__ == "__main__":
    main()

"""Latency and memory of `selfdistill live` on a long stream from the local fake exchange.

The fake REST exchange and stream (tests/ws_server.py) run in a separate process, so
their work does not share this process's interpreter; they stream one-minute candles
(two unconfirmed updates each) as fast as ``--speed`` allows. The live loop runs here,
exactly as the command does (incremental features, the NumPy model, the candle store
appended every second in the background, a signal file fsynced per line).

Prints, over ``--candles`` confirmed candles (default 10,080: a week of minutes):

- latency from the moment a confirmed candle's message is read from the WebSocket to
  the moment its signal line is written (and fsynced): median, p99, max; the target is
  p99 <= 5 ms;
- the bare NumPy forward of the same model on one bar (``predict_proba_one``) and the
  ratio of the loop's median to it (what the rest of the pipeline costs);
- resident memory after each simulated day (1,440 candles): flat means the growth per
  day after the first is within noise.

Runs twice: without a signal file (the pipeline: stream, features, model, JSON line) and
with one on the project's disk, fsynced per line (what ``--out FILE`` does; on a disk
whose fsync takes milliseconds, that is most of the latency). Exits 1 if a candle is
missing or duplicated, or the pipeline's p99 is above the target.

    .venv/bin/python benchmarks/bench_live.py [--candles 10080] [--speed 15000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from live_support import make_model  # noqa: E402  (tests/ on the path first)
from selfdistill.data.bybit.request import MarketKey  # noqa: E402
from selfdistill.serving.live import LiveLoop, LiveSettings  # noqa: E402
from selfdistill.serving.sinks import SignalSink  # noqa: E402

TARGET_P99_MS = 5.0
DAY = 1440


def rss_mib() -> float:
    """Resident set size of this process (Linux /proc), MiB."""
    text = Path("/proc/self/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else float("nan")


def start_exchange(candles: int, speed: float) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "ws_server.py"), "--port",
                             "0", "--rest-port", "0", "--candles", str(candles), "--speed",
                             str(speed), "--days", "2"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"rest=(\S+) ws=(\S+)", line)
    if not found:
        proc.kill()
        raise SystemExit(f"the fake exchange did not start: {line!r}")
    return proc, found.group(1), found.group(2)


def forward_us(model_dir: Path, repeats: int = 20_000) -> float:
    """Median microseconds of the bare NumPy forward on one bar."""
    from selfdistill.serving.numpy_runtime import NumpyModel

    model = NumpyModel.from_dir(model_dir)
    x = np.random.default_rng(0).normal(size=len(model.feature_names))
    times = np.empty(repeats)
    for i in range(repeats):
        began = time.perf_counter()
        model.predict_proba_one(x)
        times[i] = time.perf_counter() - began
    return float(np.median(times) * 1e6)


class RecordingSink(SignalSink):
    """A sink without a file that keeps each line's open time (to check completeness)."""

    def __init__(self) -> None:
        super().__init__(None, stdout=False)
        self.times: list[str] = []

    def write(self, record: dict) -> None:
        super().write(record)
        self.times.append(record["open_time"])


@dataclass
class Figures:
    """Per streamed candle: read -> written (s); inside the loop's code, wall and CPU (s)."""

    latency: list[float] = field(default_factory=list)
    process_wall: list[float] = field(default_factory=list)
    process_cpu: list[float] = field(default_factory=list)
    memory: list[float] = field(default_factory=list)  # MiB after each simulated day


def run_loop(model_dir: Path, tmp: Path, rest: str, ws: str, candles: int,
             fsync: bool) -> tuple[LiveLoop, Figures]:
    """Run the loop until ``candles`` stream candles are signalled."""
    settings = LiveSettings(locate=lambda: model_dir, key=MarketKey("linear", "BTCUSDT", "1"),
                            ws_url=ws, base_url=rest, data_dir=tmp / "store",
                            stale_after=30.0, reload_every=5.0)
    sink = SignalSink(tmp / "signals.jsonl", stdout=False) if fsync else RecordingSink()
    live = LiveLoop(settings, sink)
    got = Figures()
    observe, process = live.metrics.observe_latency, live._process

    def record(seconds: float) -> None:
        observe(seconds)
        got.latency.append(seconds)
        if len(got.latency) % DAY == 0:
            got.memory.append(rss_mib())
        if len(got.latency) >= candles:
            live.stop()

    def timed(row: tuple, source: str, received: float | None) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        process(row, source, received)  # type: ignore[arg-type]
        if source == "stream":
            got.process_wall.append(time.perf_counter() - wall)
            got.process_cpu.append(time.thread_time() - cpu)

    live.metrics.observe_latency = record  # type: ignore[method-assign]
    live._process = timed  # type: ignore[method-assign]
    asyncio.run(live.run(handle_signals=False))
    return live, got


def contiguous(texts: list[str]) -> bool:
    """Every one-minute candle once, in order."""
    times = [pd.Timestamp(t) for t in texts]
    steps = np.diff(np.array([t.value for t in times], dtype=np.int64))
    return bool(len(times) and (steps == 60_000_000_000).all())


def one_run(model_dir: Path, candles: int, speed: float,
            fsync: bool) -> tuple[float, float, bool]:
    """Stream ``candles`` through the loop; print its figures; (p50 ms, p99 ms, complete)."""
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp_name:  # on the project's disk
        tmp = Path(tmp_name)
        proc, rest, ws = start_exchange(candles + 50, speed)
        try:
            began = time.perf_counter()
            live, got = run_loop(model_dir, tmp, rest, ws, candles, fsync=fsync)
            seconds = time.perf_counter() - began
        finally:
            proc.kill()
        sink = live.sink
        texts = ([json.loads(line)["open_time"] for line in (tmp / "signals.jsonl").open()]
                 if fsync else sink.times if isinstance(sink, RecordingSink) else [])
        complete = contiguous(texts)
    ms = np.array(got.latency) * 1e3
    p50, p99, worst = np.percentile(ms, 50), np.percentile(ms, 99), ms.max()
    wall, cpu = np.array(got.process_wall) * 1e3, np.array(got.process_cpu) * 1e3
    counts = live.metrics.counts
    print(f"\nsignal file {'on disk, fsync per line' if fsync else 'off (lines only counted)'}: "
          f"{len(ms):,} candles from the stream in {seconds:.1f} s ({counts['rest_candles']} "
          f"from REST, {counts['unconfirmed']:,} unconfirmed updates ignored, "
          f"{counts['store_commits']} store commits)")
    print(f"  latency read -> line written: median {p50:.3f} ms, p99 {p99:.3f} ms, "
          f"max {worst:.1f} ms")
    print(f"  of which the loop's own code (features, model, line): wall median "
          f"{np.median(wall):.3f} ms, p99 {np.percentile(wall, 99):.3f} ms; CPU median "
          f"{np.median(cpu):.3f} ms, p99 {np.percentile(cpu, 99):.3f} ms")
    days = ", ".join(f"{m:.0f}" for m in got.memory)
    later = got.memory[1:]  # day 1 fills the bounded buffers
    growth = (later[-1] - later[0]) / (len(later) - 1) if len(later) > 1 else float("nan")
    print(f"  resident memory after each simulated day (MiB): {days}; {growth:+.2f} MiB/day "
          "after day 2")
    print(f"  every candle once, in order: {'yes' if complete else 'NO'}")
    return float(p50), float(p99), complete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=7 * DAY)
    parser.add_argument("--speed", type=float, default=15_000.0,
                        help="candles per minute the fake exchange streams (default: one "
                        "every 4 ms, slower than the loop, so nothing queues)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        model_dir = make_model(Path(tmp_name) / "model", members=3)
        base_us = forward_us(model_dir)
        print(f"load average {Path('/proc/loadavg').read_text().split()[0]} on "
              f"{len(os.sched_getaffinity(0))} CPUs; model: 3 MLP members (16-8), 12 features")
        results = {fsync: one_run(model_dir, args.candles, args.speed, fsync)
                   for fsync in (False, True)}
    p50, p99, complete = results[False]
    print(f"\nbare NumPy forward (one bar, predict_proba_one): {base_us:.1f} us; loop median / "
          f"forward = {p50 * 1e3 / base_us:.1f}x (features, members' disagreement, JSON line)")
    verdict = "met" if p99 <= TARGET_P99_MS else "MISSED"
    print(f"target p99 <= {TARGET_P99_MS:g} ms without the file: {verdict} ({p99:.3f} ms); "
          f"with fsync per line: {results[True][1]:.3f} ms (the disk's fsync, see docs/live.md)")
    ok = complete and results[True][2] and p99 <= TARGET_P99_MS
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

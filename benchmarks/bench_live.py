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
- after each simulated day (1,440 candles): resident memory, the Python heap in blocks
  (``sys.getallocatedblocks``) and the klines received but not yet processed (a loop that
  falls behind a too-fast market holds them, which shows as growth); flat means the
  growth per day after the first is within noise.

Runs twice: without a signal file (the pipeline: stream, features, model, JSON line) and
with one on the project's disk, fsynced per line (what ``--out FILE`` does; on a disk
whose fsync takes milliseconds, that is most of the latency). Exits 1 if a candle is
missing or duplicated, or the pipeline's p99 is above the target.

    .venv/bin/python benchmarks/bench_live.py [--candles 10080] [--speed 6000]
"""

from __future__ import annotations

import os

# as `selfdistill live` does, before pandas imports pyarrow (see cli/live.py)
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import argparse
import asyncio
import json
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


class CheckingSink(SignalSink):
    """A sink without a file that checks, line by line, that each candle is the next one
    (constant memory: nothing is kept per line)."""

    def __init__(self) -> None:
        super().__init__(None, stdout=False)
        self.previous: pd.Timestamp | None = None
        self.broken = 0

    def write(self, record: dict) -> None:
        super().write(record)
        stamp = pd.Timestamp(record["open_time"])
        if self.previous is not None and stamp - self.previous != pd.Timedelta(minutes=1):
            self.broken += 1
        self.previous = stamp


@dataclass
class Figures:
    """Per streamed candle (preallocated: the bookkeeping must not grow the heap it
    measures): read -> written, and the loop's own wall and CPU time, in seconds."""

    latency: np.ndarray
    process_wall: np.ndarray
    process_cpu: np.ndarray
    n: int = 0
    processed: int = 0
    memory: list[float] = field(default_factory=list)  # RSS MiB after each simulated day
    blocks: list[int] = field(default_factory=list)  # Python objects' memory blocks, likewise
    backlog: list[int] = field(default_factory=list)  # klines received, not yet processed


def run_loop(model_dir: Path, tmp: Path, rest: str, ws: str, candles: int,
             fsync: bool, commit_every: float) -> tuple[LiveLoop, Figures]:
    """Run the loop until ``candles`` stream candles are signalled."""
    settings = LiveSettings(locate=lambda: model_dir, key=MarketKey("linear", "BTCUSDT", "1"),
                            ws_url=ws, base_url=rest, data_dir=tmp / "store",
                            stale_after=30.0, reload_every=5.0, commit_every=commit_every)
    sink = SignalSink(tmp / "signals.jsonl", stdout=False) if fsync else CheckingSink()
    live = LiveLoop(settings, sink)
    room = candles + 1000  # klines already queued when it stops are processed too
    got = Figures(np.empty(room), np.empty(room), np.empty(room))
    observe, process = live.metrics.observe_latency, live._process

    def record(seconds: float) -> None:
        observe(seconds)
        if got.n < len(got.latency):
            got.latency[got.n] = seconds
            got.n += 1
        if got.n % DAY == 0:
            got.memory.append(rss_mib())
            got.blocks.append(sys.getallocatedblocks())
            stream = live._stream
            got.backlog.append(stream._queue.qsize() if stream is not None else 0)
        if got.n == candles:
            live.stop()

    def timed(row: tuple, source: str, received: float | None) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        process(row, source, received)
        if source == "stream" and got.processed < len(got.process_wall):
            got.process_wall[got.processed] = time.perf_counter() - wall
            got.process_cpu[got.processed] = time.thread_time() - cpu
            got.processed += 1

    live.metrics.observe_latency = record  # type: ignore[method-assign]
    live._process = timed  # type: ignore[method-assign]
    asyncio.run(live.run(handle_signals=False))
    return live, got


def contiguous(texts: list[str]) -> bool:
    """Every one-minute candle once, in order."""
    times = [pd.Timestamp(t) for t in texts]
    steps = np.diff(np.array([t.value for t in times], dtype=np.int64))
    return bool(len(times) and (steps == 60_000_000_000).all())


def one_run(model_dir: Path, candles: int, speed: float, fsync: bool,
            commit_every: float) -> tuple[float, float, bool]:
    """Stream ``candles`` through the loop; print its figures; (p50 ms, p99 ms, complete)."""
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp_name:  # on the project's disk
        tmp = Path(tmp_name)
        proc, rest, ws = start_exchange(candles + 50, speed)
        try:
            began = time.perf_counter()
            live, got = run_loop(model_dir, tmp, rest, ws, candles, fsync, commit_every)
            seconds = time.perf_counter() - began
        finally:
            proc.kill()
        sink = live.sink
        complete = (contiguous([json.loads(line)["open_time"]
                                for line in (tmp / "signals.jsonl").open()]) if fsync
                    else isinstance(sink, CheckingSink) and sink.broken == 0)
    ms = got.latency[:got.n] * 1e3
    p50, p99, worst = np.percentile(ms, 50), np.percentile(ms, 99), ms.max()
    wall, cpu = got.process_wall[:got.processed] * 1e3, got.process_cpu[:got.processed] * 1e3
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
    print(f"  after each simulated day: resident MiB {_list(got.memory, '.0f')}; Python "
          f"blocks (thousands) {_list([b / 1e3 for b in got.blocks], '.0f')}; klines waiting "
          f"{_list(got.backlog, 'd')}")
    print(f"  growth per day after day 2: {_growth(got.memory):+.2f} MiB resident, "
          f"{_growth(got.blocks):+,.0f} blocks (a backlog of waiting klines shows as growth)")
    print(f"  every candle once, in order: {'yes' if complete else 'NO'}")
    return float(p50), float(p99), complete


def _list(values: list, spec: str) -> str:
    return ", ".join(format(v, spec) for v in values)


def _growth(values: list) -> float:
    """Mean change per day from day 2 on (day 1 fills the bounded buffers)."""
    later = values[1:]
    return (later[-1] - later[0]) / (len(later) - 1) if len(later) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=7 * DAY)
    parser.add_argument("--speed", type=float, default=6_000.0,
                        help="candles per minute the fake exchange streams (default: one "
                        "every 10 ms, slower than the loop, so nothing should queue)")
    parser.add_argument("--only", choices=["pipeline", "file"], help="one of the two runs")
    parser.add_argument("--commit-every", type=float, default=1.0, help="seconds between "
                        "commits of streamed candles to the store (the loop's default: 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        model_dir = make_model(Path(tmp_name) / "model", members=3)
        base_us = forward_us(model_dir)
        print(f"load average {Path('/proc/loadavg').read_text().split()[0]} on "
              f"{len(os.sched_getaffinity(0))} CPUs; model: 3 MLP members (16-8), 12 features")
        runs = {"pipeline": False, "file": True}
        results = {fsync: one_run(model_dir, args.candles, args.speed, fsync, args.commit_every)
                   for name, fsync in runs.items() if args.only in (None, name)}
    if False not in results:
        sys.exit(0 if results[True][2] else 1)
    p50, p99, complete = results[False]
    print(f"\nbare NumPy forward (one bar, predict_proba_one): {base_us:.1f} us; loop median / "
          f"forward = {p50 * 1e3 / base_us:.1f}x (features, members' disagreement, JSON line)")
    verdict = "met" if p99 <= TARGET_P99_MS else "MISSED"
    print(f"target p99 <= {TARGET_P99_MS:g} ms without the file: {verdict} ({p99:.3f} ms)")
    if True in results:
        print(f"with fsync per line: p99 {results[True][1]:.3f} ms (the disk's fsync; see "
              "docs/live.md)")
    ok = complete and results.get(True, (0, 0, True))[2] and p99 <= TARGET_P99_MS
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

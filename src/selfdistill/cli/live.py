"""``selfdistill live``: regime signals on Bybit's closed candles as they close.

The work happens in :mod:`selfdistill.serving.live`; this module checks the options
(exit 2 on a bad one, before any connection), builds the settings and runs the loop
until SIGINT / SIGTERM (exit 0 after the current candle). See docs/live.md.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from selfdistill.cli.data import CATEGORY, DATA_DIR, INTERVAL, MAINNET_URL, SYMBOL
from selfdistill.errors import ConfigError, Interrupted

if TYPE_CHECKING:
    from selfdistill.serving.live import LiveLoop, LiveSettings

__all__ = ["register"]


def _settings(model: Path, method: str | None, symbol: str, interval: str, category: str,
              data_dir: Path | None, out: str, serve: str | None, base_url: str,
              ws_url: str | None, gaps: str | None, history: int, stale_after: float | None,
              reload_every: float) -> LiveSettings:
    from selfdistill.data.bybit.request import MarketKey
    from selfdistill.data.bybit.stream import public_url
    from selfdistill.data.sessions import GAP_POLICIES
    from selfdistill.serving.http import parse_address
    from selfdistill.serving.live import LiveSettings
    from selfdistill.serving.predict import resolve_model_dir
    from selfdistill.serving.sinks import last_open_time

    key = MarketKey(category, symbol, interval)
    if gaps is not None and gaps not in GAP_POLICIES:
        raise ConfigError(f"--gaps {gaps!r} is not one of {', '.join(GAP_POLICIES)}")
    if history < 1 or (stale_after is not None and stale_after <= 0) or reload_every <= 0:
        raise ConfigError("--history must be >= 1 and --stale-after / --reload-every > 0 seconds")
    if importlib.util.find_spec("websockets") is None:
        raise ConfigError("`selfdistill live` needs the websockets package: "
                          "pip install 'selfdistill[live]'")
    _check_interval(resolve_model_dir(model, method), key.interval)
    resume = last_open_time(Path(out)) if out != "-" else None
    if resume is not None:
        logging.getLogger(__name__).info("%s ends at %s: resuming after it", out, resume)
    return LiveSettings(
        locate=lambda: resolve_model_dir(model, method), key=key,
        ws_url=ws_url or public_url(category), base_url=base_url, data_dir=data_dir,
        gaps=gaps, history=history, resume_after=resume, stale_after=stale_after,
        reload_every=reload_every, serve=parse_address(serve) if serve else None)


def _check_interval(model_dir: Path, interval: str) -> None:
    """Refuse a model trained on other bars (its features would mean something else)."""
    from selfdistill.modelio.bundle import read_bundle

    trained = read_bundle(model_dir).extra.get("interval")
    if isinstance(trained, str) and trained != interval:
        raise ConfigError(f"the model in '{model_dir}' was trained on interval {trained} "
                          f"candles; --interval {interval} would feed it other bars "
                          f"(use --interval {trained})")


def _run(settings: LiveSettings, out: str) -> LiveLoop:
    from selfdistill.serving.live import LiveLoop
    from selfdistill.serving.sinks import SignalSink

    sink = SignalSink(None if out == "-" else Path(out), stdout=out == "-")
    try:
        loop = LiveLoop(settings, sink)
    except BaseException:
        sink.close()
        raise
    asyncio.run(loop.run())
    return loop


def _verbose() -> None:
    """The live loop's own events (backfills, reconnects, reloads) at INFO on stderr."""
    for name in ("selfdistill.serving", "selfdistill.data.bybit.stream"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)


def register(app: typer.Typer) -> None:
    """Add ``live`` to the app."""

    @app.command("live")
    def live(
        model: Path = typer.Option(..., "--model", help="Model directory (model.json), or a "
                                   "run directory (its models/<method>); watched for a new "
                                   "model (hot reload)."),
        method: str | None = typer.Option(None, "--method", help="With a run directory: "
                                          "which method's models (default born_again)."),
        symbol: str = SYMBOL,
        interval: str = INTERVAL,
        category: str = CATEGORY,
        data_dir: Path | None = DATA_DIR,
        out: str = typer.Option("-", "--out", help="Signal lines: - (standard output) or a "
                                "file (appended, fsync per line; a restart resumes after its "
                                "last line)."),
        serve: str | None = typer.Option(None, "--serve", help="HOST:PORT for GET /signal, "
                                         "/health and /metrics (e.g. 127.0.0.1:9108)."),
        base_url: str = typer.Option(MAINNET_URL, "--base-url", help="REST host for backfill: "
                                     "mainnet, https://api-testnet.bybit.com or a local server."),
        ws_url: str | None = typer.Option(None, "--ws-url", help="Stream URL (default "
                                          "wss://stream.bybit.com/v5/public/<category>)."),
        gaps: str | None = typer.Option(None, "--gaps", help="Gap policy: mark, sessions, "
                                        "error or auto (default: the model's)."),
        history: int = typer.Option(1000, "--history", help="Candles of history kept in the "
                                    "store at start (at least the features' warm-up)."),
        stale_after: float | None = typer.Option(None, "--stale-after", help="Seconds without "
                                                 "a kline push before reconnecting (default: "
                                                 "two intervals, at most 300)."),
        reload_every: float = typer.Option(5.0, "--reload-every", help="Seconds between looks "
                                           "at the model directory."),
    ) -> None:
        """One JSON signal line per closed Bybit candle, from the stream, gap-free."""
        # Before pandas imports pyarrow: Arrow's default allocator (mimalloc) keeps the memory
        # of every rewrite of the growing store file, about 10 MiB per day of 1-minute
        # candles (benchmarks/bench_live.py); the system allocator returns it.
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
        _verbose()
        settings = _settings(model, method, symbol, interval, category, data_dir, out, serve,
                             base_url, ws_url, gaps, history, stale_after, reload_every)
        try:
            loop = _run(settings, out)
        except KeyboardInterrupt:
            raise Interrupted("interrupted; every signal line written is whole (fsync per "
                              "line)") from None
        m = loop.metrics
        typer.echo(f"stopped: {m.counts['candles']} signals ({m.counts['stream_candles']} from "
                   f"the stream, {m.counts['rest_candles']} from REST), "
                   f"{m.counts['reconnects']} reconnects, {m.counts['model_reloads']} model "
                   f"reloads; last candle {m.last_open}", err=True)

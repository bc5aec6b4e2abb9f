"""``selfdistill fetch``, ``selfdistill data list`` and ``selfdistill data export``.

``fetch`` fills the local candle store from Bybit (or any server speaking its v5
kline API, ``--base-url``), with a progress bar on stderr and one final line on
stdout saying what the store now holds. Every argument is checked before the
first request or file access; errors go through ``cli.main`` (exit 2 for a bad
option, 1 for a network or data failure).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from selfdistill.config.intervals import canonical_interval
from selfdistill.errors import ConfigError, Interrupted, SelfDistillError

if TYPE_CHECKING:  # selfdistill.data imports pandas: only when a command runs (fast --help)
    from rich.console import Console

    from selfdistill.data.bybit.request import MarketKey
    from selfdistill.data.store import CandleStore, Manifest

__all__ = ["register"]

#: selfdistill.data.bybit.client.MAINNET_URL and .ratelimit.DEFAULT_RATE, written out so
#: that parsing the command line imports no pandas (tests/test_cli_config.py checks them).
MAINNET_URL = "https://api.bybit.com"
DEFAULT_RATE = 10.0

_FORMATS = {"csv": (".csv", ".csv.gz"), "parquet": (".parquet", ".pq")}
#: Seconds between plain fetch progress lines when stderr is not a terminal.
PLAIN_EVERY = 10.0

SYMBOL = typer.Option(..., "--symbol", help="Bybit symbol, upper case, e.g. BTCUSDT.")


def _interval(value: str) -> str:
    try:
        return canonical_interval(value)
    except ValueError as exc:
        raise ConfigError(f"--interval '{value}' is not {str(exc).removeprefix('must be ')}"
                          ) from None


INTERVAL = typer.Option(..., "--interval", callback=_interval,
                        help="1 3 5 15 30 60 120 240 360 720 D W M, or 1m 5m 15m 1h 4h 1d 1w.")
CATEGORY = typer.Option("linear", "--category", help="spot, linear or inverse.")
DATA_DIR = typer.Option(None, "--data-dir", help="Store folder (default: $SELFDISTILL_DATA_DIR "
                        "or the user cache dir).")


def _fetch(key: MarketKey, start: str, end: str | None, data_dir: Path | None, base_url: str,
           rate: float, concurrency: int, timeout: float) -> None:
    from rich.console import Console

    from selfdistill.data.bybit.client import BybitClient
    from selfdistill.data.bybit.request import resolve_range
    from selfdistill.data.store import CandleStore

    first, stop = resolve_range(start, end, key.interval)
    store = CandleStore(data_dir)
    client = BybitClient(base_url, rate=rate, concurrency=concurrency, timeout=timeout)
    err = Console(stderr=True)
    progress = _FetchProgress(key, err)
    with client, progress:
        try:
            manifest = store.update(key, client, first, stop, progress=progress)
        except (SelfDistillError, KeyboardInterrupt) as exc:
            held = store.manifest(key)
            kept = f"kept: {held.describe() if held else 'nothing stored yet'}"
            if isinstance(exc, KeyboardInterrupt):  # typer would exit 130 without a word
                raise Interrupted(f"interrupted; {kept}") from None
            err.print(kept)
            raise
    typer.echo(_holds(store, manifest, key, client.requests_made, progress.received))


def _holds(store: CandleStore, manifest: Manifest | None, key: MarketKey, requests: int,
           received: int) -> str:
    if manifest is None:
        return f"store holds nothing for {key}: no closed candle in the range"
    return (f"received {received:,} candles; store holds {manifest.describe()} in "
            f"{store.path(key)} ({requests} requests)")


class _FetchProgress:
    """Fetch progress: candles received (not slots asked for) against the range covered.

    A bar on a terminal; plain lines every :data:`PLAIN_EVERY` seconds otherwise (CI, nohup).
    """

    def __init__(self, key: MarketKey, err: Console) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.key, self.err, self.received = key, err, 0
        self.plain = not err.is_terminal
        self.bar = Progress(TextColumn(f"{key.symbol} {key.interval}"), BarColumn(),
                            TextColumn("{task.fields[received]:,} candles received, "
                                       "{task.percentage:>3.0f}% of the range"),
                            TimeElapsedColumn(), console=err, transient=False,
                            disable=self.plain)
        self.task = self.bar.add_task("fetch", total=None, received=0)
        self.start = self.last = time.monotonic()

    def __enter__(self) -> _FetchProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def __call__(self, received: int, done: int, total: int) -> None:
        self.received = received
        self.bar.update(self.task, completed=done, total=total, received=received)
        now = time.monotonic()
        if self.plain and (now - self.last >= PLAIN_EVERY or (done == total and total)):
            share = 100.0 * done / total if total else 100.0
            print(f"[{now - self.start:7.1f} s] fetch {self.key}: {received:,} candles received, "
                  f"{share:.0f}% of the range", file=sys.stderr, flush=True)
            self.last = now


def _list(data_dir: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from selfdistill.data.store import CandleStore

    store = CandleStore(data_dir)
    found = store.datasets()
    out = Console(width=max(Console().width, 132))
    if not found:
        out.print(f"no datasets under {store.root}")
        return
    table = Table(title=f"candle store {store.root}")
    for name in ("symbol", "category", "interval", "from (UTC)", "to (UTC)", "last candle (UTC)",
                 "rows", "gaps", "missing", "updated (UTC)"):
        table.add_column(name, justify="right" if name in ("rows", "gaps", "missing") else "left")
    for m in found:
        last = f"{m.last:%Y-%m-%d %H:%M}" if m.last is not None else "-"
        table.add_row(m.key.symbol, m.key.category, m.key.interval, f"{m.start:%Y-%m-%d %H:%M}",
                      f"{m.end:%Y-%m-%d %H:%M}", last, f"{m.rows:,}", str(m.gaps),
                      f"{m.missing:,}", f"{m.updated:%Y-%m-%d %H:%M}")
    out.print(table)


def _check_out(out: Path, fmt: str | None) -> None:
    name = out.name.lower()
    kind = next((k for k, ends in _FORMATS.items() if name.endswith(ends)), None)
    if fmt is not None and fmt not in _FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(_FORMATS)}")
    if kind is None or (fmt is not None and kind != fmt):
        want = _FORMATS[fmt] if fmt else sum(_FORMATS.values(), ())
        raise ConfigError(f"--out {str(out)!r} must end in {' or '.join(want)}"
                          + (f" for --format {fmt}" if fmt else ""))


def register(app: typer.Typer) -> None:
    """Add ``fetch`` and the ``data`` group (``list``, ``export``) to the app."""

    @app.command("fetch")
    def fetch(
        symbol: str = SYMBOL,
        interval: str = INTERVAL,
        category: str = CATEGORY,
        start: str = typer.Option(..., "--start", help="First time, UTC: 2024-01-01 or "
                                  "2024-01-01T12:00."),
        end: str | None = typer.Option(None, "--end", help="End (exclusive), UTC; default now. "
                                       "The still-open candle is never stored."),
        data_dir: Path | None = DATA_DIR,
        base_url: str = typer.Option(MAINNET_URL, "--base-url", help="API host: mainnet, "
                                     "https://api-testnet.bybit.com or a local server."),
        rate: float = typer.Option(DEFAULT_RATE, "--rate", help="Max requests per second "
                                   "(Bybit allows 600 per 5 s per IP)."),
        concurrency: int = typer.Option(3, "--concurrency", help="Requests in flight (1-16)."),
        timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait per response."),
    ) -> None:
        """Fetch closed candles from Bybit into the local store (incremental, resumable)."""
        from selfdistill.data.bybit.request import MarketKey

        key = MarketKey(category, symbol, interval)
        _fetch(key, start, end, data_dir, base_url, rate, concurrency, timeout)

    data = typer.Typer(help="Inspect and export the local candle store.",
                       no_args_is_help=True)

    @data.command("list")
    def list_(data_dir: Path | None = DATA_DIR) -> None:
        """Show stored datasets: symbol, category, interval, range, rows, gaps."""
        _list(data_dir)

    @data.command("export")
    def export(
        symbol: str = SYMBOL,
        interval: str = INTERVAL,
        category: str = CATEGORY,
        out: Path = typer.Option(..., "--out", help="Output file (.csv, .csv.gz, .parquet)."),
        fmt: str | None = typer.Option(None, "--format", help="csv or parquet (default: from "
                                       "the --out extension)."),
        start: str | None = typer.Option(None, "--start", help="First time (UTC)."),
        end: str | None = typer.Option(None, "--end", help="End, exclusive (UTC)."),
        data_dir: Path | None = DATA_DIR,
    ) -> None:
        """Write stored candles to a CSV or Parquet file (loadable as data.source csv/parquet)."""
        from selfdistill.data.bybit.request import MarketKey, parse_time
        from selfdistill.data.store import CandleStore

        key = MarketKey(category, symbol, interval)
        _check_out(out, fmt)
        lo = parse_time(start, name="start") if start else None
        hi = parse_time(end, name="end") if end else None
        rows = CandleStore(data_dir).export(key, out, lo, hi)
        typer.echo(f"wrote {rows:,} {key} candles to {out}")

    app.add_typer(data, name="data")

"""``selfdistill predict``: regime probabilities for new candles from a saved model.

The work happens in :mod:`selfdistill.serving.predict`; imports are deferred so the
CLI starts without loading torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from selfdistill.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["register"]

_OUT_SUFFIXES = (".csv", ".parquet")


def _write(frame: pd.DataFrame, out: Path | None) -> None:
    if out is None:
        frame.to_csv(sys.stdout, index=False)
        return
    if out.suffix.lower() not in _OUT_SUFFIXES:
        raise ConfigError(f"--out '{out}' must end in {' or '.join(_OUT_SUFFIXES)}")
    from selfdistill.atomic import atomic_write

    if out.suffix.lower() == ".csv":
        atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        atomic_write(out, lambda tmp: frame.to_parquet(tmp, index=False))


def register(app: typer.Typer) -> None:
    """Add ``predict`` to the app."""

    @app.command("predict")
    def predict(
        model: Path = typer.Option(..., "--model", help="Model directory (model.json), "
                                   "or a run directory (its models/<method>)."),
        candles: Path = typer.Option(..., "--candles", help="Candles (CSV or Parquet)."),
        out: Path | None = typer.Option(None, "--out", help="Output .csv or .parquet "
                                        "(default: CSV on standard output)."),
        method: str | None = typer.Option(None, "--method", help="With a run directory: "
                                          "which method's models (default born_again)."),
    ) -> None:
        """Regime probabilities, predicted regime and uncertainty for every bar."""
        from selfdistill.data.files import load_candles_file
        from selfdistill.modelio.bundle import read_bundle
        from selfdistill.serving.predict import predict_candles, resolve_model_dir

        model_dir = resolve_model_dir(model, method)
        interval = read_bundle(model_dir).extra.get("interval")
        bars = load_candles_file(candles, interval=interval if isinstance(interval, str)
                                 else None)
        frame = predict_candles(model_dir, bars)
        _write(frame, out)
        if out is not None:
            last = frame.dropna(subset=["regime"]).tail(1)
            summary = (f"; last bar {last['open_time'].iloc[0]}: {last['regime'].iloc[0]}"
                       if len(last) else "")
            typer.echo(f"wrote {len(frame)} rows to {out}{summary}", err=True)

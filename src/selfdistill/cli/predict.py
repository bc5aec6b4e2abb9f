"""``selfdistill predict``: regime probabilities for new candles from a saved model.

The work happens in :mod:`selfdistill.serving.predict`; imports are deferred so the
CLI starts without loading torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from selfdistill.errors import ConfigError, Interrupted

if TYPE_CHECKING:
    import pandas as pd

    from selfdistill.serving.outputs import PredictOutput

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
        gaps: str | None = typer.Option(None, "--gaps", help="Gap policy: mark, sessions, "
                                        "error or auto (default: the one the model was "
                                        "trained with)."),
        time_format: str | None = typer.Option(None, "--time-format", help="How text dates "
                                               "are read: dayfirst, monthfirst or a strptime "
                                               "format like '%d.%m.%Y %H:%M' (default: "
                                               "inferred)."),
        last: int | None = typer.Option(None, "--last", help="Only the last N bars (all are "
                                        "computed: features look back)."),
        fmt: str | None = typer.Option(None, "--format", help="csv, parquet or json (one "
                                       "object per line, as `selfdistill live` writes); "
                                       "default: from --out, else csv."),
        runtime: str = typer.Option("torch", "--runtime", help="torch (the run's own forward) "
                                    "or numpy (torch-free, as `selfdistill live`; MLP models)."),
    ) -> None:
        """Regime probabilities, predicted regime and uncertainty for every bar."""
        _check_options(gaps, time_format)
        output = _check_output(out, fmt, last, runtime)
        try:
            _predict(model, candles, out, method, gaps, time_format, output)
        except KeyboardInterrupt:  # typer would exit 130 without a word
            raise Interrupted("interrupted; nothing was written (the output file is written "
                              "whole or not at all)") from None


def _check_options(gaps: str | None, time_format: str | None) -> None:
    from selfdistill.data.sessions import GAP_POLICIES

    if gaps is not None and gaps not in GAP_POLICIES:
        raise ConfigError(f"--gaps {gaps!r} is not one of {', '.join(GAP_POLICIES)}")
    if time_format is not None and time_format not in ("dayfirst", "monthfirst") \
            and "%" not in time_format:
        raise ConfigError(f"--time-format {time_format!r} is not 'dayfirst', 'monthfirst' or a "
                          "strptime format such as '%d/%m/%Y %H:%M'")


def _check_output(out: Path | None, fmt: str | None, last: int | None,
                  runtime: str) -> PredictOutput:
    from selfdistill.serving.outputs import PredictOutput

    return PredictOutput.checked(out, fmt, last, runtime)


def _predict(model: Path, candles: Path, out: Path | None, method: str | None,
             gaps: str | None, time_format: str | None,
             output: PredictOutput | None = None) -> None:
    from selfdistill.data.files import load_candles_file
    from selfdistill.modelio.bundle import read_bundle
    from selfdistill.serving.predict import predict_candles, resolve_model_dir

    model_dir = resolve_model_dir(model, method)
    bundle = read_bundle(model_dir)
    interval = bundle.extra.get("interval")
    bars = load_candles_file(candles, interval=interval if isinstance(interval, str) else None,
                             gaps="error" if gaps == "error" else "mark",
                             time_format=time_format, time_format_hint=bundle.time_format)
    if output is not None and not output.plain:  # --last / --format json / --runtime numpy
        frame = output.predict(model_dir, bars, gaps)
        if output.fmt == "json":
            output.write_json(frame, bars, model_dir, out)
        else:
            _write(frame, out)
    else:
        frame = predict_candles(model_dir, bars, gaps=gaps)
        _write(frame, out)
    if out is not None:
        last = frame.dropna(subset=["regime"]).tail(1)
        summary = (f"; last bar {last['open_time'].iloc[0]}: {last['regime'].iloc[0]}"
                   if len(last) else "")
        typer.echo(f"wrote {len(frame)} rows to {out}{summary}", err=True)

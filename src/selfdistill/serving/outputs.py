"""``selfdistill predict --last N --format json --runtime numpy``: predict for cron jobs.

:class:`PredictOutput` holds the three options, checked once: which forward computes the
rows (``torch``: the run's own, :func:`~selfdistill.serving.predict.predict_candles`;
``numpy``: the torch-free one of ``selfdistill live``,
:func:`~selfdistill.serving.signals.predict_candles_numpy`, equal to live to 1e-9), how
many of the last rows to keep (every row is computed: the features look back), and the
format. ``json`` writes one object per bar and line, the fields of a live signal line
(:func:`~selfdistill.serving.signals.signal_record`) without the stream's own
(``source``, ``latency_ms``, ``symbol``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from selfdistill.errors import ConfigError

__all__ = ["FORMATS", "RUNTIMES", "PredictOutput"]

#: Output formats and the file suffixes each accepts.
FORMATS: dict[str, tuple[str, ...]] = {"csv": (".csv",), "parquet": (".parquet",),
                                       "json": (".jsonl", ".json")}
RUNTIMES = ("torch", "numpy")


def _format_of(out: Path) -> str | None:
    suffix = out.suffix.lower()
    return next((name for name, ends in FORMATS.items() if suffix in ends), None)


@dataclass(frozen=True)
class PredictOutput:
    """What ``predict`` computes and writes (see the module docstring)."""

    fmt: str
    last: int | None
    runtime: str
    explicit: bool  # the user asked for one of the three options

    @property
    def plain(self) -> bool:
        """Nothing asked beyond the original ``predict`` (CSV / Parquet by --out, torch)."""
        return not self.explicit

    @classmethod
    def checked(cls, out: Path | None, fmt: str | None, last: int | None,
                runtime: str) -> PredictOutput:
        """The options, or ConfigError naming the bad one and what is valid."""
        if runtime not in RUNTIMES:
            raise ConfigError(f"--runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
        if last is not None and last < 1:
            raise ConfigError(f"--last {last} must be at least 1")
        if fmt is not None and fmt not in FORMATS:
            raise ConfigError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
        inferred = _format_of(out) if out is not None else None
        if out is not None and (inferred is None or (fmt is not None and fmt != inferred)):
            want = FORMATS[fmt] if fmt else sum(FORMATS.values(), ())
            raise ConfigError(f"--out '{out}' must end in {' or '.join(want)}"
                              + (f" for --format {fmt}" if fmt else ""))
        chosen = fmt or inferred or "csv"
        if chosen == "parquet" and out is None:
            raise ConfigError("--format parquet needs --out FILE.parquet (Parquet is binary)")
        explicit = last is not None or runtime != "torch" or chosen == "json"
        return cls(chosen, last, runtime, explicit)

    def predict(self, model_dir: Path, bars: pd.DataFrame, gaps: str | None) -> pd.DataFrame:
        """Every bar's row with the chosen forward, then the last ``last`` of them."""
        if self.runtime == "numpy":
            from selfdistill.serving.signals import predict_candles_numpy

            frame = predict_candles_numpy(model_dir, bars, gaps=gaps)
        else:
            from selfdistill.serving.predict import predict_candles

            frame = predict_candles(model_dir, bars, gaps=gaps)
        return frame.tail(self.last).reset_index(drop=True) if self.last else frame

    def write_json(self, frame: pd.DataFrame, bars: pd.DataFrame, model_dir: Path,
                   out: Path | None) -> None:
        """One JSON object per row: to standard output, or written whole to ``out``."""
        from selfdistill.modelio.bundle import read_bundle
        from selfdistill.serving.signals import model_id, records_from_frame

        bundle = read_bundle(model_dir)
        records = records_from_frame(frame, bars["close"], [str(c) for c in bundle.classes],
                                     model_id=model_id(model_dir), method=bundle.method)
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
        if out is None:
            sys.stdout.write(text)
            return
        from selfdistill.atomic import atomic_write_text

        atomic_write_text(out, text)

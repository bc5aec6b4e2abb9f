"""The commented starter config that ``selfdistill init`` writes.

It lists the settings a first run is most likely to change, each with a comment; every
other key keeps its default (``selfdistill config show FILE`` prints them all). A test
checks that the text validates, with and without a data file.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import PurePath

from selfdistill.errors import ConfigError

__all__ = ["data_source", "starter_config"]

_SOURCES = {"csv": (".csv", ".csv.gz", ".txt", ".txt.gz", ".tsv"),
            "parquet": (".parquet", ".pq")}

_SYNTHETIC = """\
  source: synthetic       # synthetic | csv | parquet | bybit
  synthetic:              # a regime-switching market whose true regimes are known
    n_bars: 20000
    interval: 1h          # 1m 5m 15m 1h 4h 1d 1w, or Bybit's 1 5 15 60 240 D W
"""

_FILE = """\
  source: {source}             # synthetic | csv | parquet | bybit
  path: {path}
  # relative paths are read from the folder you run selfdistill in
  gaps: auto              # missing candles: auto | mark | error | sessions (stock hours)
  # interval: 1h          # bar interval; inferred from the open times when left out
"""

_BODY = """\
# selfdistill run config (a starter written by `selfdistill init`).
# Every key is optional: what is left out keeps its default. See them all with
#   selfdistill config show {config}
# and the reference in README.md ("Config"). Run it with
#   selfdistill run {config}
name: {name}              # the run folder is runs/<name>-<time>: letters, digits, _ . -
seed: 0
device: auto              # auto | cpu | cuda

data:
{data}
labels:
  method: forward         # forward | same_bar | triple_barrier
  horizon: 12             # bars each label looks ahead
  k: 0.5                  # bull / bear threshold, in units of recent volatility

split:                    # chronological, purged by the label horizon
  train: 0.6
  val: 0.2
  test: 0.2

model:
  kind: mlp               # mlp | cnn | gru
  hidden: [64, 64]        # layer widths
  dropout: 0.1

training:
  epochs: 30
  batch_size: 256
  lr: 0.001
  patience: 5             # stop after this many epochs without a better validation loss

methods: [majority, baseline, label_smoothing, born_again]

born_again:
  generations: 5          # distilled generations after generation 0
  temperature: 3.0
  alpha: 0.3              # weight of the hard labels against the teacher's soft ones

evaluation:
  scheme: holdout         # holdout | walk_forward | purged_kfold (then set folds)
  folds: 1
  seeds: 1                # seeds measure the method's instability, not new evidence
  workers: 1              # processes for the folds x seeds cells

backtest:
  fee_bps: 5.5            # per side
  slippage_bps: 2.0
"""


def data_source(path: PurePath) -> str:
    """``csv`` or ``parquet`` from a file name; ConfigError for anything else."""
    name = path.name.lower()
    for source, suffixes in _SOURCES.items():
        if name.endswith(suffixes):
            return source
    known = " ".join(s for suffixes in _SOURCES.values() for s in suffixes)
    raise ConfigError(f"cannot tell the format of '{path}' from its name: candles must be "
                      f"in a file ending in one of {known}")


def _plain_name(text: str) -> str:
    """A valid run name from a file stem ('BTC USDT 1h' -> 'BTC-USDT-1h')."""
    name = re.sub(r"[^\w.\-]+", "-", text).strip(".-_")[:100]
    return name or "run"


def starter_config(*, data: PurePath | None = None, config_name: str = "selfdistill.yaml"
                   ) -> str:
    """The starter config text: the synthetic market, or the candles in ``data``."""
    if data is None:
        name, section = "first-run", _SYNTHETIC
    else:
        stem = data.name.split(".")[0]
        name = _plain_name(stem)
        section = _FILE.format(source=data_source(data), path=json.dumps(str(data)))
    shown = shlex.quote(" ".join(config_name.split()))  # a comment line: one line
    return _BODY.format(name=name, data=section, config=shown)

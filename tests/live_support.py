"""What the live-loop tests share: small servable models and the fake exchange's candles.

Models are MLPs with random weights (no training: the tests are about the plumbing, and
random weights give varied probabilities), a scaler fitted on features of the fake
exchange's candles, the feature settings below, and the gap policy in ``extra``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bybit_klines import kline_rows, open_times_ms, to_ms
from selfdistill.config import FeaturesConfig
from selfdistill.data.candles import validate_candles
from selfdistill.features import Scaler, compute_features, feature_names
from selfdistill.modelio.bundle import save_bundle
from selfdistill.nn.mlp import MLP

FEATURES = {"return_windows": [1, 4, 12], "volatility_windows": [6, 24], "ma_windows": [12, 24],
            "volume_window": 24, "range_window": 12, "skew_window": 24, "volume": "on"}
CLASSES = ["bull", "bear", "sideways"]
SYMBOL = "BTCUSDT"


def truth(start: str | pd.Timestamp, stop: str | pd.Timestamp, interval: str = "1",
          gaps: tuple[tuple[str, str], ...] = ()) -> pd.DataFrame:
    """The fake exchange's closed candles with open time in ``[start, stop)``, validated."""
    times = open_times_ms(interval, to_ms(start), to_ms(stop) - 1)
    for a, b in gaps:
        times = times[(times < to_ms(a)) | (times >= to_ms(b))]
    rows = kline_rows("linear", SYMBOL, interval, times)
    frame = pd.DataFrame([[float(v) for v in r[1:]] for r in rows],
                         columns=["open", "high", "low", "close", "volume", "turnover"])
    frame.index = pd.DatetimeIndex(pd.to_datetime(times, unit="ms", utc=True), name="open_time")
    return validate_candles(frame, interval=interval)


def make_model(path: Path, *, seed: int = 0, members: int = 3, interval: str = "1",
               gaps: str = "mark", features: dict | None = None,
               temperature: float = 1.3) -> Path:
    """A servable model directory (``members`` generations, the last selected)."""
    cfg = FeaturesConfig(**(features or FEATURES))
    names = feature_names(cfg)
    feats = compute_features(truth("2024-01-01", "2024-01-02", interval), cfg).dropna()
    scaler = Scaler("standard", clip=5.0).fit(feats[names].to_numpy())
    torch.manual_seed(seed)
    models = [MLP(len(names), len(CLASSES), hidden=(16, 8)) for _ in range(members)]
    return save_bundle(path, models, member_keys=[{"generation": i} for i in range(members)],
                       classes=np.array(CLASSES), feature_names=names, selected=members - 1,
                       method="born_again", temperature=temperature, scaler=scaler.to_dict(),
                       feature_config=cfg.model_dump(mode="json"),
                       extra={"interval": interval, "gaps": gaps})

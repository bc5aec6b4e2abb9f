"""Shared fixtures: every test starts seeded, and tiny synthetic candles are at hand.

Keep this file small and generic; fixtures used by one test module belong in
that module. ``torch`` is seeded (and held to one thread, as two pytest-xdist
workers share two cores) only when a test module has imported it, so data-only
tests never pay for importing torch.
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

from selfdistill.data.synthetic import generate_market

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # onnxruntime writes telemetry otherwise

SEED = 0
TINY_BARS = 600

# Property tests draw the same examples on every run by default, so a green suite
# stays green (CI must not depend on luck); `pytest --hypothesis-profile=explore`
# searches fresh random examples, many more of them, to look for new failures.
settings.register_profile("default", max_examples=40, deadline=None, derandomize=True,
                          database=None)
settings.register_profile("explore", max_examples=1000, deadline=None)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(SEED)
    np.random.seed(SEED)  # noqa: NPY002 - seeds legacy global-state users too
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(SEED)
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def _tiny_market() -> tuple[pd.DataFrame, pd.Series]:
    # persistence 0.98: ~12 regime switches in 600 bars, so every regime appears
    return generate_market(TINY_BARS, seed=7, persistence=0.98)


@pytest.fixture
def candles(_tiny_market: tuple[pd.DataFrame, pd.Series]) -> pd.DataFrame:
    """600 validated hourly candles from the synthetic market (a fresh copy per test)."""
    return _tiny_market[0].copy()


@pytest.fixture
def true_regimes(_tiny_market: tuple[pd.DataFrame, pd.Series]) -> pd.Series:
    """The true regime (int8: 0 bull, 1 bear, 2 sideways) of every bar of ``candles``."""
    return _tiny_market[1].copy()


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy Generator."""
    return np.random.default_rng(SEED)

"""The Bybit v5 market-data client and what it needs.

- :mod:`~selfdistill.data.bybit.client`: :class:`BybitClient` (``GET /v5/market/kline``);
- :mod:`~selfdistill.data.bybit.request`: what a request names (:class:`MarketKey`) and
  how a time range becomes request windows;
- :mod:`~selfdistill.data.bybit.reply`: what an answer means (rows to candles, status
  and retCode to errors);
- :mod:`~selfdistill.data.bybit.ratelimit`: the token bucket and the retry policy.

``from selfdistill.data.bybit import BybitClient, MarketKey`` covers most uses.
"""

from __future__ import annotations

from selfdistill.data.bybit.client import (
    CATEGORIES,
    KLINE_PATH,
    MAINNET_URL,
    MAX_LIMIT,
    TESTNET_URL,
    BybitClient,
    KlinePage,
    MarketKey,
    WindowResult,
    parse_kline_rows,
)

__all__ = [
    "CATEGORIES",
    "KLINE_PATH",
    "MAINNET_URL",
    "MAX_LIMIT",
    "TESTNET_URL",
    "BybitClient",
    "KlinePage",
    "MarketKey",
    "WindowResult",
    "parse_kline_rows",
]

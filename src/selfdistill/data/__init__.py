"""Candle data: the Candles contract, file loaders, the synthetic market, Bybit."""

"""Gap policies after loading: missing candles, or a market that closes (sessions)?

:func:`~selfdistill.data.candles.validate_candles` marks the bar after every gap
(``gap_before``). Whether such a gap means *missing candles* (features and labels must
not span it) or a *closed market* (a stock exchange's nights and weekends: consecutive
rows are consecutive bars) is a property of the market, decided here:

- ``mark``: gaps are missing candles (kept marked);
- ``error``: gaps are refused (:class:`~selfdistill.errors.GapError`);
- ``sessions``: the market closes regularly; the marks are cleared;
- ``auto``: ``sessions`` when gaps follow more than :data:`SESSION_GAP_SHARE` of the
  bars, else ``mark``.

The policy the data resolved to is recorded in ``candles.attrs["gap_policy"]``, and
model files store it, so ``selfdistill predict`` treats new candles as training did.
"""

from __future__ import annotations

import logging
from typing import Literal

import pandas as pd

from selfdistill.data.candles import gap_table
from selfdistill.errors import ConfigError, GapError

__all__ = ["GAP_POLICIES", "SESSION_GAP_SHARE", "apply_gap_policy", "resolve_gap_policy"]

log = logging.getLogger(__name__)

#: The policies ``data.gaps`` and ``predict --gaps`` accept.
GAP_POLICIES: tuple[str, ...] = ("auto", "mark", "error", "sessions")
#: Under ``auto``, data whose gaps follow more than this share of bars is taken for a
#: market with sessions (nights, weekends), not for missing candles.
SESSION_GAP_SHARE = 0.02

Resolved = Literal["mark", "error", "sessions"]


def resolve_gap_policy(candles: pd.DataFrame, policy: str) -> Resolved:
    """The policy ``policy`` means for these candles (``auto`` decided from the gap share)."""
    if policy not in GAP_POLICIES:
        raise ConfigError(f"gap policy {policy!r} is not one of {', '.join(GAP_POLICIES)}")
    if policy != "auto":
        return policy  # type: ignore[return-value]  # checked above
    return "sessions" if _gap_share(candles) > SESSION_GAP_SHARE else "mark"


def apply_gap_policy(candles: pd.DataFrame, policy: str, *, source: str = "candles"
                     ) -> pd.DataFrame:
    """Candles under ``policy``; ``attrs["gap_policy"]`` records what it resolved to.

    Args:
        candles: validated candles (with ``gap_before`` marks).
        policy: one of :data:`GAP_POLICIES`.
        source: what to call the data in messages.

    Raises:
        GapError: ``policy`` is ``error`` and candles are missing.
        ConfigError: an unknown policy.
    """
    resolved = resolve_gap_policy(candles, policy)
    marks = "gap_before" in candles.columns and bool(candles["gap_before"].any())
    if resolved == "error" and marks:
        gaps = gap_table(candles)
        raise GapError(f"{source}: {max(len(gaps), 1)} gap(s) in the candles (first after "
                       f"{gaps['start'].iloc[0] if len(gaps) else '?'}) and the gap policy is "
                       "'error'; fetch the missing candles, or use gap policy 'mark' (missing "
                       "candles) or 'sessions' (a market that closes)")
    out = candles.copy()
    if resolved == "sessions" and marks:
        if policy == "auto":
            log.warning("%s: gaps follow %.1f%% of bars; treating them as market sessions "
                        "(closed nights / weekends), consecutive rows as consecutive bars. "
                        "Set data.gaps: mark to treat them as missing candles instead.",
                        source, 100 * _gap_share(candles))
        out["gap_before"] = False
    out.attrs = {**candles.attrs, "gap_policy": resolved}
    return out


def _gap_share(candles: pd.DataFrame) -> float:
    if "gap_before" not in candles.columns or len(candles) == 0:
        return 0.0
    return float(candles["gap_before"].mean())

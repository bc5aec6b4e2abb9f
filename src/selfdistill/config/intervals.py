"""Bar-interval spellings: Bybit's (``1 5 15 60 240 D W``) and the common ones (``1m 1h 1d``).

Bybit v5 names a kline interval by its minutes, or D / W / M for a day, a week, a month.
Most other tools write ``1m 5m 15m 1h 4h 1d 1w``; those spellings are accepted as
aliases wherever an interval is (config fields, ``--interval``) and turned into Bybit's
at the boundary, so the rest of the library sees one spelling.

>>> canonical_interval("4h"), canonical_interval(60), canonical_interval("D")
('240', '60', 'D')
>>> interval_suggestion("60m")
'60'
"""

from __future__ import annotations

import difflib
import re

__all__ = ["INTERVALS", "INTERVAL_ALIASES", "canonical_interval", "interval_suggestion"]

#: Valid bar interval spellings, shortest first (Bybit v5 kline ``interval``): minutes, or
#: D / W / M for day / week / month. :mod:`selfdistill.data.intervals` re-exports it, since
#: data imports config, never the reverse.
INTERVALS: tuple[str, ...] = (
    "1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M",
)

#: Common spellings -> Bybit's. "1M" is left out on purpose: elsewhere it means a month.
INTERVAL_ALIASES: dict[str, str] = {
    "1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30",
    "1h": "60", "2h": "120", "4h": "240", "6h": "360", "12h": "720",
    "1d": "D", "1w": "W",
}

_MINUTES = {"m": 1, "min": 1, "h": 60, "d": 1440, "w": 10080}
_BY_MINUTES = {**{int(k): k for k in INTERVALS if k.isdigit()}, 1440: "D", 10080: "W"}
_AMOUNT = re.compile(r"^(\d+)\s*([a-zA-Z]+)$")

#: What the error message lists as valid.
VALID_TEXT = (f"one of {', '.join(INTERVALS)} (minutes, or D / W / M for day / week / month) "
              f"or {' '.join(INTERVAL_ALIASES)}")


def canonical_interval(value: object) -> str:
    """Bybit's spelling of a bar interval; raise ``ValueError`` naming the valid ones.

    Accepts Bybit's spellings, the aliases in :data:`INTERVAL_ALIASES` and whole
    numbers of minutes (``60``). The message suggests the closest valid spelling.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"must be {VALID_TEXT}")
    text = str(value).strip()
    if text in INTERVALS:
        return text
    if text in INTERVAL_ALIASES:
        return INTERVAL_ALIASES[text]
    guess = interval_suggestion(text)
    hint = f"; did you mean '{guess}'?" if guess else ""
    raise ValueError(f"must be {VALID_TEXT}{hint}")


def interval_suggestion(text: str) -> str | None:
    """The valid spelling ``text`` most likely meant (``"1H"`` -> ``"60"``), or None."""
    if text == "1M":
        return "M"  # a month in most tools; Bybit writes M
    if text.upper() in ("D", "W"):
        return text.upper()
    match = _AMOUNT.match(text)
    if match:
        unit = match.group(2).lower()
        minutes = int(match.group(1)) * _MINUTES.get(unit, 0)
        if minutes in _BY_MINUTES:
            return _BY_MINUTES[minutes]
    if text.isdigit():
        return None  # '45' is not a typo of '5'
    close = difflib.get_close_matches(text, [*INTERVALS, *INTERVAL_ALIASES], n=1, cutoff=0.6)
    return INTERVAL_ALIASES.get(close[0], close[0]) if close else None

"""Small HTML builders for the report: escaped tables with grouped headers, notes, images.

Every text that comes from a run directory is escaped; only :class:`Raw` fragments,
built here or by the section builders from escaped parts, pass through as HTML.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence

__all__ = ["Raw", "fmt", "img", "interval", "note", "pct", "table"]


class Raw(str):
    """An HTML fragment that is already safe (never escaped again)."""


Cell = str | Raw


def _cell(value: Cell, tag: str, attrs: str = "") -> str:
    text = value if isinstance(value, Raw) else html.escape(str(value))
    return f"<{tag}{attrs}>{text}</{tag}>"


_NUMERIC = re.compile(r"^[\s\d.,%+\-−–\[\]x()]*$")


def _numeric(cell: Cell) -> bool:
    """Whether a cell reads as a number (or a number with its interval): right-aligned."""
    text = re.sub(r"<[^>]+>", " ", str(cell))
    return bool(_NUMERIC.match(text))


def table(header: Sequence[Cell], rows: Sequence[Sequence[Cell]], *,
          groups: Sequence[tuple[str, int]] | None = None, css: str = "grid",
          lead: int = 1) -> str:
    """An HTML table; ``groups`` adds a first header row of (title, column span) pairs.

    Args:
        header: column titles (empty: no header row).
        rows: cells (strings are escaped, :class:`Raw` cells are not).
        groups: spanning titles over the columns, left to right.
        css: the table's class.
        lead: how many leading columns hold names (left-aligned); of the others, columns
            whose every cell reads as a number are right-aligned.
    """
    width = max((len(r) for r in rows), default=len(header))
    numeric = [i >= lead and all(_numeric(r[i]) for r in rows if i < len(r))
               for i in range(width)]
    head = ""
    if groups:
        head = "<tr>" + "".join(
            f'<th colspan="{span}" class="group">{html.escape(title)}</th>' if span > 1
            else f"<th>{html.escape(title)}</th>" for title, span in groups) + "</tr>"
    if header:
        head += "<tr>" + "".join(
            _cell(h, "th", ' class="num"' if i < width and numeric[i] else "")
            for i, h in enumerate(header)) + "</tr>"
    body = "".join(
        "<tr>" + "".join(_cell(c, "td", ' class="num"' if numeric[i] else "")
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    thead = f"<thead>{head}</thead>" if head else ""
    return f'<table class="{css}">{thead}<tbody>{body}</tbody></table>'


def note(text: str) -> str:
    """A grey explanatory paragraph."""
    return f'<p class="note">{html.escape(text)}</p>'


def img(uri: str, alt: str) -> str:
    """An embedded figure."""
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def fmt(value: float | int | None, digits: int = 3) -> str:
    """A number for a table cell; ``-`` for missing or non-finite values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def pct(value: float | None, digits: int = 1) -> str:
    """``0.4321`` -> ``43.2%``."""
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}%"


def interval(mean: float | None, low: float | None, high: float | None,
             digits: int = 3) -> str:
    """``mean [low, high]`` as the interval is (asymmetric allowed); the mean alone
    without one."""
    if low is None or high is None:
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"

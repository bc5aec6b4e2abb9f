"""Strided window views over per-bar features, for the temporal encoders.

Row ``i`` of ``make_windows(x, W)`` is the window of the ``W`` bars ending at
bar ``i`` (bars ``i - W + 1 .. i``, oldest first), so a window never looks
ahead. Rows before the first full window (``i < W - 1``) are padded by
repeating bar 0, which is also causal: it only repeats a bar the row may see.

The windows are a view built with :meth:`torch.Tensor.unfold` over one padded
copy of ``x`` of ``N + W - 1`` rows, so memory is O(N * F), not O(N * F * W).
Indexing a batch, ``windows[rows]``, materialises that batch only: (B, F, W).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["make_windows", "window_rows_within", "windows_nbytes"]


def make_windows(x: Tensor, window: int) -> Tensor:
    """A (N, F, W) view whose row ``i`` holds bars ``i - W + 1 .. i`` of ``x``.

    Args:
        x: (N, F) per-bar features, row i = bar i (chronological).
        window: W >= 1, bars per window.

    Returns:
        (N, F, W) view (no per-window copy): ``out[i, :, -1]`` is ``x[i]`` and
        ``out[i, :, -1 - k]`` is ``x[max(i - k, 0)]``.

    Raises:
        ValueError: ``x`` is not 2-D or ``window`` < 1.
    """
    if x.dim() != 2:
        raise ValueError(f"make_windows needs x of shape (N, F), got {tuple(x.shape)}")
    if window < 1:
        raise ValueError(f"window must be >= 1 bar, got {window}")
    if x.shape[0] == 0:
        return x.new_empty((0, x.shape[1], window))
    pad = x[:1].expand(window - 1, -1)  # repeat bar 0: causal padding
    padded = torch.cat([pad, x]).contiguous()  # (N + W - 1, F): the only copy
    return padded.unfold(0, window, 1)  # (N, F, W) view of `padded`


def window_rows_within(rows: Tensor, allowed: Tensor, window: int) -> Tensor:
    """The subset of ``rows`` whose whole window lies inside ``allowed`` rows.

    A window at row ``i`` reads rows ``max(i - W + 1, 0) .. i``. Self-supervised
    pretraining restricts itself to training bars with this filter, so that in
    walk-forward or purged k-fold layouts a training row just after a
    validation block does not read validation bars through its window.

    Args:
        rows: (R,) int64 candidate rows.
        allowed: (A,) int64 rows that may be read.
        window: W >= 1.

    Returns:
        (R',) int64 rows, in the order given.
    """
    if rows.numel() == 0:
        return rows
    n = int(max(int(rows.max()), int(allowed.max()) if allowed.numel() else 0)) + 1
    ok = torch.zeros(n + 1, dtype=torch.int64)
    ok[allowed.cpu()] = 1
    # csum[j] = number of allowed rows in 0 .. j - 1
    csum = torch.cat([torch.zeros(1, dtype=torch.int64), ok.cumsum(0)])
    r = rows.cpu()
    lo = (r - window + 1).clamp(min=0)
    inside = (csum[r + 1] - csum[lo]) == (r - lo + 1)
    return rows[inside.to(rows.device)]


def windows_nbytes(windows: Tensor) -> int:
    """Bytes held by the storage behind ``windows`` (what the view really costs)."""
    return int(windows.untyped_storage().nbytes())

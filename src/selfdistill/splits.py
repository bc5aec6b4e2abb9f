"""Chronological splits purged by the label intervals.

Each labelled row ``i`` looked at bars ``[start[i], end[i]]`` (see
:mod:`selfdistill.labels`). A split is leak-free when no interval of one set
shares a bar with an interval of another set; :func:`check_no_leak` enforces it.

Between an earlier set A and the following set B, whose first row starts at
bar ``b``:

- purge: A keeps only rows with ``end < b - purge``. With ``purge = 0`` this is
  exactly "no A label looks at a bar where B begins or later"; a positive purge
  widens the gap by that many bars.
- embargo: B drops rows with ``start < b + embargo`` (the first ``embargo`` bars
  of B), against serial correlation leaking across the boundary.

All positions returned are int64 indices into the labelled rows, sorted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from selfdistill.errors import ConfigError, DataError

__all__ = ["Split", "check_no_leak", "purged_kfold", "purged_split", "walk_forward"]

logger = logging.getLogger(__name__)

_FIX = ("give more data, or lower split.purge / split.embargo / labels.horizon, "
        "or change the split fractions")


@dataclass
class Split:
    """Row positions (int64, sorted) of one train / validation / test split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def sizes(self) -> dict[str, int]:
        """Rows per set."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _intervals(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate label intervals: 1-D, same length, end >= start, start non-decreasing."""
    s = np.asarray(start, dtype=np.int64)
    e = np.asarray(end, dtype=np.int64)
    if s.ndim != 1 or s.shape != e.shape:
        raise DataError(f"start and end must be 1-D of equal length, got {s.shape} and {e.shape}")
    if np.any(e < s):
        i = int(np.argmax(e < s))
        raise DataError(f"label interval {i} ends before it starts ([{s[i]}, {e[i]}])")
    if np.any(np.diff(s) < 0):
        raise DataError("label starts must be in chronological (non-decreasing) order")
    return s, e


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"split fraction {name}={value!r} must be in (0, 1)")


def _chain(blocks: list[np.ndarray], start: np.ndarray, end: np.ndarray, purge: int,
           embargo: int) -> list[np.ndarray]:
    """Purge and embargo consecutive chronological blocks at each boundary.

    The boundary between block i and block i + 1 is the first bar of block i + 1
    as assigned, before its own embargo, so purging never loosens.
    """
    out = list(blocks)
    for i in range(len(blocks) - 1):
        if len(blocks[i + 1]) == 0:
            continue
        boundary = start[blocks[i + 1][0]]
        out[i] = out[i][end[out[i]] < boundary - purge]
        out[i + 1] = out[i + 1][start[out[i + 1]] >= boundary + embargo]
    return out


def _require_nonempty(split: Split, before: dict[str, int], what: str) -> Split:
    empty = [k for k, v in split.sizes.items() if v == 0]
    if empty:
        raise DataError(f"{what} left the {'/'.join(empty)} set(s) empty: sizes before "
                        f"purge/embargo {before}, after {split.sizes}; {_FIX}")
    return split


def purged_split(start: np.ndarray, end: np.ndarray, *, train: float, val: float, test: float,
                 purge: int | None = None, embargo: int = 0) -> Split:
    """Chronological train / validation / test split, purged by the label intervals.

    Args:
        start: (L,) first bar of each labelled row, non-decreasing.
        end: (L,) last bar each label looked at.
        train, val, test: fractions of the rows, each in (0, 1), summing to 1.
        purge: extra bars kept clear between an earlier set's label ends and the
            next set's first bar (None = 0; overlap is always removed).
        embargo: bars dropped from the start of the following set.

    Returns:
        A :class:`Split` with no label interval shared between sets.

    Example:
        >>> s = purged_split(np.arange(20), np.arange(20) + 2, train=0.6, val=0.2, test=0.2)
        >>> s.train.tolist(), s.val.tolist(), s.test.tolist()
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [12, 13], [16, 17, 18, 19])
    """
    s, e = _intervals(start, end)
    for name, value in (("train", train), ("val", val), ("test", test)):
        _check_fraction(name, value)
    if abs(train + val + test - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must sum to 1, got train+val+test="
                          f"{train + val + test:g}")
    n = len(s)
    cut1, cut2 = round(train * n), round((train + val) * n)
    rows = np.arange(n, dtype=np.int64)
    blocks = [rows[:cut1], rows[cut1:cut2], rows[cut2:]]
    before = {"train": len(blocks[0]), "val": len(blocks[1]), "test": len(blocks[2])}
    split = Split(*_chain(blocks, s, e, purge or 0, embargo))
    logger.debug("purged split %s -> %s", before, split.sizes)
    return _require_nonempty(split, before, f"purged split of {n} rows")


def walk_forward(start: np.ndarray, end: np.ndarray, *, n_folds: int,
                 window: Literal["expanding", "rolling"] = "expanding", val: float, test: float,
                 purge: int | None = None, embargo: int = 0,
                 min_train: int | None = None) -> list[Split]:
    """Walk-forward folds: train, then validation, then test, moving forward in time.

    The ``n_folds`` test blocks (``test * L`` rows each) tile the end of the data;
    each is preceded by a validation block of ``val * L`` rows and, before that,
    the training rows: all earlier rows (``expanding``) or the last ``min_train``
    rows (``rolling``; default: the first fold's training size). Every boundary
    is purged and embargoed as in :func:`purged_split`.

    Args:
        start, end: (L,) label intervals, start non-decreasing.
        n_folds: number of folds (>= 1).
        window: ``expanding`` or ``rolling`` training window.
        val, test: fractions of all L rows per fold.
        purge, embargo: as in :func:`purged_split`.
        min_train: fewest training rows (before purging) the first fold may have.

    Returns:
        ``n_folds`` splits in chronological order.
    """
    s, e = _intervals(start, end)
    _check_fraction("val", val)
    _check_fraction("test", test)
    if n_folds < 1 or window not in ("expanding", "rolling"):
        raise ConfigError(f"walk_forward needs n_folds >= 1 (got {n_folds}) and window "
                          f"'expanding' or 'rolling' (got {window!r})")
    folds = []
    for k, blocks in enumerate(_walk_forward_blocks(len(s), n_folds, window, val, test,
                                                    min_train)):
        before = dict(zip(("train", "val", "test"), map(len, blocks), strict=True))
        split = Split(*_chain(blocks, s, e, purge or 0, embargo))
        folds.append(_require_nonempty(split, before, f"walk-forward fold {k}"))
    return folds


def _walk_forward_blocks(n: int, n_folds: int, window: str, val: float, test: float,
                         min_train: int | None) -> list[list[np.ndarray]]:
    """Unpurged [train, val, test] row blocks of every fold."""
    n_test, n_val = int(test * n), int(val * n)
    first_test = n - n_folds * n_test
    train0 = first_test - n_val  # training rows of the first fold
    if n_test < 1 or n_val < 1 or train0 < max(1, min_train or 1):
        raise DataError(f"{n} rows cannot hold {n_folds} folds of test={test:g} and val={val:g} "
                        f"(first training window {train0} rows, min_train {min_train}); "
                        "use fewer folds, smaller fractions or more data")
    width = min_train if (window == "rolling" and min_train) else train0
    out = []
    for k in range(n_folds):
        test_lo = first_test + k * n_test
        val_lo = test_lo - n_val
        train_lo = 0 if window == "expanding" else max(0, val_lo - width)
        bounds = ((train_lo, val_lo), (val_lo, test_lo), (test_lo, test_lo + n_test))
        out.append([np.arange(lo, hi, dtype=np.int64) for lo, hi in bounds])
    return out


def _kfold_train(other: np.ndarray, test_rows: np.ndarray, start: np.ndarray,
                 end: np.ndarray, purge: int, embargo: int) -> np.ndarray:
    """Rows of ``other`` whose interval is clear of the test block (purge + embargo)."""
    lo, hi = start[test_rows[0]], end[test_rows].max()
    before = start[other] < lo
    clear_before = end[other] < lo - purge
    clear_after = start[other] > hi + embargo
    return other[np.where(before, clear_before, clear_after)]


def purged_kfold(start: np.ndarray, end: np.ndarray, *, n_folds: int, embargo: int = 0,
                 val: float = 0.2, purge: int = 0) -> list[Split]:
    """Purged k-fold (Lopez de Prado): every block is the test set once.

    Train is every other row whose label interval does not overlap the test
    block's intervals (plus ``purge`` bars before it), minus the rows starting
    within ``embargo`` bars after the test block's last label bar. Validation is
    carved from the chronological end of those training rows (``val * L`` rows);
    the boundary between the remaining training rows and validation is purged
    and embargoed as in :func:`purged_split`.

    Args:
        start, end: (L,) label intervals, start non-decreasing.
        n_folds: number of contiguous test blocks (>= 2).
        embargo: bars after each test block dropped from training.
        val: fraction of all rows used for validation in each fold.
        purge: extra bars kept clear before the test and validation blocks.

    Returns:
        ``n_folds`` splits, fold k testing block k.
    """
    s, e = _intervals(start, end)
    _check_fraction("val", val)
    n = len(s)
    if not 2 <= n_folds <= n:
        raise ConfigError(f"purged_kfold needs 2 <= n_folds <= {n} rows, got n_folds={n_folds}")
    rows = np.arange(n, dtype=np.int64)
    n_val = max(1, int(val * n))
    folds = []
    for k, test_rows in enumerate(np.array_split(rows, n_folds)):
        other = np.concatenate([rows[: test_rows[0]], rows[test_rows[-1] + 1:]])
        pool = _kfold_train(other, test_rows, s, e, purge, embargo)
        train, val_rows = _chain([pool[:-n_val], pool[-n_val:]], s, e, purge, embargo)
        split = Split(train=train, val=val_rows, test=test_rows)
        before = {"train": len(other) - n_val, "val": n_val, "test": len(test_rows)}
        folds.append(_require_nonempty(split, before, f"purged k-fold fold {k}"))
    return folds


def _first_overlap(a: np.ndarray, b: np.ndarray, start: np.ndarray,
                   end: np.ndarray) -> tuple[int, int] | None:
    """A pair (row of a, row of b) whose intervals share a bar, or None."""
    if len(a) == 0 or len(b) == 0:
        return None
    order = b[np.argsort(start[b], kind="stable")]
    b_start = start[order]
    b_end_max = np.maximum.accumulate(end[order])
    k = np.searchsorted(b_start, end[a], side="right")  # b rows starting <= each a's end
    reach = np.where(k > 0, b_end_max[np.maximum(k - 1, 0)], np.iinfo(np.int64).min)
    hits = np.flatnonzero(reach >= start[a])
    if hits.size == 0:
        return None
    i = int(a[hits[0]])
    j = int(order[np.argmax(b_end_max >= start[i])])
    return i, j


def _first_shared(a: np.ndarray, b: np.ndarray, n: int) -> int | None:
    """The smallest row in both ``a`` and ``b`` (positions into ``n`` rows), or None.

    A mark per row, O(n): :func:`numpy.intersect1d` sorts (or hashes) both sets first,
    seconds at millions of rows.
    """
    if len(a) == 0 or len(b) == 0:
        return None
    in_a = np.zeros(n, dtype=bool)
    in_a[a] = True
    shared = b[in_a[b]]
    return int(shared.min()) if shared.size else None


def _check_rows(sets: dict[str, np.ndarray], n: int) -> None:
    for name, rows in sets.items():
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= n):
            raise DataError(f"{name} rows must be positions in 0..{n - 1} of the labelled "
                            f"rows, got {int(rows.min())}..{int(rows.max())}")


def check_no_leak(split: Split, start: np.ndarray, end: np.ndarray) -> None:
    """Raise :class:`DataError` if two sets share a row or a label bar.

    Args:
        split: the split to check.
        start, end: (L,) label intervals the split indexes.
    """
    s, e = np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64)
    sets = {"train": np.asarray(split.train), "val": np.asarray(split.val),
            "test": np.asarray(split.test)}
    _check_rows(sets, len(s))
    for a_name, b_name in (("train", "val"), ("train", "test"), ("val", "test")):
        a, b = sets[a_name], sets[b_name]
        shared = _first_shared(a, b, len(s))
        if shared is not None:
            raise DataError(f"row {shared} is in both {a_name} and {b_name}")
        pair = _first_overlap(a, b, s, e)
        if pair is not None:
            i, j = pair
            raise DataError(f"leak: {a_name} row {i} looks at bars [{s[i]}, {e[i]}], which "
                            f"overlap {b_name} row {j} at bars [{s[j]}, {e[j]}]")

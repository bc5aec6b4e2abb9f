"""Input checks shared by the classic models: features, labels and stored arrays.

Every check raises ``ValueError`` naming the bad value and what would be valid, and
returns a float64 / int64 copy the caller may use without further checks.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["check_arrays", "check_features", "check_labels", "check_positive_int"]


def check_positive_int(value: int, name: str, minimum: int) -> int:
    """``value`` as an int, or ValueError when it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_features(x: np.ndarray, name: str = "x", n_features: int | None = None) -> np.ndarray:
    """(N, F) finite float64 copy of ``x``.

    Args:
        x: (N, F) feature matrix, N >= 1.
        name: how error messages call it.
        n_features: F it must have (None: any F >= 1).

    Raises:
        ValueError: wrong number of dimensions, no rows, wrong F, NaN or inf.
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, features), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least one row and one feature, got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, the model expects {n_features}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} holds {int(bad.sum())} NaN/inf value(s), first at row {row}, column {col} "
            f"({arr[row, col]}); drop or fill warm-up rows first"
        )
    return arr


def check_labels(y: np.ndarray, n_rows: int, n_classes: int, name: str = "y") -> np.ndarray:
    """(N,) int64 copy of ``y``, or ValueError unless it is N integers in ``[0, n_classes)``."""
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise ValueError(f"{name} must have shape ({n_rows},) to match the features, "
                         f"got {arr.shape}")
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    out = arr.astype(np.int64)
    bad = (out < 0) | (out >= n_classes)
    if bad.any():
        raise ValueError(f"{name} holds class id {out[bad][0]}; valid ids are 0..{n_classes - 1}")
    return out


def check_arrays(arrays: Mapping[str, np.ndarray], shapes: Mapping[str, tuple[int | str, ...]],
                 ) -> dict[str, np.ndarray]:
    """Stored arrays checked against symbolic shapes; returns float64 (bool kept) copies.

    Args:
        arrays: name -> array, as loaded from a safetensors file.
        shapes: name -> shape, each dimension an int or a letter ("K", "F", ...);
            a letter must mean the same size everywhere it appears.

    Raises:
        ValueError: a missing or unexpected key, a shape mismatch, or a non-finite value.
    """
    missing, extra = sorted(set(shapes) - set(arrays)), sorted(set(arrays) - set(shapes))
    if missing or extra:
        raise ValueError(f"arrays must have keys {sorted(shapes)}; missing {missing}, "
                         f"unexpected {extra}")
    sizes: dict[str, int] = {}
    out: dict[str, np.ndarray] = {}
    for key, want in shapes.items():
        arr = np.asarray(arrays[key])
        if arr.ndim != len(want):
            raise ValueError(f"{key} must have {len(want)} dimension(s), got shape {arr.shape}")
        for dim, size in zip(want, arr.shape, strict=True):
            expected = sizes.setdefault(dim, size) if isinstance(dim, str) else dim
            if size != expected:
                raise ValueError(f"{key} has shape {arr.shape}; dimension {dim!r} should be "
                                 f"{expected} (expected shape {want})")
        arr = arr.copy() if arr.dtype == np.bool_ else arr.astype(np.float64)
        if arr.dtype != np.bool_ and not np.isfinite(arr).all():
            raise ValueError(f"{key} holds NaN or inf values")
        out[key] = arr
    return out

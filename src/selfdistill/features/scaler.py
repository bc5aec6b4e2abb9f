"""A per-column scaler fitted on training rows only.

The :class:`Scaler` is fitted on training rows only and then applied unchanged
to validation and test rows (normalising over the whole sample, as the source
chapter did, leaks the future). Its state (:meth:`Scaler.to_dict`) travels with
every saved model, so prediction scales new candles exactly as training did.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

from selfdistill.errors import ConfigError, DataError, ModelFileError, NotFittedError

__all__ = ["SCALER_KINDS", "Scaler", "ScalerKind"]

ScalerKind = Literal["standard", "robust", "none"]
SCALER_KINDS: tuple[ScalerKind, ...] = ("standard", "robust", "none")
_CHUNK = 1 << 16  # rows scaled at a time by fit_transform_columns


class Scaler:
    """Per-column centring and scaling, fitted on training rows only.

    ``standard`` uses the mean and standard deviation, ``robust`` the median and
    the inter-quartile range, ``none`` leaves values as they are. Constant
    columns get scale 1. After scaling, values are clipped to ``[-clip, clip]``
    (not for ``none``) and returned as float32.

    Example:
        >>> import numpy as np
        >>> s = Scaler("standard").fit(np.array([[0.0], [2.0]]))
        >>> s.transform(np.array([[1.0], [4.0]])).ravel().tolist()
        [0.0, 3.0]
    """

    def __init__(self, kind: ScalerKind = "standard",
                 clip: float = 10.0) -> None:
        self.kind = kind
        self.clip = clip

    def fit(self, x: np.ndarray) -> Scaler:
        """Learn centre and scale per column.

        Args:
            x: (n_train, F) training rows only; every value finite.

        Returns:
            self, with ``center_`` and ``scale_`` of shape (F,).
        """
        self._check_kind()
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise DataError(f"Scaler.fit needs a non-empty 2-D array (rows, features), "
                            f"got shape {x.shape}")
        bad = np.flatnonzero(~np.isfinite(x).all(axis=0))
        if bad.size:
            raise DataError(f"Scaler.fit got NaN or inf in column(s) {bad.tolist()}; "
                            "drop warm-up rows before fitting")
        stats = [self._column_statistics(x[:, j]) for j in range(x.shape[1])]
        self.center_ = np.array([c for c, _ in stats], dtype=np.float64)
        self.scale_ = np.array([s for _, s in stats], dtype=np.float64)
        return self

    def fit_transform_columns(self, columns: Iterable[tuple[int, np.ndarray]],
                              train: slice | np.ndarray, out: np.ndarray) -> Scaler:
        """Fit and scale one column at a time, writing into a preallocated matrix.

        The same numbers as ``fit(x[train]).transform(x)`` of the full (R, F) float64
        matrix ``x``, without ever holding it: each column is fitted on its training
        rows, scaled in float64 and stored in ``out`` (float32 rounding, like
        :meth:`transform`).

        Args:
            columns: ``(j, values)`` for every column ``j`` of ``out`` once, in any
                order; ``values`` is (R,) float64, finite on the training rows.
            train: the training rows of each column (a slice or positions).
            out: (R, F) array receiving the scaled columns.

        Returns:
            self, fitted (``center_``, ``scale_`` of shape (F,)).
        """
        self._check_kind()
        n_features = out.shape[1]
        center, scale = np.full(n_features, np.nan), np.full(n_features, np.nan)
        for j, values in columns:
            fit_rows = values[train]
            if fit_rows.size == 0 or not np.isfinite(fit_rows).all():
                raise DataError(f"Scaler.fit got no rows or NaN / inf in column {j}; "
                                "drop warm-up rows before fitting")
            center[j], scale[j] = self._column_statistics(fit_rows)
            del fit_rows
            for lo in range(0, len(values), _CHUNK):  # float64 scratch of one chunk only
                out[lo:lo + _CHUNK, j] = self._scaled(values[lo:lo + _CHUNK], center[j], scale[j])
            del values  # before the next column is made
        if np.isnan(center).any():
            raise DataError(f"Scaler.fit_transform_columns got no values for column(s) "
                            f"{np.flatnonzero(np.isnan(center)).tolist()} of {n_features}")
        self.center_, self.scale_ = center, scale
        return self

    def _check_kind(self) -> None:
        if self.kind not in SCALER_KINDS:
            raise ConfigError(f"scaler kind '{self.kind}' is not one of {', '.join(SCALER_KINDS)}")

    def _column_statistics(self, col: np.ndarray) -> tuple[float, float]:
        """(centre, scale) of one column's training values (constant: scale 1)."""
        if self.kind == "none":
            return 0.0, 1.0
        if self.kind == "robust":
            q25, center, q75 = np.percentile(col, [25.0, 50.0, 75.0])
            scale = q75 - q25
        else:
            center, scale = col.mean(), col.std()
        return float(center), float(scale if scale > 1e-12 * max(1.0, abs(center)) else 1.0)

    def _scaled(self, x: np.ndarray, center: np.ndarray | float,
                scale: np.ndarray | float) -> np.ndarray:
        """``(x - center) / scale``, clipped unless ``none``; float64."""
        z = (x - center) / scale
        return z if self.kind == "none" else np.clip(z, -self.clip, self.clip, out=z)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the fitted statistics.

        Args:
            x: (N, F) rows of any split.

        Returns:
            (N, F) float32, ``(x - center) / scale`` clipped to ``[-clip, clip]``.
            NaN stays NaN.
        """
        if not hasattr(self, "center_"):
            raise NotFittedError("Scaler.transform called before fit")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.center_.shape[0]:
            raise DataError(f"Scaler was fitted on {self.center_.shape[0]} features, "
                            f"got an array of shape {x.shape}")
        return self._scaled(x, self.center_, self.scale_).astype(np.float32)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        """``fit(x).transform(x)`` for the training rows."""
        return self.fit(x).transform(x)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (plain lists and floats)."""
        if not hasattr(self, "center_"):
            raise NotFittedError("Scaler.to_dict called before fit")
        return {"kind": self.kind, "clip": float(self.clip),
                "center": [float(v) for v in self.center_],
                "scale": [float(v) for v in self.scale_]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        """Rebuild a fitted scaler from :meth:`to_dict` output."""
        try:
            scaler = cls(d["kind"], clip=float(d["clip"]))
            center = np.asarray(d["center"], dtype=np.float64)
            scale = np.asarray(d["scale"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"scaler state is malformed ({exc!r}); expected keys "
                                 "kind, clip, center, scale") from exc
        valid = (scaler.kind in SCALER_KINDS and center.ndim == 1 and center.shape == scale.shape
                 and np.isfinite(center).all() and (np.isfinite(scale) & (scale > 0)).all())
        if not valid:
            raise ModelFileError(f"scaler state is inconsistent: kind={scaler.kind!r}, "
                                 f"{center.shape[0] if center.ndim else 0} centres, "
                                 f"{scale.shape[0] if scale.ndim else 0} positive finite scales "
                                 "expected to match")
        scaler.center_, scaler.scale_ = center, scale
        return scaler

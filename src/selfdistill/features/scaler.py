"""A per-column scaler fitted on training rows only.

The :class:`Scaler` is fitted on training rows only and then applied unchanged
to validation and test rows (normalising over the whole sample, as the source
chapter did, leaks the future). Its state (:meth:`Scaler.to_dict`) travels with
every saved model, so prediction scales new candles exactly as training did.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from selfdistill.errors import ConfigError, DataError, ModelFileError, NotFittedError

__all__ = ["SCALER_KINDS", "Scaler"]

SCALER_KINDS = ("standard", "robust", "none")


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

    def __init__(self, kind: Literal["standard", "robust", "none"] = "standard",
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
        if self.kind not in SCALER_KINDS:
            raise ConfigError(f"scaler kind '{self.kind}' is not one of {', '.join(SCALER_KINDS)}")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise DataError(f"Scaler.fit needs a non-empty 2-D array (rows, features), "
                            f"got shape {x.shape}")
        bad = np.flatnonzero(~np.isfinite(x).all(axis=0))
        if bad.size:
            raise DataError(f"Scaler.fit got NaN or inf in column(s) {bad.tolist()}; "
                            "drop warm-up rows before fitting")
        self.center_, self.scale_ = self._statistics(x)
        return self

    def _statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_features = x.shape[1]
        if self.kind == "none":
            return np.zeros(n_features), np.ones(n_features)
        if self.kind == "robust":
            q25, center, q75 = np.percentile(x, [25.0, 50.0, 75.0], axis=0)
            scale = q75 - q25
        else:
            center, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(center)), scale, 1.0)
        return center, scale

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
        z = (x - self.center_) / self.scale_
        if self.kind != "none":
            z = np.clip(z, -self.clip, self.clip)
        return z.astype(np.float32)

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

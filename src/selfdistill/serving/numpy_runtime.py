"""Torch-free inference: a NumPy forward of a saved MLP (or multi-exit) model directory.

For a trading process that must answer within microseconds and should not
import torch: :meth:`NumpyModel.from_dir` reads a model directory through
:mod:`selfdistill.modelio` (safetensors + JSON, never pickle) and
:meth:`NumpyModel.predict_proba` maps raw (unscaled) features to class
probabilities. The train-fitted scaler and the calibration temperature are
applied exactly as in training: ``z = clip((x - center) / scale)``, logits / T.

Example (a model directory from the estimator; a run's ``models/<method>`` reads alike):
    >>> import tempfile
    >>> import numpy as np
    >>> from selfdistill import SelfDistillClassifier
    >>> X = np.random.default_rng(0).normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
    >>> clf = SelfDistillClassifier("baseline", epochs=3, random_state=0).fit(X, y)
    >>> model = NumpyModel.from_dir(clf.save(tempfile.mkdtemp()))
    >>> model.predict_proba(X[0]).shape  # (F,) raw features of one bar -> (C,)
    (2,)
    >>> bool(np.allclose(model.predict_proba(X), clf.predict_proba(X), atol=1e-6))
    True
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from selfdistill.errors import DataError, ModelFileError
from selfdistill.modelio.bundle import ModelBundle, load_bundle_arrays
from selfdistill.softmax import softmax

__all__ = ["NumpyModel", "OnnxModel", "latest_features"]

log = logging.getLogger(__name__)

_LINEAR = re.compile(r"^body\.(\d+)\.weight$")


def _gelu(h: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # exact GELU, as torch.nn.GELU()

    out: np.ndarray = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
    return out


def _relu(h: np.ndarray) -> np.ndarray:
    return np.maximum(h, 0.0, out=h)


def _silu(h: np.ndarray) -> np.ndarray:
    out: np.ndarray = h / (1.0 + np.exp(-h))
    return out


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": _relu, "gelu": _gelu, "silu": _silu, "tanh": np.tanh}


@dataclass
class _Member:
    """One network as (W^T, b) float64 per linear layer.

    The scaler's affine part is folded into the first layer and 1 / T into the
    head, so a forward is matmuls and activations only (clipping is done on the
    raw features, see :meth:`NumpyModel._clip_raw`).
    """

    layers: list[tuple[np.ndarray, np.ndarray]]
    activation: Callable[[np.ndarray], np.ndarray]
    constant: np.ndarray | None = None  # (C,) logits / T of a constant (majority) model

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, F) or (F,) clipped raw features -> (N, C) or (C,) logits / T."""
        if self.constant is not None:
            return np.broadcast_to(self.constant, (*x.shape[:-1], self.constant.shape[0]))
        h = x
        for w_t, b in self.layers[:-1]:
            h = h @ w_t  # (N, H)
            h += b
            h = self.activation(h)
        w_t, b = self.layers[-1]
        out: np.ndarray = h @ w_t  # (N, C)
        out += b
        return out


def _fold(layers: list[tuple[np.ndarray, np.ndarray]], center: np.ndarray,
          scale: np.ndarray, temperature: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fold ``z = (x - center) / scale`` into layer 0 and ``/ temperature`` into the head."""
    (w0, b0), *rest = layers
    w0f = w0 / scale[:, None]  # (F, H): x @ (W^T / s) == ((x / s) @ W^T)
    folded = [(w0f, b0 - center @ w0f), *rest]
    w_h, b_h = folded[-1]
    folded[-1] = (w_h / temperature, b_h / temperature)
    return [(np.ascontiguousarray(w), np.ascontiguousarray(b)) for w, b in folded]


def _mlp_layers(arrays: Mapping[str, np.ndarray],
                spec: Mapping[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Linear layers in order (``body.<i>`` by index, then ``head``), checked for shape."""
    idx = sorted(int(m.group(1)) for k in arrays if (m := _LINEAR.match(k)))
    return _checked_chain(arrays, [f"body.{i}" for i in idx] + ["head"], spec, "MLP")


def _checked_chain(arrays: Mapping[str, np.ndarray], names: list[str], spec: Mapping[str, Any],
                   what: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The linear layers ``names`` as (W^T, b) float64, checked to chain F -> ... -> C."""
    width = int(spec["n_features"])
    layers = []
    for name in names:
        w, b = arrays.get(f"{name}.weight"), arrays.get(f"{name}.bias")
        if w is None or b is None or w.ndim != 2 or w.shape != (b.shape[0], width):
            raise ModelFileError(f"{what} weights '{name}' are missing or do not chain "
                                 f"(expected input width {width})")
        layers.append((w.T.astype(np.float64), b.astype(np.float64)))
        width = w.shape[0]
    if width != int(spec["n_classes"]):
        raise ModelFileError(f"{what} head has {width} outputs, spec says {spec['n_classes']}")
    return layers


def _multi_exit_layers(arrays: Mapping[str, np.ndarray], spec: Mapping[str, Any],
                       output: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exit ``output`` of a multi-exit MLP as a plain chain of linear layers.

    Blocks 0..output (``blocks.<i>.0``), then for a shallow exit its bottleneck
    (``bottlenecks.<i>.0``), then its classifier; each but the last is followed by
    the activation, exactly as :class:`~selfdistill.nn.multi_exit.MultiExitMLP`.
    """
    depth = len(spec.get("hidden", ()))
    if not 0 <= output < depth:
        raise ModelFileError(f"exit {output} is outside the network's exits 0..{depth - 1}")
    names = [f"blocks.{i}.0" for i in range(output + 1)]
    if output < depth - 1:
        names.append(f"bottlenecks.{output}.0")
    names.append(f"classifiers.{output}")
    return _checked_chain(arrays, names, spec, f"multi-exit (exit {output})")


def _member(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
            scaler: tuple[np.ndarray, np.ndarray], temperature: float) -> _Member:
    spec = meta["spec"]
    kind = spec.get("kind")
    output = meta.get("output")
    if kind == "constant" and "log_probs" in arrays:
        return _Member([], _relu, constant=arrays["log_probs"].astype(np.float64) / temperature)
    if kind not in ("mlp", "multi_exit") or (output is not None) != (kind == "multi_exit"):
        raise ModelFileError(f"model kind '{kind}' has no NumPy forward; NumPy serves "
                             "'mlp', one exit of 'multi_exit', and 'constant' "
                             "(serve other kinds with SelfDistillClassifier.load() or "
                             "`selfdistill predict`)")
    act = _ACTIVATIONS.get(spec.get("activation", "relu"))
    if act is None:
        raise ModelFileError(f"activation {spec.get('activation')!r} is not one of: "
                             f"{', '.join(_ACTIVATIONS)}")
    layers = (_multi_exit_layers(arrays, spec, int(output)) if output is not None
              else _mlp_layers(arrays, spec))
    return _Member(_fold(layers, *scaler, temperature), act)


def _scaler_arrays(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(center, scale, clip) of the stored scaler; identity when there is none."""
    n = len(bundle.feature_names)
    sc = bundle.scaler
    if sc is None:
        return np.zeros(n), np.ones(n), None
    from selfdistill.features import Scaler

    scaler = Scaler.from_dict(sc)  # validates kind, shapes, positive finite scales
    if scaler.center_.shape != (n,):
        raise ModelFileError(f"'{bundle.path}': the scaler has {scaler.center_.shape[0]} "
                             f"columns but the model names {n} features")
    return scaler.center_, scaler.scale_, None if scaler.kind == "none" else float(scaler.clip)


class NumpyModel:
    """A model directory evaluated with NumPy only (no torch import).

    Attributes:
        bundle: the model directory's metadata (classes, feature names, ...).
        classes: (C,) label values in output order.
        feature_names: the F raw feature columns :meth:`predict_proba` expects.
    """

    def __init__(self, members: list[_Member], bundle: ModelBundle, center: np.ndarray,
                 scale: np.ndarray, clip: float | None) -> None:
        self._members = members
        self._selected = members[bundle.selected]
        self.bundle = bundle
        self.classes = bundle.classes
        self.feature_names = bundle.feature_names
        self._n_features = len(center)
        # clip((x - c) / s, -k, k) == (clip(x, c - k s, c + k s) - c) / s  since s > 0
        self._lo = None if clip is None else center - clip * scale
        self._hi = None if clip is None else center + clip * scale

    @classmethod
    def from_dir(cls, path: str | Path) -> NumpyModel:
        """Load a model directory written by ``save_bundle`` / the estimator / ``run``."""
        arrays, metas, bundle = load_bundle_arrays(path)
        center, scale, clip = _scaler_arrays(bundle)
        members = [_member(a, m, (center, scale), bundle.temperature)
                   for a, m in zip(arrays, metas, strict=True)]
        log.debug("NumPy model from %s: %d member(s)", path, len(members))
        return cls(members, bundle, center, scale, clip)

    @property
    def n_members(self) -> int:
        return len(self._members)

    def _clip_raw(self, x: np.ndarray) -> np.ndarray:
        if self._lo is None or self._hi is None:
            return x
        return np.minimum(np.maximum(x, self._lo), self._hi)

    def predict_proba_one(self, x: np.ndarray) -> np.ndarray:
        """The latency path: (F,) raw features of one bar -> (C,) probabilities.

        Minimal checks (shape only) so one call costs a few microseconds.
        """
        if x.shape != (self._n_features,):
            raise DataError(f"expected ({self._n_features},) features, got {x.shape}")
        return softmax(self._selected.logits(self._clip_raw(x.astype(np.float64, copy=False))))

    def _as_2d(self, x: np.ndarray | pd.DataFrame) -> np.ndarray:
        if isinstance(x, pd.DataFrame):
            missing = [c for c in self.feature_names if c not in x.columns]
            if missing:
                raise DataError(f"feature columns {missing} are missing; the model needs "
                                f"{list(self.feature_names)}")
            x = x[list(self.feature_names)].to_numpy(dtype=np.float64)
        arr = np.asarray(x, dtype=np.float64)
        arr = arr.reshape(1, -1) if arr.ndim == 1 else arr
        if arr.ndim != 2 or arr.shape[1] != self._n_features:
            raise DataError(f"expected features of shape (N, {self._n_features}) or "
                            f"({self._n_features},), got {np.shape(x)}")
        return arr

    def predict_proba(self, x: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Class probabilities of the selected member.

        Args:
            x: (N, F) or (F,) raw features (a DataFrame is matched by column name).

        Returns:
            (N, C) float64 probabilities, or (C,) for a 1-D input.
        """
        if isinstance(x, np.ndarray) and x.ndim == 1:
            return self.predict_proba_one(x)
        return softmax(self._selected.logits(self._clip_raw(self._as_2d(x))))

    def predict_proba_members(self, x: np.ndarray | pd.DataFrame) -> np.ndarray:
        """(M, N, C) probabilities of every member (for generation disagreement)."""
        z = self._clip_raw(self._as_2d(x))
        return np.stack([softmax(m.logits(z)) for m in self._members])

    def member_logits(self, x: np.ndarray | pd.DataFrame) -> np.ndarray:
        """(M, N, C) logits / T of every member, from (N, F) or (F,) raw features.

        ``softmax(T * z)`` are a member's own probabilities (temperature 1, as generation
        disagreement uses them), ``softmax(z)`` its calibrated ones.
        """
        z = self._clip_raw(self._as_2d(x))
        return np.stack([m.logits(z) for m in self._members])

    def predict(self, x: np.ndarray | pd.DataFrame) -> np.ndarray:
        """(N,) class labels (values of ``classes``) of the selected member."""
        return np.asarray(self.classes[self.predict_proba(self._as_2d(x)).argmax(axis=1)])


def latest_features(candles: pd.DataFrame, feature_config: Mapping[str, Any] | None,
                    feature_names: tuple[str, ...] | list[str]) -> np.ndarray:
    """(F,) features of the newest candle, computed from the last bars only.

    Every feature is a trailing window, so the last ``warmup + 1`` bars give the
    same row as the full history. Raises DataError when the newest row is incomplete.
    """
    from selfdistill.features import compute_features, feature_warmup, pin_volume

    cfg = pin_volume(feature_config, feature_names)  # the model's volume setting, not auto
    tail = candles.iloc[-(feature_warmup(cfg) + 2):]
    row = compute_features(tail, cfg)[list(feature_names)].to_numpy(dtype=np.float64)[-1]
    if not np.isfinite(row).all():
        raise DataError(f"the newest candle's features are incomplete (need at least "
                        f"{feature_warmup(cfg) + 1} gap-free bars), got {row.tolist()}")
    return row


class OnnxModel:
    """An exported ``.onnx`` model (see :mod:`selfdistill.serving.onnx`) run with
    onnxruntime: single thread, telemetry off, no torch import.

    Shapes: ``predict_proba`` maps (N, F) or (F,) raw features to (N, C) or (C,).
    """

    def __init__(self, path: str | Path, *, bundle: ModelBundle | None = None,
                 threads: int = 1) -> None:
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before the import
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own error types
            raise ModelFileError(f"cannot load ONNX model '{path}': {exc}") from exc
        self.bundle = bundle
        self._input = self.session.get_inputs()[0].name

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities from raw features (float32 inside the graph)."""
        arr = np.asarray(x, dtype=np.float32)
        one = arr.ndim == 1
        out = self.session.run(None, {self._input: arr.reshape(1, -1) if one else arr})[0]
        proba = np.asarray(out, dtype=np.float32)
        return proba[0] if one else proba

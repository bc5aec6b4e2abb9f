"""Model files: safetensors weights + JSON metadata. Loading never unpickles.

One network (a *member*: a Born-Again generation, a snapshot, ...) is stored as
``<stem>.safetensors`` (tensors only) and ``<stem>.json`` (architecture spec,
member keys, library and format versions, the sha256 of the weights file).
:mod:`selfdistill.modelio.bundle` bundles the members of one lineage into a model
directory (the format the estimator, ``selfdistill run`` and ``predict`` share).

Safety: nothing here calls :mod:`pickle` (or ``torch.load``). Paths that look
like pickles are refused by name, every JSON file is parsed with :mod:`json`
only (:mod:`selfdistill.modelio.jsonio`), weights are parsed by safetensors only
after their sha256 matched, member file names may not leave the directory, and a
file from a newer format raises :class:`ModelFileError` asking to upgrade. This
module imports torch only inside the functions that build or save ``nn.Module``
objects, so the NumPy path (:func:`load_arrays`) stays torch-free.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from selfdistill._version import __version__
from selfdistill.atomic import atomic_write_bytes
from selfdistill.errors import ModelFileError
from selfdistill.modelio.jsonio import (
    FORMAT_VERSION,
    check_format_version,
    plain_sibling,
    read_json_object,
    refuse_pickle,
    write_json_atomic,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = ["header_elements", "load_arrays", "load_model", "read_metadata", "save_model"]

log = logging.getLogger(__name__)

# A spec may describe at most this many times the weights in its file (plus the slack,
# in elements) before it is built: more is refused without allocating it.
_ALLOC_FACTOR, _ALLOC_SLACK = 2, 1_000_000


def save_model(model: nn.Module, stem: str | Path, metadata: Mapping[str, Any]) -> Path:
    """Write ``stem.safetensors`` and ``stem.json``; return the JSON path.

    Args:
        model: a network with ``spec()`` (see :mod:`selfdistill.nn.registry`).
        stem: path without suffix.
        metadata: JSON-serialisable extras stored in the JSON (e.g. member keys).
    """
    from safetensors.torch import save

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    spec = getattr(model, "spec", None)
    if not callable(spec):
        raise ModelFileError(f"{type(model).__name__} has no spec(); it cannot be saved")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = save(tensors)
    weights = stem.with_name(stem.name + ".safetensors")
    atomic_write_bytes(weights, payload)
    meta = {**metadata, "format_version": FORMAT_VERSION, "selfdistill_version": __version__,
            "spec": spec(), "weights": weights.name,
            "sha256": hashlib.sha256(payload).hexdigest()}
    meta_path = stem.with_name(stem.name + ".json")
    write_json_atomic(meta_path, meta)
    return meta_path


def read_metadata(stem: str | Path) -> dict[str, Any]:
    """The checked JSON metadata of one member (``stem``, ``stem.json`` or ``.safetensors``)."""
    path = Path(stem)
    refuse_pickle(path)
    path = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    meta_path = path.with_name(path.name + ".json")
    meta = read_json_object(meta_path)
    check_format_version(meta, meta_path)
    if not isinstance(meta.get("spec"), dict) or not isinstance(meta.get("sha256"), str):
        raise ModelFileError(f"'{meta_path}' lacks the 'spec' or 'sha256' of its weights")
    meta["_path"] = str(meta_path)
    return meta


def _verified_weights(meta: Mapping[str, Any]) -> bytes:
    meta_path = Path(meta["_path"])
    weights = plain_sibling(meta_path.parent, meta.get("weights"), "weights file")
    refuse_pickle(weights)
    if not weights.is_file():
        raise ModelFileError(f"weights '{weights}' do not exist")
    data = weights.read_bytes()  # hash and parse the same bytes
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ModelFileError(f"weights '{weights}' do not match the sha256 in '{meta_path}': "
                             "the file was modified or truncated")
    return data


def load_arrays(stem: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Torch-free: the member's tensors as NumPy arrays, and its metadata."""
    from safetensors.numpy import load

    meta = read_metadata(stem)
    data = _verified_weights(meta)
    try:
        arrays = load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"cannot parse weights of '{meta['_path']}': {exc}") from exc
    _refuse_non_finite(arrays.items(), meta)
    return arrays, meta


def load_model(stem: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model written by :func:`save_model` (eval mode); raise ModelFileError if off."""
    from safetensors.torch import load

    from selfdistill.nn.registry import model_from_spec

    meta = read_metadata(stem)
    data = _verified_weights(meta)
    _check_spec_size(meta, data)
    try:
        model = model_from_spec(meta["spec"])
        model.load_state_dict(load(data))
    except Exception as exc:
        raise ModelFileError(f"cannot load the model of '{meta['_path']}': {exc}") from exc
    _refuse_non_finite(((k, v.numpy()) for k, v in model.state_dict().items()), meta)
    model.eval()
    return model, meta


def header_elements(data: bytes) -> int:
    """Elements of all tensors a safetensors payload declares, read from its header only."""
    import json

    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if size < 2 or 8 + size > len(data):
        raise ValueError("the safetensors header is missing or truncated")
    header = json.loads(data[8:8 + size])
    if not isinstance(header, dict):
        raise ValueError("the safetensors header is not a JSON object")
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise ValueError(f"tensor {name!r} has no valid shape")
        total += int(np.prod(shape, dtype=object))
    return total


def _check_spec_size(meta: Mapping[str, Any], data: bytes) -> None:
    """Refuse a spec that needs more weights than the file holds, before allocating it.

    The spec is built on PyTorch's ``meta`` device (shapes only, no memory), so a
    tampered spec (``hidden: [10**6, 10**6]``) is caught without allocating terabytes.
    A spec within a small multiple of the file goes on to ``load_state_dict``, which
    checks every shape exactly (and costs at most that much memory).
    """
    import torch

    from selfdistill.nn.registry import model_from_spec

    path = meta["_path"]
    try:
        have = header_elements(data)
        with torch.device("meta"):
            shell = model_from_spec(meta["spec"])
        want = sum(t.numel() for t in shell.state_dict().values())
    except Exception as exc:  # a malformed spec or header, whatever the builder raised
        raise ModelFileError(f"cannot load the model of '{path}': {exc}") from exc
    if want > _ALLOC_FACTOR * have + _ALLOC_SLACK:
        raise ModelFileError(
            f"cannot load the model of '{path}': its spec describes {want:,} weights but the "
            f"weights file holds {have:,}; the spec was altered or belongs to another model, "
            "so it is not built")


def _refuse_non_finite(tensors: Iterable[tuple[str, np.ndarray]],
                       meta: Mapping[str, Any]) -> None:
    """A model whose weights hold NaN or inf would predict garbage with exit 0: refuse it."""
    for name, values in tensors:
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            raise ModelFileError(
                f"'{meta['_path']}': weight '{name}' holds NaN or infinite values (training "
                "diverged, or the file was altered); retrain the model")

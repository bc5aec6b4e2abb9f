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
from collections.abc import Mapping
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

__all__ = ["load_arrays", "load_model", "read_metadata", "save_model"]

log = logging.getLogger(__name__)


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
        raise ModelFileError(f"cannot parse weights of '{meta['_path']}': {exc}") from None
    return arrays, meta


def load_model(stem: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model written by :func:`save_model` (eval mode); raise ModelFileError if off."""
    from safetensors.torch import load

    from selfdistill.nn.registry import model_from_spec

    meta = read_metadata(stem)
    data = _verified_weights(meta)
    try:
        model = model_from_spec(meta["spec"])
        model.load_state_dict(load(data))
    except Exception as exc:
        raise ModelFileError(f"cannot load the model of '{meta['_path']}': {exc}") from None
    model.eval()
    return model, meta

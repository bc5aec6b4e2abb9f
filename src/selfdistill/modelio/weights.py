"""Model files: safetensors weights + JSON metadata. Loading never unpickles.

One network (a *member*: a Born-Again generation, a snapshot, ...) is stored as
``<stem>.safetensors`` (tensors only) and ``<stem>.json`` (architecture spec,
member keys, library and format versions, the sha256 of the weights file).
:mod:`selfdistill.modelio.bundle` bundles the members of one lineage into a model
directory (the format the estimator, ``selfdistill run`` and ``predict`` share).

Safety: nothing here calls :mod:`pickle` (or ``torch.load``). Paths that look
like pickles are refused by name, every JSON file is parsed with :mod:`json`
only, weights are parsed by safetensors only after their sha256 matched, member
file names may not leave the directory, and a file from a newer format raises
:class:`ModelFileError` asking to upgrade. This module imports torch only inside
the functions that build ``nn.Module`` objects, so the NumPy path stays torch-free.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from selfdistill import __version__
from selfdistill.errors import ModelFileError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "FORMAT_VERSION",
    "check_format_version",
    "json_safe",
    "load_arrays",
    "load_model",
    "plain_sibling",
    "read_json_object",
    "read_metadata",
    "refuse_pickle",
    "save_model",
    "write_json_atomic",
]

log = logging.getLogger(__name__)

#: Bump on any change an older reader would misread; older files stay readable.
FORMAT_VERSION = 1
_MAX_JSON_BYTES = 16 * 2**20
_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".joblib", ".bin", ".ckpt"})
_SAFE_STEM = re.compile(r"^[A-Za-z0-9_.-]+$")


# ------------------------------------------------------------------ small helpers


def refuse_pickle(path: Path) -> None:
    """Raise ModelFileError for a path whose suffix says pickle / torch checkpoint."""
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelFileError(
            f"'{path}' looks like a pickle / torch checkpoint ({path.suffix}); selfdistill "
            "never unpickles. Pass a model directory holding model.json (or a .json / "
            ".safetensors pair) written by selfdistill")


def read_json_object(path: Path) -> dict[str, Any]:
    """Parse a JSON object from ``path`` with clear errors; never anything but json."""
    refuse_pickle(path)
    if not path.is_file():
        raise ModelFileError(f"model metadata '{path}' does not exist")
    if path.stat().st_size > _MAX_JSON_BYTES:
        raise ModelFileError(f"model metadata '{path}' is larger than 16 MiB; not a model file")
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(
            f"model metadata '{path}' is not valid JSON (truncated or not a model file): "
            f"{exc}") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"model metadata '{path}' must hold a JSON object")
    return obj


def json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars / arrays to Python, NaN and inf to None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, obj: Mapping[str, Any]) -> bytes:
    """Write ``obj`` as JSON via a temporary file; return the bytes written."""
    data = json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False,
                      default=str).encode("utf-8")  # str(): informational extras only
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # readers never see a half-written file
    return data


def check_format_version(meta: Mapping[str, Any], path: Path) -> None:
    """Raise ModelFileError unless ``meta`` has a format version this library reads."""
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"'{path}' has no valid format_version (got {version!r}); "
                             "it was not written by selfdistill")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"'{path}' has model format version {version}, newer than this selfdistill "
            f"{__version__} can read (format {FORMAT_VERSION}; written by selfdistill "
            f"{meta.get('selfdistill_version', '?')}); upgrade selfdistill to load it")


def plain_sibling(base: Path, name: object, what: str) -> Path:
    """``base / name`` for a plain file name that cannot leave ``base``."""
    if not isinstance(name, str) or not _SAFE_STEM.match(name) or name in (".", ".."):
        raise ModelFileError(f"{what} name {name!r} in '{base}' is not a plain file name")
    return base / name


# -------------------------------------------------------------------- one member


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
    tmp = weights.with_name(weights.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, weights)
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

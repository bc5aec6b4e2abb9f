"""The checked JSON side of model files: never pickle, plain names, format versions.

Every JSON file of a model directory or member is read by :func:`read_json_object`
(``json`` only, size-capped, refusing paths that look like pickles) and checked by
:func:`check_format_version` (a file from a newer format asks to upgrade); member
file names go through :func:`plain_sibling`, so they cannot leave their directory.
:func:`write_json_atomic` writes through :func:`selfdistill.atomic.atomic_write`, so
readers never see a half-written file. NumPy only; no torch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from selfdistill._version import __version__
from selfdistill.atomic import atomic_write_bytes
from selfdistill.errors import ModelFileError

__all__ = [
    "FORMAT_VERSION",
    "check_format_version",
    "json_safe",
    "plain_sibling",
    "read_json_object",
    "refuse_pickle",
    "write_json_atomic",
]

#: Bump on any change an older reader would misread; older files stay readable.
FORMAT_VERSION = 1
_MAX_JSON_BYTES = 16 * 2**20
_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".joblib", ".bin", ".ckpt"})
_SAFE_STEM = re.compile(r"^[A-Za-z0-9_.-]+$")


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
    atomic_write_bytes(path, data)  # readers never see a half-written file
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

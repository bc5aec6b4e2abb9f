"""Model files: safetensors weights + JSON metadata. Loading never unpickles.

A model is stored as ``<stem>.safetensors`` (tensors only) and ``<stem>.json``
(architecture spec, classes, feature names, scaler statistics, member keys,
library and format versions, the weights' sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from selfdistill import __version__
from selfdistill.errors import ModelFileError
from selfdistill.nn.factory import model_from_spec

__all__ = ["FORMAT_VERSION", "load_model", "save_model"]

FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_model(model: nn.Module, stem: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``stem.safetensors`` and ``stem.json``; return the JSON path."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights = stem.with_suffix(".safetensors")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = weights.with_suffix(".safetensors.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, weights)
    spec = model.spec() if hasattr(model, "spec") else {}
    meta = {"format_version": FORMAT_VERSION, "selfdistill_version": __version__,
            "spec": spec, "weights": weights.name, "sha256": _sha256(weights), **metadata}
    meta_path = stem.with_suffix(".json")
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    return meta_path


def load_model(stem: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model written by :func:`save_model`; raise ModelFileError if anything is off."""
    stem = Path(stem)
    meta_path = stem.with_suffix(".json")
    if not meta_path.is_file():
        raise ModelFileError(f"model metadata '{meta_path}' does not exist")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"model metadata '{meta_path}' is not valid JSON: {exc}") from None
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            f"'{meta_path}' has model format {meta.get('format_version')}, newer than this "
            f"selfdistill ({__version__}, format {FORMAT_VERSION}) can read; upgrade selfdistill")
    weights = meta_path.with_name(meta.get("weights", stem.name + ".safetensors"))
    if not weights.is_file() or _sha256(weights) != meta.get("sha256"):
        raise ModelFileError(f"weights '{weights}' are missing or do not match their checksum")
    try:
        model = model_from_spec(meta["spec"])
        model.load_state_dict(load_file(str(weights)))
    except Exception as exc:
        raise ModelFileError(f"cannot load weights '{weights}': {exc}") from None
    model.eval()
    return model, meta

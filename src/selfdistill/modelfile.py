"""Model files: safetensors weights + JSON metadata. Loading never unpickles.

One network (a *member*: a Born-Again generation, a snapshot, ...) is stored as
``<stem>.safetensors`` (tensors only) and ``<stem>.json`` (architecture spec,
member keys, library and format versions, the sha256 of the weights file).

A *model directory* bundles the members of one lineage with everything
inference needs, in ``model.json``::

    DIR/
      model.json            classes, feature names, feature config, scaler
                            statistics, calibration temperature, selected member,
                            member list (file stem, keys, sha256 of its JSON)
      member_0.json         spec + keys + sha256 of member_0.safetensors
      member_0.safetensors
      ...

The estimator, ``selfdistill run`` (``models/<method>/``), ``selfdistill
predict`` and the NumPy / ONNX inference paths all read and write this format.

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
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from selfdistill import __version__
from selfdistill.errors import ModelFileError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "ModelBundle",
    "load_arrays",
    "load_bundle_arrays",
    "load_bundle_models",
    "load_model",
    "read_bundle",
    "read_metadata",
    "save_bundle",
    "save_model",
]

log = logging.getLogger(__name__)

#: Bump on any change an older reader would misread; older files stay readable.
FORMAT_VERSION = 1
MANIFEST = "model.json"
_KIND = "selfdistill-model"
_MAX_JSON_BYTES = 16 * 2**20
_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".joblib", ".bin", ".ckpt"})
_SAFE_STEM = re.compile(r"^[A-Za-z0-9_.-]+$")


# ------------------------------------------------------------------ small helpers


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelFileError(
            f"'{path}' looks like a pickle / torch checkpoint ({path.suffix}); selfdistill "
            "never unpickles. Pass a model directory holding model.json (or a .json / "
            ".safetensors pair) written by selfdistill")


def _read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object from ``path`` with clear errors; never anything but json."""
    _refuse_pickle(path)
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


def _write_json(path: Path, obj: Mapping[str, Any]) -> bytes:
    data = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False).encode("utf-8")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # readers never see a half-written file
    return data


def _check_version(meta: Mapping[str, Any], path: Path) -> None:
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"'{path}' has no valid format_version (got {version!r}); "
                             "it was not written by selfdistill")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"'{path}' has model format version {version}, newer than this selfdistill "
            f"{__version__} can read (format {FORMAT_VERSION}; written by selfdistill "
            f"{meta.get('selfdistill_version', '?')}); upgrade selfdistill to load it")


def _sibling(base: Path, name: object, what: str) -> Path:
    """``base / name`` for a plain file name that cannot leave ``base``."""
    if not isinstance(name, str) or not _SAFE_STEM.match(name) or name in (".", ".."):
        raise ModelFileError(f"{what} name {name!r} in '{base}' is not a plain file name")
    return base / name


# -------------------------------------------------------------------- one member


def save_model(model: nn.Module, stem: str | Path, metadata: Mapping[str, Any]) -> Path:
    """Write ``stem.safetensors`` and ``stem.json``; return the JSON path.

    Args:
        model: a network with ``spec()`` (see :mod:`selfdistill.nn.factory`).
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
    _write_json(meta_path, meta)
    return meta_path


def read_metadata(stem: str | Path) -> dict[str, Any]:
    """The checked JSON metadata of one member (``stem``, ``stem.json`` or ``.safetensors``)."""
    path = Path(stem)
    _refuse_pickle(path)
    path = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    meta_path = path.with_name(path.name + ".json")
    meta = _read_json(meta_path)
    _check_version(meta, meta_path)
    if not isinstance(meta.get("spec"), dict) or not isinstance(meta.get("sha256"), str):
        raise ModelFileError(f"'{meta_path}' lacks the 'spec' or 'sha256' of its weights")
    meta["_path"] = str(meta_path)
    return meta


def _verified_weights(meta: Mapping[str, Any]) -> bytes:
    meta_path = Path(meta["_path"])
    weights = _sibling(meta_path.parent, meta.get("weights"), "weights file")
    _refuse_pickle(weights)
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

    from selfdistill.nn.factory import model_from_spec

    meta = read_metadata(stem)
    data = _verified_weights(meta)
    try:
        model = model_from_spec(meta["spec"])
        model.load_state_dict(load(data))
    except Exception as exc:
        raise ModelFileError(f"cannot load the model of '{meta['_path']}': {exc}") from None
    model.eval()
    return model, meta


# ------------------------------------------------------------- model directories


@dataclass
class ModelBundle:
    """A model directory as read from ``model.json`` (no weights loaded yet).

    ``classes`` (C,) are the label values in output order; ``member_stems`` /
    ``member_keys`` (e.g. ``{"generation": 2}``) list the members; ``selected`` is the
    member chosen on validation (used by predict); ``temperature`` divides the logits
    (calibration, 1.0: none); ``scaler`` is the train-fitted scaler's ``to_dict()``
    (None: inputs already scaled); ``feature_config`` is the ``features`` config
    section; ``extra`` holds anything else the writer stored (label config, ...).
    """

    path: Path
    classes: np.ndarray
    feature_names: tuple[str, ...]
    member_stems: list[Path]
    member_keys: list[dict[str, Any]]
    selected: int
    temperature: float = 1.0
    scaler: dict[str, Any] | None = None
    feature_config: dict[str, Any] | None = None
    method: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_members(self) -> int:
        return len(self.member_stems)


_CLASS_KINDS = {"i": int, "u": int, "f": float, "b": bool, "U": str}


def _encode_classes(classes: np.ndarray | Sequence[Any]) -> dict[str, Any]:
    arr = np.asarray(classes)
    kind = arr.dtype.kind
    if kind in _CLASS_KINDS:
        return {"values": [_CLASS_KINDS[kind](v) for v in arr.tolist()], "dtype": arr.dtype.str}
    if kind == "O" and all(isinstance(v, str | int | float | bool) for v in arr.tolist()):
        return {"values": arr.tolist(), "dtype": "object"}
    raise ModelFileError(f"class labels of dtype {arr.dtype} cannot be stored; use strings, "
                         "integers, floats or booleans")


def _decode_classes(obj: object, path: Path) -> np.ndarray:
    if not isinstance(obj, dict) or not isinstance(obj.get("values"), list) \
            or not obj["values"] or not isinstance(dtype := obj.get("dtype"), str):
        raise ModelFileError(f"'{path}' has no valid 'classes' entry")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise ModelFileError(f"'{path}' has an unknown classes dtype {dtype!r}") from None
    if np_dtype.kind not in "iufbUO":
        raise ModelFileError(f"'{path}' has a classes dtype {dtype!r} that is not allowed")
    return np.array(obj["values"], dtype=np_dtype)


def save_bundle(
    directory: str | Path,
    models: Sequence[nn.Module],
    *,
    member_keys: Sequence[Mapping[str, Any]],
    classes: np.ndarray | Sequence[Any],
    feature_names: Sequence[str],
    selected: int,
    method: str = "",
    temperature: float = 1.0,
    scaler: Mapping[str, Any] | None = None,
    feature_config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model directory (members first, ``model.json`` last); return its path."""
    directory = Path(directory)
    _refuse_pickle(directory)
    if not models or len(models) != len(member_keys) or not 0 <= selected < len(models):
        raise ModelFileError(f"save_bundle needs members with keys and a selected index in "
                             f"range (got {len(models)} models, {len(member_keys)} keys, "
                             f"selected={selected})")
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("member_*"):  # stale members of an earlier save
        if re.fullmatch(r"member_\d+\.(json|safetensors)", old.name):
            old.unlink()
    members = []
    for i, (model, keys) in enumerate(zip(models, member_keys, strict=True)):
        meta_path = save_model(model, directory / f"member_{i}", {"keys": dict(keys)})
        members.append({"file": f"member_{i}", "keys": dict(keys),
                        "sha256": hashlib.sha256(meta_path.read_bytes()).hexdigest()})
    manifest = {
        "kind": _KIND, "format_version": FORMAT_VERSION, "selfdistill_version": __version__,
        "method": method, "classes": _encode_classes(classes),
        "feature_names": [str(f) for f in feature_names], "selected": int(selected),
        "temperature": float(temperature), "scaler": dict(scaler) if scaler else None,
        "feature_config": dict(feature_config) if feature_config else None,
        "members": members, "extra": dict(extra or {}),
    }
    _write_json(directory / MANIFEST, manifest)
    log.info("saved %d member(s) of '%s' to %s", len(models), method, directory)
    return directory


def _manifest_path(path: str | Path) -> Path:
    path = Path(path)
    _refuse_pickle(path)
    return path / MANIFEST if path.is_dir() or not path.suffix else path


def read_bundle(path: str | Path) -> ModelBundle:
    """Read and check a model directory's ``model.json`` (the directory or the file)."""
    manifest_path = _manifest_path(path)
    meta = _read_json(manifest_path)
    if meta.get("kind") != _KIND:
        raise ModelFileError(f"'{manifest_path}' is not a selfdistill model directory manifest")
    _check_version(meta, manifest_path)
    base = manifest_path.parent
    members = meta.get("members")
    if not isinstance(members, list) or not members:
        raise ModelFileError(f"'{manifest_path}' lists no members")
    stems, keys = [], []
    for m in members:
        if not isinstance(m, dict):
            raise ModelFileError(f"'{manifest_path}' has a malformed member entry {m!r}")
        stem = _sibling(base, m.get("file"), "member file")
        member_json = stem.with_name(stem.name + ".json")
        if not member_json.is_file() or hashlib.sha256(
                member_json.read_bytes()).hexdigest() != m.get("sha256"):
            raise ModelFileError(f"member metadata '{member_json}' is missing or does not match "
                                 f"the sha256 in '{manifest_path}'")
        stems.append(stem)
        keys.append(dict(m.get("keys") or {}))
    return _bundle_from(meta, manifest_path, stems, keys)


def _bundle_from(meta: dict[str, Any], path: Path, stems: list[Path],
                 keys: list[dict[str, Any]]) -> ModelBundle:
    selected, temperature = meta.get("selected"), meta.get("temperature", 1.0)
    if not isinstance(selected, int) or not 0 <= selected < len(stems):
        raise ModelFileError(f"'{path}': selected member {selected!r} is not in "
                             f"0..{len(stems) - 1}")
    if not isinstance(temperature, int | float) or not np.isfinite(temperature) \
            or temperature <= 0:
        raise ModelFileError(f"'{path}': temperature {temperature!r} must be a positive number")
    names = meta.get("feature_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelFileError(f"'{path}': feature_names must be a list of strings")
    scaler, fcfg = meta.get("scaler"), meta.get("feature_config")
    return ModelBundle(
        path=path.parent, classes=_decode_classes(meta.get("classes"), path),
        feature_names=tuple(names), member_stems=stems, member_keys=keys, selected=selected,
        temperature=float(temperature), scaler=scaler if isinstance(scaler, dict) else None,
        feature_config=fcfg if isinstance(fcfg, dict) else None,
        method=str(meta.get("method", "")), extra=dict(meta.get("extra") or {}))


def _check_member(bundle: ModelBundle, meta: Mapping[str, Any]) -> None:
    spec = meta["spec"]
    n_classes, n_features = spec.get("n_classes"), spec.get("n_features")
    if n_classes != len(bundle.classes):
        raise ModelFileError(f"'{meta['_path']}' has {n_classes} outputs but the model "
                             f"directory lists {len(bundle.classes)} classes")
    if n_features is not None and bundle.feature_names \
            and n_features != len(bundle.feature_names):
        raise ModelFileError(f"'{meta['_path']}' takes {n_features} features but the model "
                             f"directory names {len(bundle.feature_names)}")


def load_bundle_models(path: str | Path) -> tuple[list[nn.Module], ModelBundle]:
    """Every member of a model directory as an eval-mode ``nn.Module``, and the bundle."""
    bundle = read_bundle(path)
    loaded = [load_model(stem) for stem in bundle.member_stems]
    for _, meta in loaded:
        _check_member(bundle, meta)
    return [model for model, _ in loaded], bundle


def load_bundle_arrays(path: str | Path) -> tuple[list[dict[str, np.ndarray]],
                                                  list[dict[str, Any]], ModelBundle]:
    """Torch-free: each member's arrays and metadata, and the bundle."""
    bundle = read_bundle(path)
    loaded = [load_arrays(stem) for stem in bundle.member_stems]
    for _, meta in loaded:
        _check_member(bundle, meta)
    return [arr for arr, _ in loaded], [meta for _, meta in loaded], bundle

"""Model directories: the members of one lineage plus what inference needs.

::

    DIR/
      model.json            classes (values and dtype), feature names, feature config,
                            scaler statistics, calibration temperature, selected member,
                            member list (file stem, keys, sha256 of its JSON), versions
      member_0.json         spec + keys + sha256 of member_0.safetensors
      member_0.safetensors
      ...

The estimator (``save`` / ``load``), ``selfdistill run`` (``models/<method>/``),
``selfdistill predict`` and the NumPy / ONNX inference paths all read and write
this format. Loading goes through :mod:`selfdistill.modelio.weights`: never pickle,
checksums before parsing, a newer format asks to upgrade. torch is imported
only by :func:`load_bundle_models`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from selfdistill._version import __version__
from selfdistill.errors import ModelFileError, SelfDistillError
from selfdistill.modelio.jsonio import (
    FORMAT_VERSION,
    check_format_version,
    plain_sibling,
    read_json_object,
    refuse_pickle,
    write_json_atomic,
)
from selfdistill.modelio.weights import load_arrays, load_model, save_model

if TYPE_CHECKING:
    from torch import nn

    from selfdistill.config import FeaturesConfig

__all__ = [
    "MANIFEST",
    "ModelBundle",
    "load_bundle_arrays",
    "load_bundle_models",
    "read_bundle",
    "save_bundle",
]

log = logging.getLogger(__name__)

MANIFEST = "model.json"
_KIND = "selfdistill-model"


@dataclass
class ModelBundle:
    """A model directory as read from ``model.json`` (no weights loaded yet).

    ``classes`` (C,) are the label values in output order; ``member_stems`` /
    ``member_keys`` (e.g. ``{"generation": 2}``) list the members; ``selected`` is the
    member chosen on validation (used by predict); ``temperature`` divides the logits
    (calibration, 1.0: none); ``scaler`` is the train-fitted scaler's ``to_dict()``
    (None: inputs already scaled); ``feature_config`` is the ``features`` config
    section as stored (a mapping; :attr:`features` gives it typed); ``extra`` holds
    anything else the writer stored (label config, interval, ``gaps``: the gap policy
    the training data resolved to, ``time_format``: how its dates were read, ...).
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
    member_meta: list[dict[str, Any]] = field(default_factory=list)  # filled by the loaders

    @property
    def n_members(self) -> int:
        return len(self.member_stems)

    @property
    def features(self) -> FeaturesConfig | None:
        """The typed feature config (``volume`` pinned to what the model was trained on);
        None for a model trained on custom features."""
        if self.feature_config is None:
            return None
        from selfdistill.features import pin_volume

        try:
            return pin_volume(self.feature_config, self.feature_names)
        except SelfDistillError as exc:
            raise ModelFileError(f"'{self.path}': {exc}") from exc

    @property
    def gap_policy(self) -> str | None:
        """The gap policy training resolved to (mark / sessions / error); None if unknown."""
        policy = self.extra.get("gaps")
        return policy if policy in ("mark", "sessions", "error") else None

    @property
    def time_format(self) -> str | None:
        """How the training file's dates were read (a strptime format), if recorded."""
        fmt = self.extra.get("time_format")
        return fmt if isinstance(fmt, str) and fmt else None


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
    member_meta: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Write a model directory (members first, ``model.json`` last); return its path.

    ``member_meta`` adds per-member JSON fields (history, multi-exit ``output``, ...).
    """
    directory = Path(directory)
    refuse_pickle(directory)
    if not models or len(models) != len(member_keys) or not 0 <= selected < len(models):
        raise ModelFileError(f"save_bundle needs members with keys and a selected index in "
                             f"range (got {len(models)} models, {len(member_keys)} keys, "
                             f"selected={selected})")
    if directory.exists() and not directory.is_dir():
        raise ModelFileError(f"'{directory}' is a file; a model is saved as a directory "
                             "(model.json + safetensors): choose a directory path")
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("member_*"):  # stale members of an earlier save
        if re.fullmatch(r"member_\d+\.(json|safetensors)", old.name):
            old.unlink()
    members = []
    metas = member_meta or [{} for _ in models]
    for i, (model, keys, meta) in enumerate(zip(models, member_keys, metas, strict=True)):
        meta_path = save_model(model, directory / f"member_{i}", {**meta, "keys": dict(keys)})
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
    write_json_atomic(directory / MANIFEST, manifest)
    log.info("saved %d member(s) of '%s' to %s", len(models), method, directory)
    return directory


def _manifest_path(path: str | Path) -> Path:
    path = Path(path)
    refuse_pickle(path)
    return path / MANIFEST if path.is_dir() or not path.suffix else path


def read_bundle(path: str | Path) -> ModelBundle:
    """Read and check a model directory's ``model.json`` (the directory or the file)."""
    manifest_path = _manifest_path(path)
    meta = read_json_object(manifest_path)
    if meta.get("kind") != _KIND:
        raise ModelFileError(f"'{manifest_path}' is not a selfdistill model directory manifest")
    check_format_version(meta, manifest_path)
    base = manifest_path.parent
    members = meta.get("members")
    if not isinstance(members, list) or not members:
        raise ModelFileError(f"'{manifest_path}' lists no members")
    stems, keys = [], []
    for m in members:
        if not isinstance(m, dict):
            raise ModelFileError(f"'{manifest_path}' has a malformed member entry {m!r}")
        stem = plain_sibling(base, m.get("file"), "member file")
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
    bundle.member_meta = [meta for _, meta in loaded]
    return [model for model, _ in loaded], bundle


def load_bundle_arrays(path: str | Path) -> tuple[list[dict[str, np.ndarray]],
                                                  list[dict[str, Any]], ModelBundle]:
    """Torch-free: each member's arrays and metadata, and the bundle."""
    bundle = read_bundle(path)
    loaded = [load_arrays(stem) for stem in bundle.member_stems]
    for _, meta in loaded:
        _check_member(bundle, meta)
    bundle.member_meta = [meta for _, meta in loaded]
    return [arr for arr, _ in loaded], [meta for _, meta in loaded], bundle

"""Checkpoints of EMA-teacher pretraining: safetensors for tensors, JSON for the rest.

A checkpoint directory holds

- ``pretrain-e<epoch>.safetensors``: student, teacher, predictor, online-head,
  DINO-center and key-queue tensors (``student.*``, ``teacher.*``, ``predictors.*``,
  ``online.*``, ``dino.*``, ``queue.*``; those of objectives not in use are absent), the
  optimizer's tensor state (``optim.<param id>.<key>``) and the RNG states
  (``rng.torch`` from :func:`torch.get_rng_state`, ``rng.generator`` from the
  batch / augmentation generator);
- ``pretrain.json``: format and versions, epoch, step, the schedule length,
  the config fingerprint, the encoder spec, the optimizer's param groups, the
  history so far, and the weights' file name and sha256;
- ``history.json``: the per-epoch history alone, for people and plots.

The weights file is written first under a new name, then ``pretrain.json`` is
replaced atomically, then older weights are removed: a run killed at any
moment leaves a consistent pair. Loading never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from selfdistill._version import __version__
from selfdistill.atomic import atomic_write, atomic_write_text
from selfdistill.config import ModelConfig
from selfdistill.errors import ConfigError, ModelFileError
from selfdistill.methods.ema_teacher.state import PretrainState
from selfdistill.nn.encoders import WindowClassifier, build_encoder

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "encoder_spec_of",
    "init_from_pretrained",
    "load_pretrained_encoder",
    "read_checkpoint",
    "resolve_which",
    "restore_state",
    "save_checkpoint",
]

FORMAT = "selfdistill-ema-pretrain"
FORMAT_VERSION = 1
META_NAME = "pretrain.json"


def encoder_spec_of(m: ModelConfig, n_features: int, window: int) -> dict[str, Any]:
    """The constructor arguments of the encoder that the ``model`` section describes."""
    return {"kind": m.kind, "n_features": int(n_features), "window": int(window),
            "hidden": [int(h) for h in m.hidden], "activation": m.activation,
            "dropout": float(m.dropout), "kernel_size": 3}


def _modules(state: PretrainState) -> dict[str, nn.Module | None]:
    return {"student": state.student, "teacher": state.teacher,
            "predictors": state.predictors, "dino": state.dino, "online": state.online,
            "queue": state.queue}


def _state_tensors(state: PretrainState) -> tuple[dict[str, Tensor], dict[str, Any]]:
    out: dict[str, Tensor] = {}
    for prefix, module in _modules(state).items():
        if module is not None:
            for key, value in module.state_dict().items():
                out[f"{prefix}.{key}"] = value.detach().cpu().contiguous().clone()
    opt = state.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in opt["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                out[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    out["rng.torch"] = torch.get_rng_state()
    out["rng.generator"] = state.generator.get_state().cpu()
    return out, {"param_groups": opt["param_groups"], "scalars": scalars}


def _json_safe(history: list[dict[str, float]]) -> list[dict[str, float | None]]:
    """NaN / inf become null (strict JSON)."""
    return [{k: (v if math.isfinite(v) else None) for k, v in rec.items()} for rec in history]


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def save_checkpoint(state: PretrainState, directory: str | Path, *,
                    fingerprint: dict[str, Any], encoder_spec: dict[str, Any]) -> Path:
    """Write the checkpoint of ``state`` into ``directory``; return the JSON path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors, optim_meta = _state_tensors(state)
    weights = d / f"pretrain-e{state.epoch}.safetensors"
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp)))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "selfdistill_version": __version__, "epoch": state.epoch, "step": state.step,
            "steps_per_epoch": state.steps_per_epoch, "total_steps": state.total_steps,
            "fingerprint": fingerprint, "encoder_spec": encoder_spec, "optimizer": optim_meta,
            "history": _json_safe(state.history), "weights": weights.name,
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    _write_json(d / META_NAME, meta)
    _write_json(d / "history.json", _json_safe(state.history))
    for old in d.glob("pretrain-e*.safetensors"):
        if old.name != weights.name:
            old.unlink(missing_ok=True)
    return d / META_NAME


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint (its directory or its ``pretrain.json``)."""
    p = Path(path)
    meta_path = p / META_NAME if p.is_dir() else p
    if not meta_path.is_file():
        raise ModelFileError(f"no pretraining checkpoint at '{p}' (expected {META_NAME}); "
                             "run `selfdistill pretrain CONFIG --out DIR` first")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"checkpoint metadata '{meta_path}' is not valid JSON: {exc}"
                             ) from None
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(f"'{meta_path}' is not a {FORMAT} checkpoint of format <= "
                             f"{FORMAT_VERSION} (got {meta.get('format')!r}, "
                             f"{meta.get('format_version')!r})")
    weights = meta_path.with_name(str(meta.get("weights", "")))
    if not weights.is_file() or hashlib.sha256(weights.read_bytes()).hexdigest() != meta.get(
            "sha256"):
        raise ModelFileError(f"checkpoint weights '{weights}' are missing or do not match "
                             "their checksum")
    return load_file(str(weights)), meta


def _check_fingerprint(found: dict[str, Any], expect: dict[str, Any]) -> None:
    if found == expect:
        return
    diffs = [k for k in sorted(set(found) | set(expect)) if found.get(k) != expect.get(k)]
    detail = []
    for k in diffs:
        a, b = found.get(k), expect.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            detail += [f"{k}.{s}: {a.get(s)!r} -> {b.get(s)!r}" for s in sorted(set(a) | set(b))
                       if a.get(s) != b.get(s)]
        else:
            detail.append(f"{k}: {a!r} -> {b!r}")
    raise ConfigError("the checkpoint was made with a different setup ("
                      + "; ".join(detail[:6]) + "); pass --fresh or another --out directory")


def _prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def restore_state(state: PretrainState, tensors: dict[str, Tensor], meta: dict[str, Any], *,
                  expect: dict[str, Any]) -> None:
    """Put a checkpoint back into a freshly built ``state`` (same fingerprint required)."""
    _check_fingerprint(meta["fingerprint"], expect)
    for prefix, module in _modules(state).items():
        if module is not None:
            module.load_state_dict(_prefixed(tensors, prefix))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in _prefixed(tensors, "optim").items():
        pid, _, name = key.partition(".")
        opt_state.setdefault(int(pid), {})[name] = value
    for pid, scalars in meta["optimizer"]["scalars"].items():
        opt_state.setdefault(int(pid), {}).update(scalars)
    state.optimizer.load_state_dict({"state": opt_state,
                                     "param_groups": meta["optimizer"]["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    state.generator.set_state(tensors["rng.generator"])
    state.epoch, state.step = int(meta["epoch"]), int(meta["step"])
    state.history = [{k: (math.nan if v is None else float(v)) for k, v in rec.items()}
                     for rec in meta["history"]]


def resolve_which(which: str, meta: dict[str, Any]) -> str:
    """``teacher`` / ``student``; ``auto`` follows the checkpoint's form (BYOL: student)."""
    if which not in ("auto", "teacher", "student"):
        raise ConfigError(f"encoder '{which}' is not one of: auto, teacher, student")
    if which != "auto":
        return which
    form = meta.get("fingerprint", {}).get("ema_teacher", {}).get("form", "byol")
    return "student" if form == "byol" else "teacher"


def load_pretrained_encoder(path: str | Path, *, which: str = "auto") -> nn.Module:
    """The pretrained encoder of a checkpoint.

    Args:
        path: the checkpoint directory (``selfdistill pretrain --out DIR``) or its
            ``pretrain.json``.
        which: ``teacher`` (the EMA encoder), ``student`` (the online one) or ``auto``
            (default): the online encoder of a BYOL-form run, the teacher of a DINO one.

    Returns:
        A :class:`~selfdistill.nn.encoders.TCNEncoder` or ``GRUEncoder`` in eval mode,
        mapping (B, F, W) windows to (B, D) embeddings.
    """
    resolve_which(which, {})  # a bad name fails before the file is read
    tensors, meta = read_checkpoint(path)
    which = resolve_which(which, meta)
    spec = meta["encoder_spec"]
    encoder = build_encoder(spec["kind"], spec["n_features"], hidden=spec["hidden"],
                            activation=spec["activation"], dropout=spec["dropout"],
                            kernel_size=spec.get("kernel_size", 3))
    try:
        encoder.load_state_dict(_prefixed(tensors, f"{which}.encoder"))
    except RuntimeError as exc:
        raise ModelFileError(f"checkpoint '{path}' does not match its encoder spec: {exc}"
                             ) from exc
    encoder.eval()
    return encoder


def init_from_pretrained(model: WindowClassifier, source: str | Path | nn.Module, *,
                         which: str = "auto") -> WindowClassifier:
    """Copy a pretrained encoder (a module or a checkpoint path) into ``model.encoder``.

    ``which`` picks the encoder of a checkpoint path (see :func:`load_pretrained_encoder`).

    Raises:
        ConfigError: the architectures differ (kind, features or widths).
    """
    encoder = source if isinstance(source, nn.Module) else load_pretrained_encoder(
        source, which=which)
    try:
        model.encoder.load_state_dict(encoder.state_dict())
    except RuntimeError as exc:
        spec = model.spec()
        raise ConfigError(
            f"the pretrained encoder does not fit model kind={spec['kind']}, "
            f"n_features={spec['n_features']}, hidden={spec['hidden']}: use the model section "
            f"the checkpoint was pretrained with ({str(exc).splitlines()[0]})") from exc
    return model

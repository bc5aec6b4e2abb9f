"""The search space of ``tune.space``: checked against the schema, sampled, applied.

A range on an integer field (``born_again.generations``) is searched over integers, on a
float field over floats (``log: true`` samples the logarithm uniformly); a list is a
categorical choice, each choice shown as its YAML-ish text (``[64, 64]``) so any value
(lists included) can be a choice. :func:`space_problems` tries the ends of every range
and every choice in the config, so a space that would fail mid-search is a config error
before the first trial.
"""

from __future__ import annotations

import json
import types
from typing import Any, Protocol, Union, get_args, get_origin

from pydantic import BaseModel

from selfdistill.config import RunConfig, parse_config
from selfdistill.config.scaleout import ParamRange
from selfdistill.errors import ConfigError

__all__ = ["SEARCHABLE", "Suggester", "apply_params", "check_space", "decode", "is_int_field",
           "sample", "space_problems"]


class Suggester(Protocol):
    """What the space needs from an Optuna trial."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1,
                    log: bool = False) -> int: ...

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def _field(key: str) -> Any | None:
    """The annotation of the field at a dotted key, None when there is no such field."""
    model: type[BaseModel] = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if i == len(parts) - 1:
            return field.annotation
        sub = next((t for t in _types(field.annotation)
                    if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if sub is None:
            return None
        model = sub
    return None


def _types(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return [t for arg in get_args(annotation) for t in _types(arg)]
    if str(origin).endswith("Annotated"):
        return _types(get_args(annotation)[0])
    return [annotation]


def is_int_field(key: str) -> bool:
    """Whether the field at ``key`` holds whole numbers (and not floats)."""
    kinds = set(_types(_field(key)))
    return int in kinds and float not in kinds


def _encode(choice: Any) -> str | int | float | bool | None:
    """A categorical choice as Optuna stores it: scalars as they are, others as JSON."""
    if choice is None or isinstance(choice, str | int | float | bool):
        return choice
    return json.dumps(choice)


def decode(key: str, value: Any, choices: list[Any]) -> Any:
    """The config value of a stored categorical choice (JSON text back to a list)."""
    for choice in choices:
        if _encode(choice) == value:
            return choice
    raise ConfigError(f"tune.space.{key}: the study holds the choice {value!r}, which the "
                      "config's space no longer offers; use another --study-name")


def apply_params(cfg: RunConfig, params: dict[str, Any]) -> RunConfig:
    """``cfg`` with each dotted key set to its value, validated again."""
    raw = cfg.model_dump(mode="json")
    for key, value in params.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return parse_config(raw, source="(tuned)")


def sample(trial: Suggester, cfg: RunConfig) -> dict[str, Any]:
    """One point of the space: {dotted key: config value}."""
    out: dict[str, Any] = {}
    for key, spec in cfg.tune.space.items():
        if isinstance(spec, list):
            stored = trial.suggest_categorical(key, [_encode(c) for c in spec])
            out[key] = decode(key, stored, spec)
        elif is_int_field(key):
            out[key] = trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log,
                                         step=int(spec.step or 1))
        else:
            out[key] = trial.suggest_float(key, float(spec.low), float(spec.high),
                                           log=spec.log, step=spec.step)
    return out


def _probes(key: str, spec: ParamRange | list[Any]) -> list[Any]:
    if isinstance(spec, list):
        return spec
    if is_int_field(key):
        if not (float(spec.low).is_integer() and float(spec.high).is_integer()):
            raise ValueError("is a whole-number field: give whole-number low and high")
        return [int(spec.low), int(spec.high)]
    return [float(spec.low), float(spec.high)]


#: Sections the search may change: what a model is and how it learns. The others change
#: the data, the folds or the scoring, which the search holds fixed.
SEARCHABLE = ("model", "training", "label_smoothing", "born_again", "byot", "snapshot",
              "ema_teacher", "lightgbm", "logistic", "hmm")


def space_problems(cfg: RunConfig) -> list[str]:
    """One message per space entry that names no field or offers a value the config refuses."""
    problems = []
    for key, spec in cfg.tune.space.items():
        if key.split(".")[0] not in SEARCHABLE:
            problems.append(f"tune.space.{key}: cannot be searched (it changes the data, the "
                            f"folds or the scoring); search keys of {', '.join(SEARCHABLE)}")
            continue
        if _field(key) is None:
            problems.append(f"tune.space.{key}: no such config key (e.g. born_again.alpha, "
                            "training.lr, model.hidden)")
            continue
        try:
            for value in _probes(key, spec):
                apply_params(cfg, {key: value})
        except (ConfigError, ValueError) as exc:
            text = str(exc).removeprefix("invalid config (tuned): ")
            problems.append(f"tune.space.{key}: {text}")
    return problems


def check_space(cfg: RunConfig) -> None:
    """Raise one ConfigError naming every bad entry of ``tune.space`` (or an empty space)."""
    if not cfg.tune.space:
        raise ConfigError("tune.space is empty: give the keys to search, e.g. "
                          "tune: {space: {born_again.temperature: {low: 1, high: 10, "
                          "log: true}}}")
    problems = space_problems(cfg)
    if problems:
        raise ConfigError("invalid search space: " + "; ".join(problems))

"""Checks every config field gets, whatever section it is in and whenever it was added.

pydantic checks each field against its own type; these checks cover what a field's type
cannot say, and walk the schema generically so that sections added later get them too:

- :func:`raw_problems` (before validation, on the raw mapping): a non-finite number
  (``.inf``, ``.nan``, ``1e999``) anywhere; ``true`` / ``false`` where a number goes
  and a number or text where ``true`` / ``false`` goes (pydantic would read ``true`` as 1
  and ``"yes"`` as true); nesting deeper than :data:`MAX_DEPTH`.
- :func:`suggest_key`: the field an unknown key was probably meant to be
  (``training.epoch`` -> ``epochs``).
- :func:`estimated_parameters` and :data:`MAX_PARAMETERS`: a model too large to allocate
  is a config error, not an out-of-memory crash minutes later.
"""

from __future__ import annotations

import difflib
import itertools
import math
import types
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from selfdistill.config.yamlsafe import MAX_DEPTH

__all__ = ["MAX_PARAMETERS", "estimated_parameters", "raw_problems", "section_at",
           "suggest_key"]

#: Largest model a config may ask for: 100 million parameters, 400 MB of float32 weights
#: (training holds about 4x that: weights, gradients and two AdamW moments).
MAX_PARAMETERS = 100_000_000


# ------------------------------------------------------------------ annotations


def _branches(annotation: Any) -> Iterator[Any]:
    """The types a field annotation admits, unions and ``Annotated`` unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _branches(get_args(annotation)[0])
    elif origin is Union or origin is types.UnionType:
        for arg in get_args(annotation):
            yield from _branches(arg)
    else:
        yield annotation


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The section (pydantic model) a field holds, if it holds one."""
    for branch in _branches(annotation):
        if isinstance(branch, type) and issubclass(branch, BaseModel):
            return branch
    return None


def _items_of(annotation: Any) -> Any | None:
    """The item annotation of a field's list branch, if it has one."""
    for branch in _branches(annotation):
        if get_origin(branch) is list:
            return get_args(branch)[0] if get_args(branch) else Any
    return None


def _wrong_scalar(value: Any, annotation: Any) -> str | None:
    """pydantic's lax coercions we refuse: true as 1, 1 or "yes" as true."""
    kinds = set(_branches(annotation))
    if kinds & {Any, object}:
        return None
    if isinstance(value, bool) and kinds & {int, float} and bool not in kinds:
        return f"must be a number, not {str(value).lower()}"
    if not isinstance(value, bool) and isinstance(value, int | float | str) \
            and kinds - {type(None)} == {bool}:
        return f"must be true or false (got {value!r})"
    return None


def section_at(root: type[BaseModel], path: Sequence[object]) -> type[BaseModel] | None:
    """The section at a dotted path below ``root`` (``("training",)`` -> TrainingConfig)."""
    model: type[BaseModel] | None = root
    for part in path:
        field = model.model_fields.get(str(part)) if model is not None else None
        model = _model_of(field.annotation) if field is not None else None
    return model


def suggest_key(root: type[BaseModel], path: Sequence[object]) -> str | None:
    """The valid key closest to the unknown last part of ``path``, or None."""
    section = section_at(root, path[:-1])
    if section is None:
        return None
    close = difflib.get_close_matches(str(path[-1]), list(section.model_fields), n=1,
                                      cutoff=0.6)
    return close[0] if close else None


# --------------------------------------------------------------------- raw walk


def _walk(value: Any, annotation: Any, path: str, depth: int) -> Iterator[tuple[str, str]]:
    if depth > MAX_DEPTH:
        yield path, f"nests deeper than {MAX_DEPTH} levels"
        return
    if isinstance(value, float) and not math.isfinite(value):
        yield path, f"must be a finite number (got {value})"
    elif annotation is not None and (wrong := _wrong_scalar(value, annotation)):
        yield path, wrong
    elif isinstance(value, dict):
        model = _model_of(annotation) if annotation is not None else None
        for key, item in value.items():
            field = model.model_fields.get(str(key)) if model is not None else None
            yield from _walk(item, field.annotation if field else None,
                             f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list | tuple):
        items = _items_of(annotation) if annotation is not None else None
        for i, item in enumerate(value):
            yield from _walk(item, items, f"{path}.{i}", depth + 1)


def raw_problems(raw: dict[str, Any], root: type[BaseModel]) -> list[tuple[str, str]]:
    """(field path, message) for what validation would let through or crash on."""
    return list(_walk(raw, root, "", 0))


# --------------------------------------------------------------------- sizes


def estimated_parameters(kind: str, hidden: Sequence[int], *, n_inputs: int = 1,
                         n_classes: int = 3, kernel_size: int = 3) -> int:
    """A lower bound on the parameters of a ``model`` section's network (no torch needed).

    >>> estimated_parameters("mlp", [60000, 60000]) > 3_600_000_000
    True
    """
    widths = [n_inputs, *hidden]
    total = hidden[-1] * n_classes if hidden else 0
    for a, b in itertools.pairwise(widths):
        if kind == "gru":
            total += 3 * (a * b + b * b + 2 * b)
        elif kind == "cnn":
            total += kernel_size * (a * b + b * b) + 2 * b
        else:
            total += a * b + b
    return total

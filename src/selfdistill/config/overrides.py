"""``--set key.sub=value`` overrides applied to a raw config mapping before validation.

Values are parsed as YAML (``--set born_again.generations=8``, ``--set methods=[byot]``),
with the limits of :func:`selfdistill.config.yamlsafe.load_yaml` (aliases, nesting, size);
the result is validated with the rest of the file by :func:`selfdistill.config.parse_config`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from selfdistill.config.yamlsafe import load_yaml
from selfdistill.errors import ConfigError

__all__ = ["apply_overrides", "set_key"]


def _short(item: str) -> str:
    """``item`` as shown in a one-line message: control characters escaped, cut at 80."""
    shown = item.encode("unicode_escape").decode("ascii") if not item.isprintable() else item
    return shown if len(shown) <= 80 else shown[:60] + "..."


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set '{_short(item)}' must look like key=value, "
                          "e.g. born_again.generations=8")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set '{_short(item)}' has an empty key; use dotted keys like "
                          "training.lr=0.01")
    value = load_yaml(text, source=f"--set '{_short(item)}' value") if text.strip() else None
    return key.split("."), value


def set_key(raw: dict[str, Any], path: Sequence[str], value: Any, *, source: str) -> None:
    """Set the dotted ``path`` of a raw config dict to ``value`` in place (sections made
    as needed); ``source`` names the setting in the error (``--set 'a.b=1'``)."""
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: '{_short(part)}' is not a section")
        node = child
    node[path[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config dict."""
    out = copy.deepcopy(raw)
    for item in overrides:
        path, value = _parse_override(item)
        set_key(out, path, value, source=f"--set '{_short(item)}'")
    return out

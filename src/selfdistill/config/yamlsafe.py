"""Reading untrusted YAML: bounded size, nesting and alias expansion; duplicate keys refused.

A config file (or a ``--set`` value) is read by :func:`load_yaml`, which turns every
way YAML text can go wrong into one :class:`~selfdistill.errors.ConfigError` line:

- more than :data:`MAX_BYTES` bytes, binary content, text that is not UTF-8;
- nesting deeper than :data:`MAX_DEPTH`, or more than :data:`MAX_VALUES` values once
  aliases are expanded (a 342-byte "billion laughs" file expands to 10**9 values), or
  an alias that contains itself;
- a key given twice in one mapping (YAML says keys are unique; PyYAML keeps the last);
- malformed YAML, and scalars YAML cannot build (``2024-02-30``, a 5,000-digit integer).

The checks run on the composed node graph, where aliases are still shared, so a
hostile file costs microseconds, never the expansion.

>>> load_yaml("a: &x [1, 2]\\nb: *x", source="'c.yaml'")
{'a': [1, 2], 'b': [1, 2]}
"""

from __future__ import annotations

import codecs
from typing import Any

import yaml

from selfdistill.errors import ConfigError

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_VALUES", "decode_config", "load_yaml"]

#: Largest config text accepted (a full config with comments is about 3 kB).
MAX_BYTES = 100_000
#: Deepest nesting accepted (a config nests 4 levels: section, sub-section, list, value).
MAX_DEPTH = 32
#: Most values (scalars, lists and mappings, aliases expanded) a config may hold.
MAX_VALUES = 10_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(yaml.YAMLError):
    """A limit or a duplicate key, with where it was found."""

    def __init__(self, problem: str, mark: yaml.Mark | None = None) -> None:
        super().__init__(problem)
        self.problem, self.mark = problem, mark


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, counting nesting and nodes and refusing duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nests deeper than {MAX_DEPTH} levels",
                               self.peek_event().start_mark)
            if self._nodes > MAX_VALUES:
                raise _Refused(f"holds more than {MAX_VALUES:,} values",
                               self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # 2024-02-30, a 5,000-digit integer
            reason = "too many digits" if "digits" in str(exc) else " ".join(str(exc).split())
            raise _Refused(f"cannot read the value {_short(node.value)}: {reason}",
                           node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _Refused(f"key '{key}' appears twice in one mapping (lines {seen[key]} "
                               f"and {line}); keep one", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded(node: yaml.Node, depth: int, memo: dict[int, tuple[int, int]],
              active: set[int]) -> tuple[int, int]:
    """(values, height) of ``node`` with every alias expanded; raise past the limits."""
    key = id(node)
    if key in memo:
        size, height = memo[key]
    else:
        if key in active:
            raise _Refused("an alias refers to the mapping or list that contains it",
                           node.start_mark)
        active.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        size, height = 1, 1
        for child in children:
            child_size, child_height = _expanded(child, depth + 1, memo, active)
            size, height = size + child_size, max(height, child_height + 1)
            if size > MAX_VALUES:
                raise _Refused(f"expands to more than {MAX_VALUES:,} values (aliases "
                               "repeating aliases)", node.start_mark)
        active.discard(key)
        memo[key] = size, height
    if depth + height - 1 > MAX_DEPTH:
        raise _Refused(f"nests deeper than {MAX_DEPTH} levels once aliases are expanded",
                       node.start_mark)
    return size, height


def _short(value: object) -> str:
    text = repr(value) if isinstance(value, str) else "a " + type(value).__name__
    return text if len(text) <= 40 else text[:36] + "...'"


def _describe(exc: yaml.YAMLError) -> str:
    """One line: what is wrong and where (line and column, counted from 1)."""
    if isinstance(exc, _Refused):
        problem, mark = exc.problem, exc.mark
    elif isinstance(exc, yaml.reader.ReaderError):
        problem = f"character #x{exc.character:04x} is not allowed (position {exc.position})"
        mark = None
    elif isinstance(exc, yaml.MarkedYAMLError):
        problem = ", ".join(p for p in (exc.context, exc.problem) if p)
        mark = exc.problem_mark or exc.context_mark
    else:
        problem, mark = str(exc), None
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def load_yaml(text: str, *, source: str) -> Any:
    """Parse YAML text within the limits; raise :class:`ConfigError` naming ``source``."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source} is longer than {MAX_BYTES:,} characters; a config "
                          "is a few kB")
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # a character YAML does not allow
        raise ConfigError(f"{source} is not valid YAML: {_describe(exc)}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded(node, 1, {}, set())
        return loader.construct_document(node)
    except _Refused as exc:
        raise ConfigError(f"{source} is refused: {_describe(exc)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {_describe(exc)}") from None
    finally:
        loader.dispose()


def decode_config(data: bytes, *, source: str) -> str:
    """The text of a config file's bytes: UTF-8 (with or without a BOM), never binary."""
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if data.startswith(bom):
            raise ConfigError(f"{source} is {name} text; save it as UTF-8")
    if b"\x00" in data:
        raise ConfigError(f"{source} is a binary file, not YAML text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line "
                          f"{line}); save it as UTF-8") from None

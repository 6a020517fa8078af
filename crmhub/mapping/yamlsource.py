"""Reading a mapping file's YAML so that every value remembers its line.

A safe YAML loader with YAML 1.2 booleans, and a converter that turns the composed nodes into
:class:`_YMap` / :class:`_YList` (dicts and lists that know the line of each key, value and
item), so that every validation error can name the line of the mapping file it is about.
YAML syntax errors become :class:`~crmhub.errors.MappingError` with a line too.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from crmhub.errors import MappingError

_MAX_DEPTH = 50

_BOOL_TAG = "tag:yaml.org,2002:bool"


class _Loader(yaml.SafeLoader):
    """A safe loader with YAML 1.2 booleans, so that ``no``, ``yes``, ``on``, ``off`` stay text
    (``{map: {values: {no: denied}}}`` must match the text "no")."""

    yaml_implicit_resolvers = {
        first: [resolver for resolver in resolvers if resolver[0] != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _YMap(dict[str, Any]):
    """A YAML mapping that remembers the line of each key and of each value."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}
        self.value_lines: dict[str, int] = {}


class _YList(list[Any]):
    """A YAML sequence that remembers the line of each item."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Converter:
    """Turns composed YAML nodes into :class:`_YMap` / :class:`_YList` / scalars."""

    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader = loader
        self.file = file

    def convert(self, node: yaml.Node, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:  # an alias can make a node contain itself
            raise MappingError("nesting is too deep", file=self.file, line=_line(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, depth)
        if isinstance(node, yaml.SequenceNode):
            result = _YList(_line(node))
            for item in node.value:
                result.append(self.convert(item, depth + 1))
                result.item_lines.append(_line(item))
            return result
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except Exception:  # e.g. a date-like scalar that is no real date (2024-13-45)
            raise MappingError("invalid value", file=self.file, line=_line(node)) from None

    def _mapping(self, node: yaml.MappingNode, depth: int) -> _YMap:
        result = _YMap(_line(node))
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise MappingError("keys must be plain text", file=self.file, line=_line(key_node))
            key = str(key_node.value)
            if key in result:
                first = result.key_lines[key]
                message = f"duplicate key {key!r} (first given on line {first})"
                raise MappingError(message, file=self.file, line=_line(key_node))
            result[key] = self.convert(value_node, depth + 1)
            result.key_lines[key] = _line(key_node)
            result.value_lines[key] = _line(value_node)
        return result


def _parse_yaml(text: str, file: str) -> Any:
    try:
        loader = _Loader(text)  # the reader already rejects characters YAML does not allow
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, file) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise MappingError("the mapping file is empty", file=file, line=1)
        return _Converter(loader, file).convert(node)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, file) from None
    finally:
        loader.dispose()


def _yaml_error(exc: yaml.YAMLError, text: str, file: str) -> MappingError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        return MappingError(f"invalid YAML: {exc.problem or exc.context}", file=file, line=line)
    position = getattr(exc, "position", None)  # reader errors carry a character position
    line = text.count("\n", 0, position) + 1 if isinstance(position, int) else None
    reason = getattr(exc, "reason", None) or "unreadable"
    return MappingError(f"invalid YAML: {reason}", file=file, line=line)


def _plain(value: Any) -> Any:
    """A converted YAML value as plain dicts and lists (what transforms receive)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value

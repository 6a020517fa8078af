"""Declarative mappings between a source system's fields and the canonical model, both ways.

One YAML file per source system. It is validated and compiled once, when loaded: every field
becomes a small closure, so mapping a record is a loop over closures.

Format::

    system: files                 # informational
    description: ...              # informational, optional
    streams:
      people:                     # the stream name; a stream called "*" applies to any stream
        kind: person              # person (the default) | activity
        fields:                   # canonical target -> source spec
          external_id: id
          updated_at: {from: updated_at, transform: timestamp}
          first_name: first_name
          full_name: {from: [name, display_name]}          # several sources: a list value
          emails: {from: [email, email_2]}                 # list targets collect non-empty values
          phones: {from: phone, transform: {e164: {region: US}}}
          company: {from: company, transform: [strip, {map: {values: {"N/A": null}}}]}
          address.country: country
          birth_date: {from: birth_date, transform: {date: {format: "%d/%m/%Y"}}}
          consent.email: {from: newsletter, transform: consent}
          identifiers.customer_number: customer_no
          attributes.plan: {from: plan, default: free}
          lawful_basis: {value: contract}                  # a constant
          deleted: {from: is_deleted, transform: bool, default: false}
        required: [email]         # optional: source fields that must be present and non-empty
        push:                     # writing back: source field -> canonical spec
          email: {from: emails, transform: first}
          phone: {from: phones, transform: first}
          first_name: first_name

Source specs
    A string names a source field; dotted paths reach into nested dicts (``billing.city``) and
    ``x.0`` into lists (a flat field literally called ``billing.city`` wins). A bare list of
    names is short for ``{from: [...]}``. A mapping has ``from`` (a name or a list of names:
    several names give a list value) or ``value`` (a constant), and optionally:

    - ``transform``: a name, ``{name: {arguments}}``, or a list of those, applied in order.
      Transforms are element-wise (applied to each non-None element of a list value; never
      called with None) unless marked list-level (``first``, ``first_non_empty``, ``join``,
      ``split``, ``compact``, ``constant``, ``default``), which take the whole value.
    - ``default``: the canonical value used when the source value is missing, None, blank or
      a list of blanks (transforms are then skipped), or when the transforms yield nothing.
    - ``required: true``: the record is rejected when the field ends up without a value.

    After the transforms a list target (``emails``, ``phones``) wraps a scalar into a list and
    drops None and blank elements; a scalar target given a list takes its first non-empty
    element. Blank results are treated as missing.

Canonical targets
    The fields of :class:`~crmhub.model.Person` or :class:`~crmhub.model.Activity`, nested
    model fields as ``address.city``, ``consent.<channel>`` (and ``consent.<channel>.status``)
    and ``identifiers.<name>`` / ``attributes.<name>``. ``source`` and ``stream`` are set by
    the engine. ``external_id`` must be mapped, and for activities ``kind`` and ``occurred_at``.
    A target may not be both mapped whole and in parts (``address`` and ``address.city``).

Push
    Keys are source field names (dotted keys build nested dicts); specs read canonical field
    paths, validated like targets, through the same transforms. Every push key appears in the
    output, with None when the record has no value.

YAML booleans are YAML 1.2's: only ``true``/``false``, so ``no``, ``yes``, ``on`` and ``off``
stay text. Mapping keys are always text (``{map: {values: {1: one}}}`` matches ``"1"`` and 1).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

import crmhub
from crmhub.errors import MappingError, RecordError
from crmhub.model import Activity, Person
from crmhub.transforms import BUILTIN_TRANSFORMS

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["MappingFile", "MappingResult", "StreamMapping", "load_mapping"]

Kind = Literal["person", "activity"]
Getter = Callable[[Any], Any]

_MODELS: dict[str, type[Person] | type[Activity]] = {"person": Person, "activity": Activity}
_ENGINE_FIELDS = frozenset({"source", "stream"})
_TOP_KEYS = ("system", "description", "streams")
_STREAM_KEYS = ("kind", "description", "fields", "required", "push")
_SPEC_KEYS = ("from", "value", "transform", "default", "required")
_ANY_STREAM = "*"
_BUILTIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_MAX_DEPTH = 50


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


# =========================================================================== results


@dataclass(frozen=True)
class MappingResult:
    """The outcome of mapping one raw record.

    Attributes:
        record: the validated canonical record, or None when the raw record is unusable.
        problems: why it is unusable; empty exactly when ``record`` is not None. Messages name
            the canonical and the source field and never contain the value.
    """

    record: Person | Activity | None
    problems: list[str]


# =========================================================================== YAML with lines


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


# =========================================================================== canonical targets


@dataclass(frozen=True)
class _Targets:
    """The canonical paths of one model that a mapping may write (and push may read)."""

    exact: frozenset[str]
    open_dicts: frozenset[str]  # dict fields taking any key: identifiers.<name>, attributes.<name>
    lists: frozenset[str]
    required: tuple[str, ...]
    summary: str

    def allows(self, path: str) -> bool:
        if path in self.exact:
            return True
        head, dot, rest = path.partition(".")
        return bool(dot) and head in self.open_dicts and bool(rest) and "." not in rest

    def suggestions(self, path: str) -> list[str]:
        candidates = [
            *self.exact,
            *(f"{name}.{path.partition('.')[2]}" for name in self.open_dicts),
        ]
        return difflib.get_close_matches(path, candidates, n=3)


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


@functools.cache
def _targets_of(model: type[BaseModel]) -> _Targets:
    """Derive the mappable paths from the model's fields, so they follow the model."""
    exact: set[str] = set()
    open_dicts: set[str] = set()
    lists: set[str] = set()
    required: list[str] = []
    summary: list[str] = []
    for name, info in model.model_fields.items():
        if name in _ENGINE_FIELDS:
            continue
        exact.add(name)
        if info.is_required():
            required.append(name)
        annotation = _unwrap_optional(info.annotation)
        origin = typing.get_origin(annotation)
        if origin is list:
            lists.add(name)
            summary.append(name)
        elif _is_model(annotation):
            parts = list(annotation.model_fields)
            exact.update(f"{name}.{part}" for part in parts)
            summary.append(f"{name}.<{'|'.join(parts)}>")
        elif origin is dict:
            key_type, value_type = typing.get_args(annotation)
            if typing.get_origin(key_type) is Literal:  # consent: the CONSENT_CHANNELS
                keys = [str(key) for key in typing.get_args(key_type)]
                exact.update(f"{name}.{key}" for key in keys)
                if _is_model(value_type):
                    exact.update(
                        f"{name}.{key}.{sub}" for key in keys for sub in value_type.model_fields
                    )
                summary.append(f"{name}.<{'|'.join(keys)}>")
            else:
                open_dicts.add(name)
                summary.append(f"{name}.<name>")
        else:
            summary.append(name)
    return _Targets(
        exact=frozenset(exact),
        open_dicts=frozenset(open_dicts),
        lists=frozenset(lists),
        required=tuple(required),
        summary=", ".join(summary),
    )


# =========================================================================== value machinery


def _is_empty(value: Any) -> bool:
    """None, blank text, or a list of those: what ``default`` and ``required`` call missing."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value or value.isspace()
    if isinstance(value, list | tuple):
        return all(_is_empty(item) for item in value)
    return False


def _shape_scalar(value: Any) -> Any:
    """A scalar target's value: the first non-empty element of a (nested) list; None if empty."""
    if value is None:
        return None
    if isinstance(value, str):
        return None if not value or value.isspace() else value
    if isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, list | tuple):
                item = _shape_scalar(item)
            if not _is_empty(item):
                return item
        return None
    return value


def _shape_list(value: Any) -> Any:
    """A list target's value: a flat list without None or blank elements; None when empty.

    Lists inside the list (a multi-``from`` whose sources are lists) are flattened.
    """
    if not isinstance(value, list | tuple):
        return None if _is_empty(value) else [value]
    items: list[Any] = []
    for item in value:
        if isinstance(item, list | tuple):
            items.extend(inner for inner in item if not _is_empty(inner))
        elif not _is_empty(item):
            items.append(item)
    return items or None


class _StepFailed(Exception):
    """A transform rejected a value; carries what is needed for a value-free message."""

    def __init__(self, name: str, error: Exception, value: Any) -> None:
        super().__init__(name)
        self.name = name
        self.error = error
        self.value = value


@dataclass(frozen=True)
class _Step:
    name: str
    fn: Callable[[Any], Any]
    elementwise: bool


def _run_steps(steps: tuple[_Step, ...], value: Any) -> Any:
    for step in steps:
        try:
            if not step.elementwise:
                value = step.fn(value)
            elif isinstance(value, list | tuple):
                fn = step.fn
                value = [None if item is None else fn(item) for item in value]
            elif value is not None:
                value = step.fn(value)
        except Exception as exc:  # a transform, plugin or built-in, must never stop a sync
            raise _StepFailed(step.name, exc, value) from None
    return value


def _texts(value: Any, depth: int = 0) -> Iterator[str]:
    """The text forms of the scalars inside a value, to check that a message does not leak it."""
    if depth > 5:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield repr(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _texts(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item, depth + 1)


def _leaks(message: str, value: Any) -> bool:
    folded = message.casefold()
    for text in _texts(value):
        piece = text.strip().casefold()
        if (len(piece) >= 3 and piece in folded) or repr(text).casefold() in folded:
            return True
    return False


def _step_reason(failure: _StepFailed) -> str:
    """Why a transform failed, without the value: messages are stored and logged."""
    error = failure.error
    if isinstance(error, ValueError):
        reason = str(error).strip()
        if reason and not _leaks(reason, failure.value):
            return reason
        return f"rejected by transform {failure.name!r}"
    return f"transform {failure.name!r} failed ({type(error).__name__})"


# =========================================================================== getters


def _index(part: str) -> int | None:
    return int(part) if part.isascii() and part.isdigit() else None


def _source_getter(path: str) -> Getter:
    """Read one source field; dotted paths walk nested dicts and lists."""
    if "." not in path:

        def get_flat(raw: Any) -> Any:
            return raw.get(path)

        return get_flat
    parts = tuple((part, _index(part)) for part in path.split("."))

    def get_nested(raw: Any) -> Any:
        value = raw.get(path)  # a flat column literally named "a.b" wins
        if value is not None:
            return value
        node = raw
        for part, index in parts:
            if isinstance(node, Mapping):
                node = node.get(part)
            elif isinstance(node, list) and index is not None:
                node = node[index] if index < len(node) else None
            else:
                return None
        return node

    return get_nested


def _canonical_getter(path: str) -> Getter:
    """Read one canonical field from a Person/Activity or a canonical dict (push side)."""
    parts = tuple(path.split("."))

    def get(record: Any) -> Any:
        node = record
        for part in parts:
            if node is None:
                return None
            node = node.get(part) if isinstance(node, Mapping) else getattr(node, part, None)
        return node

    return get


def _multi_getter(getters: tuple[Getter, ...]) -> Getter:
    def get(raw: Any) -> Any:
        return [getter(raw) for getter in getters]

    return get


def _constant_getter(value: Any) -> Getter:
    def get(raw: Any) -> Any:
        return value

    return get


# =========================================================================== parsed specs


@dataclass(frozen=True)
class _Spec:
    """One parsed source spec (fields side) or canonical spec (push side)."""

    sources: tuple[str, ...]
    constant: Any
    steps: tuple[_Step, ...]
    default: Any
    required: bool
    multi: bool

    @property
    def origin(self) -> str:
        """How problems name where a value came from: ``(from 'a', 'b')`` or ``(constant)``."""
        if not self.sources:
            return "(constant)"
        return "(from " + ", ".join(repr(source) for source in self.sources) + ")"


def _compile_compute(spec: _Spec, make_getter: Callable[[str], Getter]) -> Getter:
    """Compile a spec into ``compute(raw) -> value`` (before the target's list/scalar shape).

    The common shapes (a plain copy, one transform) get closures of their own: this runs for
    every field of every record.
    """
    if not spec.sources:
        get = _constant_getter(spec.constant)
    elif spec.multi:
        get = _multi_getter(tuple(make_getter(source) for source in spec.sources))
    else:
        get = make_getter(spec.sources[0])
    steps, default = spec.steps, spec.default
    if default is not _UNSET:
        return _compute_with_default(get, steps, default)
    if not steps:
        return get
    if len(steps) == 1 and steps[0].elementwise:
        single = spec.sources[0] if len(spec.sources) == 1 and not spec.multi else ""
        flat = single if single and "." not in single and make_getter is _source_getter else None
        return _compute_one_step(get, steps[0], flat)

    def compute_steps(raw: Any) -> Any:
        return _run_steps(steps, get(raw))

    return compute_steps


def _compute_one_step(get: Getter, step: _Step, flat: str | None) -> Getter:
    name, fn = step.name, step.fn

    def compute_one_step(raw: Any) -> Any:
        value = get(raw) if flat is None else raw.get(flat)
        if value is None:
            return None
        try:
            if value.__class__ is not str and isinstance(value, list | tuple):
                return [None if item is None else fn(item) for item in value]
            return fn(value)
        except Exception as exc:  # a transform must never stop a sync
            raise _StepFailed(name, exc, value) from None

    return compute_one_step


def _compute_with_default(get: Getter, steps: tuple[_Step, ...], default: Any) -> Getter:
    def compute_with_default(raw: Any) -> Any:
        value = get(raw)
        if _is_empty(value):
            return default
        value = _run_steps(steps, value) if steps else value
        return default if _is_empty(value) else value

    return compute_with_default


# =========================================================================== the compiler


class _Compiler:
    """Validates the parsed YAML of one file and builds its :class:`StreamMapping` objects."""

    def __init__(self, file: str, transforms: Mapping[str, Callable[..., Any]]) -> None:
        self.file = file
        self.transforms = transforms

    def fail(self, message: str, line: int | None) -> typing.NoReturn:
        raise MappingError(message, file=self.file, line=line)

    def check_keys(self, node: _YMap, allowed: tuple[str, ...], where: str) -> None:
        for key in node:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                message = f"unknown key {key!r} in {where} ({hint}allowed: {', '.join(allowed)})"
                self.fail(message, node.key_lines[key])

    # ------------------------------------------------------------------ file and streams

    def compile_file(self, tree: Any) -> dict[str, StreamMapping]:
        if not isinstance(tree, _YMap):
            self.fail("the mapping file must be a mapping with a 'streams' key", 1)
        self.check_keys(tree, _TOP_KEYS, "the mapping file")
        streams = tree.get("streams")
        if "streams" not in tree:
            self.fail("the mapping file has no 'streams'", tree.line)
        if not isinstance(streams, _YMap) or not streams:
            self.fail("'streams' must be a mapping of stream names", tree.key_lines["streams"])
        return {
            name: self.compile_stream(name, spec, streams.key_lines[name])
            for name, spec in streams.items()
        }

    def compile_stream(self, name: str, node: Any, line: int) -> StreamMapping:
        if not isinstance(node, _YMap):
            self.fail(f"stream {name!r} must be a mapping with 'kind' and 'fields'", line)
        self.check_keys(node, _STREAM_KEYS, f"stream {name!r}")
        kind = node.get("kind", "person")
        if kind not in ("person", "activity"):
            line = node.value_lines.get("kind", line)
            self.fail(f"stream {name!r}: kind must be 'person' or 'activity'", line)
        targets = _targets_of(_MODELS[kind])
        fields = node.get("fields")
        if not isinstance(fields, _YMap) or not fields:
            where = node.key_lines.get("fields", line)
            self.fail(f"stream {name!r}: 'fields' must be a mapping of canonical fields", where)
        plans, labels, lines, sources = self.compile_fields(fields, targets, kind)
        for target in targets.required:
            if target not in fields:
                what = f"stream {name!r}: {target!r} must be mapped (every {kind} record needs it)"
                self.fail(what, node.key_lines["fields"])
        required = self.compile_required(node)
        sources.update(source.split(".", 1)[0] for source, _ in required)
        push = self.compile_push(node.get("push"), node.key_lines.get("push", line), kind)
        return StreamMapping(
            kind=kind,
            source_fields=frozenset(sources),
            _model=_MODELS[kind],
            _plans=tuple(plans),
            _labels=types.MappingProxyType(labels),
            _lines=types.MappingProxyType(lines),
            _required=tuple((_source_getter(path), path) for path, _ in required),
            _push=tuple(push),
        )

    def compile_required(self, node: _YMap) -> list[tuple[str, int]]:
        value = node.get("required")
        if value is None:
            return []
        line = node.value_lines["required"]
        if not isinstance(value, _YList):
            self.fail("'required' must be a list of source field names", line)
        result = []
        for item, item_line in zip(value, value.item_lines, strict=True):
            if not isinstance(item, str) or not item:
                self.fail("'required' must list source field names (text)", item_line)
            result.append((item, item_line))
        return result

    # ------------------------------------------------------------------ fields

    def compile_fields(
        self, fields: _YMap, targets: _Targets, kind: str
    ) -> tuple[list[_Plan], dict[str, str], dict[str, int], set[str]]:
        plans: list[_Plan] = []
        labels: dict[str, str] = {}
        lines: dict[str, int] = {}
        sources: set[str] = set()
        for target, raw_spec in fields.items():
            line = fields.key_lines[target]
            self.check_target(target, targets, kind, line)
            self.check_overlap(target, lines, line)
            spec = self.parse_spec(raw_spec, fields.value_lines[target], target, None)
            head, *path = target.split(".")
            sub, rest = (path[0], tuple(path[1:])) if path else ("", ())
            is_list = target in targets.lists
            flat = _flat_source(spec)
            if flat is not None:  # read inline by the apply loop: no call at all
                compute = None
            else:
                flat, compute = "", _compile_compute(spec, _source_getter)
            plans.append((flat, compute, is_list, head, sub, rest, target, spec.required))
            labels[target] = f"{target} {spec.origin}"
            lines[target] = line
            sources.update(source.split(".", 1)[0] for source in spec.sources)
        return plans, labels, lines, sources

    def check_target(self, target: str, targets: _Targets, kind: str, line: int) -> None:
        if target in _ENGINE_FIELDS:
            self.fail(f"{target!r} is set by the sync engine and cannot be mapped", line)
        if not targets.allows(target):
            close = targets.suggestions(target)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            message = f"unknown canonical field {target!r} for kind {kind}{hint}; allowed: "
            self.fail(message + targets.summary, line)

    def check_overlap(self, target: str, seen: Mapping[str, int], line: int) -> None:
        # "address" and "address.city" would each overwrite what the other builds.
        for other in seen:
            if other.startswith(target + ".") or target.startswith(other + "."):
                message = (
                    f"{target!r} overlaps {other!r} (line {seen[other]}); map one or the other"
                )
                self.fail(message, line)

    # ------------------------------------------------------------------ specs

    def parse_spec(
        self, value: Any, line: int, what: str, read_check: Callable[[str, int], None] | None
    ) -> _Spec:
        """Parse one spec; ``read_check`` validates ``from`` paths (push: canonical paths)."""
        if isinstance(value, str | _YList):  # shorthand: a field name, or a list of them
            names = self.parse_from(value, line, what, read_check)
            multi = isinstance(value, _YList)
            return _Spec(names, _UNSET, (), _UNSET, required=False, multi=multi)
        if not isinstance(value, _YMap):
            self.fail(f"{what}: a spec is a field name or a mapping with 'from' or 'value'", line)
        self.check_keys(value, _SPEC_KEYS, f"the spec of {what!r}")
        if ("from" in value) == ("value" in value):
            self.fail(f"{what}: give exactly one of 'from' and 'value'", value.line)
        sources: tuple[str, ...] = ()
        if "from" in value:
            sources = self.parse_from(value["from"], value.value_lines["from"], what, read_check)
        steps: tuple[_Step, ...] = ()
        if "transform" in value:
            steps = self.parse_transforms(value["transform"], value.value_lines["transform"])
        required = value.get("required", False)
        if not isinstance(required, bool):
            self.fail(f"{what}: 'required' must be true or false", value.value_lines["required"])
        return _Spec(
            sources=sources,
            constant=_plain(value.get("value")),
            steps=steps,
            default=_plain(value["default"]) if "default" in value else _UNSET,
            required=required,
            multi=isinstance(value.get("from"), list),
        )

    def parse_from(
        self, value: Any, line: int, what: str, read_check: Callable[[str, int], None] | None
    ) -> tuple[str, ...]:
        if isinstance(value, _YList):
            items, lines = list(value), value.item_lines
        else:
            items, lines = [value], [line]
        if not items:
            self.fail(f"{what}: 'from' must name at least one field", line)
        for item, item_line in zip(items, lines, strict=True):
            if not isinstance(item, str) or not item.strip():
                self.fail(
                    f"{what}: 'from' must be a field name or a list of field names", item_line
                )
            if read_check is not None:
                read_check(item, item_line)
        return tuple(items)

    # ------------------------------------------------------------------ transforms

    def parse_transforms(self, value: Any, line: int) -> tuple[_Step, ...]:
        if isinstance(value, _YList):
            return tuple(
                self.parse_transform(item, item_line)
                for item, item_line in zip(value, value.item_lines, strict=True)
            )
        return (self.parse_transform(value, line),)

    def parse_transform(self, value: Any, line: int) -> _Step:
        kwargs: dict[str, Any] = {}
        if isinstance(value, str):
            name = value
        elif isinstance(value, _YMap) and len(value) == 1:
            name = next(iter(value))
            args = value[name]
            line = value.key_lines[name]
            if args is not None and not isinstance(args, _YMap):
                message = f"the arguments of transform {name!r} must be a mapping"
                self.fail(
                    f"{message}, e.g. {{{name}: {{argument: value}}}}", value.value_lines[name]
                )
            if args:
                kwargs = _plain(args)
        else:
            self.fail("a transform is a name, {name: {arguments}}, or a list of those", line)
        fn = self.lookup_transform(name, line)
        self.check_arguments(name, fn, kwargs, line)
        bound = functools.partial(fn, **kwargs) if kwargs else fn
        return _Step(name, bound, bool(getattr(fn, "elementwise", True)))

    def lookup_transform(self, name: str, line: int) -> Callable[..., Any]:
        fn = self.transforms.get(name)
        if fn is not None:
            return fn
        close = difflib.get_close_matches(name, list(self.transforms), n=3)
        if close:
            hint = f"did you mean {', '.join(map(repr, close))}?"
        else:
            hint = f"known: {', '.join(sorted(self.transforms))}"
        self.fail(f"unknown transform {name!r} ({hint})", line)

    def check_arguments(
        self, name: str, fn: Callable[..., Any], kwargs: dict[str, Any], line: int
    ) -> None:
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):  # some C callables have no signature to check against
            signature = None
        if signature is not None:
            try:
                signature.bind(None, **kwargs)
            except TypeError as exc:
                self.fail(f"transform {name!r}: {exc}", line)
        check = getattr(fn, "check_args", None)
        if check is not None:
            try:
                check(**kwargs)
            except (TypeError, ValueError) as exc:
                self.fail(f"transform {name!r}: {exc}", line)

    # ------------------------------------------------------------------ push

    def compile_push(self, node: Any, line: int, kind: str) -> list[_PushPlan]:
        if node is None:
            return []
        if not isinstance(node, _YMap):
            self.fail("'push' must be a mapping of source fields to canonical specs", line)
        targets = _targets_of(_MODELS[kind])

        def read_check(path: str, path_line: int) -> None:
            if path not in _ENGINE_FIELDS and not targets.allows(path):
                close = targets.suggestions(path)
                hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
                self.fail(f"push reads unknown canonical field {path!r}{hint}", path_line)

        plans: list[_PushPlan] = []
        for key, raw_spec in node.items():
            key_line = node.key_lines[key]
            if not key.strip() or any(not part for part in key.split(".")):
                self.fail(f"push: {key!r} is not a usable source field name", key_line)
            spec = self.parse_spec(raw_spec, node.value_lines[key], key, read_check)
            compute = _compile_compute(spec, _canonical_getter)
            plans.append((compute, tuple(key.split(".")), f"{key} {spec.origin}", spec.required))
        return plans


# (flat source key, else compute; is a list target; the target path as head, sub (or "") and
# the rest; target; required)
_Plan = tuple[str, Getter | None, bool, str, str, tuple[str, ...], str, bool]


def _flat_source(spec: _Spec) -> str | None:
    """The source key when a spec is a plain copy of one top-level field, else None."""
    if spec.multi or len(spec.sources) != 1 or spec.steps or spec.default is not _UNSET:
        return None
    source = spec.sources[0]
    return None if "." in source else source


# (compute, source key path, label, required)
_PushPlan = tuple[Getter, tuple[str, ...], str, bool]


# =========================================================================== streams


def _put(out: dict[str, Any], head: str, rest: tuple[str, ...], value: Any) -> None:
    node = out.get(head)
    if node is None:
        node = out[head] = {}
    for part in rest[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        node = child
    node[rest[-1]] = value


@dataclass(frozen=True, eq=False)
class StreamMapping:
    """The compiled mapping of one stream.

    Attributes:
        kind: ``"person"`` or ``"activity"``: the canonical model records map to.
        source_fields: the top-level raw fields the mapping reads (to check a CSV header).
    """

    kind: Kind
    source_fields: frozenset[str]
    _model: type[Person] | type[Activity] = field(repr=False)
    _plans: tuple[_Plan, ...] = field(repr=False)
    _labels: Mapping[str, str] = field(repr=False)
    _lines: Mapping[str, int] = field(repr=False)
    _required: tuple[tuple[Getter, str], ...] = field(repr=False)
    _push: tuple[_PushPlan, ...] = field(repr=False)

    def apply(
        self, raw: Mapping[str, Any], *, source: str, stream: str, region: str | None = None
    ) -> MappingResult:
        """Map one raw record to a validated canonical record. Never raises.

        Args:
            raw: the record as read from the source system.
            source: the connection name, stored on the record.
            stream: the stream name, stored on the record.
            region: the default region for phone numbers written without a country code.

        Returns:
            The record, or the problems that make it unusable (none of them holds a value).
        """
        try:
            return self._apply(raw, source, stream, region)
        except Exception as exc:  # last line of defence: one record must never stop a sync
            return MappingResult(None, [f"record: mapping failed ({type(exc).__name__})"])

    def _apply(
        self, raw: Mapping[str, Any], source: str, stream: str, region: str | None
    ) -> MappingResult:
        if not isinstance(raw, Mapping):
            return MappingResult(None, ["record: not a mapping of field names to values"])
        data, problems, failed = self._build(raw)
        data["source"] = source
        data["stream"] = stream
        try:
            record = self._model.model_validate(data, context={"region": region})
        except ValidationError as exc:
            problems.extend(self._validation_problems(exc, failed))
            return MappingResult(None, problems or ["record: invalid"])
        if problems:
            return MappingResult(None, problems)
        return MappingResult(record, [])

    def to_canonical_dict(
        self, raw: Mapping[str, Any], *, source: str = "", stream: str = ""
    ) -> tuple[dict[str, Any] | None, list[str]]:
        """The canonical dict of a raw record before model validation (for tests and tools).

        Returns:
            ``(dict, [])``, or ``(None, problems)`` when a transform or a required field fails.
        """
        try:
            data, problems, _ = self._build(raw)
        except Exception as exc:
            return None, [f"record: mapping failed ({type(exc).__name__})"]
        if problems:
            return None, problems
        if source:
            data["source"] = source
        if stream:
            data["stream"] = stream
        return data, []

    def _build(self, raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], set[str]]:
        out: dict[str, Any] = {}
        problems: list[str] = []
        failed: set[str] = set()
        for get, name in self._required:
            if _is_empty(get(raw)):
                problems.append(f"required source field {name!r}: missing")
        # The hot loop of every sync: _shape_list / _shape_scalar and _put are inlined for the
        # usual cases (a text value; a target at most one level deep).
        for key, compute, is_list, head, sub, rest, target, required in self._plans:
            if compute is None:
                value = raw.get(key)
            else:
                try:
                    value = compute(raw)
                except _StepFailed as failure:
                    problems.append(f"{self._labels[target]}: {_step_reason(failure)}")
                    failed.add(target)
                    continue
            if value.__class__ is str:
                if not value or value.isspace():
                    value = None
                elif is_list:
                    value = [value]
            elif is_list:
                value = _shape_list(value)
            elif isinstance(value, list | tuple):
                value = _shape_scalar(value)
            if value is None:
                if required:
                    problems.append(f"{self._labels[target]}: missing")
                    failed.add(target)
                continue
            if not sub:
                out[head] = value
            elif not rest:
                node = out.get(head)
                if node is None:
                    out[head] = {sub: value}
                else:
                    node[sub] = value
            else:
                _put(out, head, (sub, *rest), value)
        return out, problems, failed

    def _validation_problems(self, exc: ValidationError, failed: set[str]) -> list[str]:
        problems: list[str] = []
        for error in exc.errors(include_url=False, include_context=False):
            loc = tuple(str(part) for part in error.get("loc", ()))
            target = self._target_at(loc)
            if target in failed:
                continue  # already reported by the transform or required check
            label = self._labels.get(target, target)
            problems.append(f"{label}: {_validation_reason(error)}")
        return problems

    def _target_at(self, loc: tuple[str, ...]) -> str:
        for end in range(len(loc), 0, -1):
            path = ".".join(loc[:end])
            if path in self._labels:
                return path
        return ".".join(loc) or "record"

    def to_source(self, record: Person | Activity | Mapping[str, Any]) -> dict[str, Any]:
        """Map a canonical record back to the source system's fields (the ``push`` section).

        Args:
            record: a canonical record, or a canonical dict.

        Returns:
            The source fields; ``{}`` when the mapping has no ``push`` section.

        Raises:
            RecordError: if a transform rejects a value or a required value is missing.
        """
        out: dict[str, Any] = {}
        problems: list[str] = []
        for compute, key, label, required in self._push:
            try:
                value = compute(record)
            except _StepFailed as failure:
                problems.append(f"{label}: {_step_reason(failure)}")
                continue
            if required and _is_empty(value):
                problems.append(f"{label}: missing")
            if len(key) == 1:
                out[key[0]] = value
            else:
                _put(out, key[0], key[1:], value)
        if problems:
            raise RecordError(problems, record_id=_record_id(record))
        return out

    def line_of(self, target: str) -> int | None:
        """The line of the mapping file where canonical field ``target`` is mapped."""
        return self._lines.get(target)


def _validation_reason(error: Any) -> str:
    """A pydantic error as a short reason, built from its type and message, never its input."""
    if error.get("type") == "missing":
        return "missing"
    message = str(error.get("msg", "")).strip()
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if not message or _leaks(message, error.get("input")):
        return f"invalid ({error.get('type', 'error')})"
    return message


def _record_id(record: Any) -> str | None:
    value = record.get("external_id") if isinstance(record, Mapping) else None
    if value is None:
        value = getattr(record, "external_id", None)
    return None if value is None else str(value)


# =========================================================================== files


@dataclass(frozen=True, eq=False)
class MappingFile:
    """A loaded, validated and compiled mapping file.

    Attributes:
        path: where it was read from.
        fingerprint: a short hash of the file's bytes; it changes whenever the mapping does.
        system: the informational ``system`` name, if given.
    """

    path: str
    fingerprint: str
    system: str | None
    streams: Mapping[str, StreamMapping] = field(repr=False)

    def stream(self, name: str) -> StreamMapping:
        """The mapping of stream ``name``, or of ``"*"`` when the file has no such stream.

        Raises:
            MappingError: if the file maps neither.
        """
        found = self.streams.get(name) or self.streams.get(_ANY_STREAM)
        if found is None:
            known = ", ".join(sorted(self.streams))
            raise MappingError(f"no mapping for stream {name!r} (mapped: {known})", file=self.path)
        return found


def load_mapping(
    ref: str | Path,
    *,
    transforms: Mapping[str, Callable[..., Any]] | None = None,
    base_dir: Path | None = None,
) -> MappingFile:
    """Load, validate and compile a mapping file.

    Args:
        ref: a path (relative to ``base_dir`` when given), or the name of a built-in mapping
            (``"people_file"``) shipped in the ``crmhub.mappings`` package.
        transforms: the transforms mapping files may use, by name; the built-ins by default.
            The hub passes ``Plugins().transforms()``, which adds plugin transforms.
        base_dir: the directory relative paths are resolved against.

    Returns:
        The compiled mapping.

    Raises:
        MappingError: if the file cannot be read or is invalid; the message names the file,
            the line and what is wrong.
    """
    path, data = _read(ref, base_dir)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise MappingError("the mapping file is not UTF-8 text", file=path, line=line) from None
    tree = _parse_yaml(text, path)
    compiler = _Compiler(path, BUILTIN_TRANSFORMS if transforms is None else transforms)
    streams = compiler.compile_file(tree)
    system = tree.get("system")
    return MappingFile(
        path=path,
        fingerprint=hashlib.sha256(data).hexdigest()[:16],
        system=None if system is None else str(system),
        streams=types.MappingProxyType(streams),
    )


def _builtin_dir() -> Traversable:
    try:
        return resources.files("crmhub.mappings")
    except ModuleNotFoundError:  # running from a checkout: mappings/ sits beside crmhub/
        return Path(crmhub.__file__).parent.parent / "mappings"


def _builtin_names() -> list[str]:
    try:
        return sorted(
            entry.name.removesuffix(".yaml")
            for entry in _builtin_dir().iterdir()
            if entry.name.endswith(".yaml")
        )
    except OSError:
        return []


def _read(ref: str | Path, base_dir: Path | None) -> tuple[str, bytes]:
    path = Path(ref)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    try:
        if path.is_file():
            return str(path), path.read_bytes()
        name = str(ref)
        if _BUILTIN_NAME.fullmatch(name):
            filename = name if name.endswith(".yaml") else f"{name}.yaml"
            resource = _builtin_dir() / filename
            if resource.is_file():
                return str(resource), resource.read_bytes()
    except OSError as exc:
        message = f"cannot read the mapping file ({exc.strerror})"
        raise MappingError(message, file=str(path)) from None
    builtins = ", ".join(_builtin_names()) or "none"
    message = f"no such mapping file, nor a built-in mapping of that name (built-in: {builtins})"
    raise MappingError(message, file=str(path))

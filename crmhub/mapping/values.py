"""The value machinery compiled mappings run for every field of every record.

Shaping values for scalar and list targets, transform steps and their value-free failure
reasons, getters that read source fields (dotted paths) or canonical fields (push), the
parsed form of one spec, and the compilation of a spec into a ``compute(raw)`` closure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Getter = Callable[[Any], Any]


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


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

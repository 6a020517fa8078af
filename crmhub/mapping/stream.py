"""The compiled mapping of one stream and what applying it yields.

:class:`StreamMapping` runs the compiled plans over a raw record (the hot loop of every sync),
validates the result into a canonical model and reports value-free problems as a
:class:`MappingResult`; ``to_source`` runs the ``push`` plans the other way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from crmhub.errors import RecordError
from crmhub.mapping.values import (
    Getter,
    _is_empty,
    _leaks,
    _shape_list,
    _shape_scalar,
    _step_reason,
    _StepFailed,
)
from crmhub.model import Activity, Person

Kind = Literal["person", "activity"]

# (flat source key, else compute; is a list target; the target path as head, sub (or "") and
# the rest; target; required)
_Plan = tuple[str, Getter | None, bool, str, str, tuple[str, ...], str, bool]

# (compute, source key path, label, required)
_PushPlan = tuple[Getter, tuple[str, ...], str, bool]


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

    @property
    def can_push(self) -> bool:
        """Whether the mapping has a ``push`` section (golden values can be written back)."""
        return bool(self._push)

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

"""The compiler: validates the parsed YAML of a mapping file and builds its stream mappings.

Every check of the format happens here, with the file and line of the offending key or value
in the message; each field and push spec is compiled once into the plans and closures that
:class:`~crmhub.mapping.stream.StreamMapping` runs per record.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from crmhub.errors import MappingError
from crmhub.mapping.stream import StreamMapping, _Plan, _PushPlan
from crmhub.mapping.targets import _ENGINE_FIELDS, _MODELS, _Targets, _targets_of
from crmhub.mapping.values import (
    _UNSET,
    _canonical_getter,
    _compile_compute,
    _source_getter,
    _Spec,
    _Step,
)
from crmhub.mapping.yamlsource import _plain, _YList, _YMap

_TOP_KEYS = ("system", "description", "streams")
_STREAM_KEYS = ("kind", "description", "fields", "required", "push")
_SPEC_KEYS = ("from", "value", "transform", "default", "required")


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


def _flat_source(spec: _Spec) -> str | None:
    """The source key when a spec is a plain copy of one top-level field, else None."""
    if spec.multi or len(spec.sources) != 1 or spec.steps or spec.default is not _UNSET:
        return None
    source = spec.sources[0]
    return None if "." in source else source

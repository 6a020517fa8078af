"""The canonical targets a mapping may write, derived from the models' fields.

For :class:`~crmhub.model.Person` and :class:`~crmhub.model.Activity` this works out which
paths (``address.city``, ``consent.email.status``, ``identifiers.<name>`` ...) may be mapped,
which are lists, which must be mapped, and a summary for error messages, so that the
mapping format follows the model without a second list to keep in step.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from crmhub.model import Activity, Person

_MODELS: dict[str, type[Person] | type[Activity]] = {"person": Person, "activity": Activity}
_ENGINE_FIELDS = frozenset({"source", "stream"})


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

"""Survivorship: which value of each field the golden record keeps, and why.

The members of a cluster are source records (their canonical JSON as stored). For each field
a rule picks the surviving value:

- ``source_priority``: from the most trusted source that has a value (config order);
- ``most_recent``: from the most recently updated record;
- ``most_frequent``: the value most records agree on;
- ``most_complete``: the fullest value (the longest text; for an address, the most parts);
- ``union``: every distinct value (emails, phones), most frequent first;
- ``most_restrictive``: consent per channel: one "denied" anywhere wins, then "granted".

Ties are broken the same way every time: the more recent record, then the higher record id.
Steward overrides come first, whatever the rule. The address survives whole, from one
record, because parts of two addresses make an address nobody lives at. Every golden value
records the source record it came from and the rule that chose it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmhub.config import SurvivorshipSettings
from crmhub.model import CONSENT_CHANNELS, GoldenValue

__all__ = [
    "DEFAULT_FIELD_RULES", "EMPTY_VALUES", "GOLDEN_FIELDS", "PICKERS", "Entry", "Member",
    "field_rules", "source_rank", "survive",
]  # fmt: skip

GOLDEN_FIELDS = (
    "first_name", "last_name", "full_name", "emails", "phones", "company", "title",
    "address", "birth_date", "consent", "lawful_basis", "identifiers",
)  # fmt: skip

DEFAULT_FIELD_RULES = {
    "emails": "union",
    "phones": "union",
    "consent": "most_restrictive",
    "identifiers": "union",
}
"""Rules that hold whatever the configured default is (overridable per field)."""


@dataclass(frozen=True)
class Member:
    """One source record of a cluster, as survivorship needs it."""

    record_id: int
    source: str
    data: Mapping[str, Any]
    updated_at: datetime | None = None

    def recency(self) -> tuple[float, int]:
        """Sort key: more recent first when sorted in reverse; record id breaks ties."""
        stamp = self.updated_at.timestamp() if self.updated_at else float("-inf")
        return stamp, self.record_id


def survive(
    members: Sequence[Member],
    settings: SurvivorshipSettings | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, GoldenValue]:
    """The golden values of one cluster, field by field, with their provenance.

    Args:
        members: the cluster's source records.
        settings: the ``[survivorship]`` config (source priority, default and per-field rules).
        overrides: steward-set values by field; they win over every rule.
    """
    settings = settings or SurvivorshipSettings()
    ordered = sorted(members, key=Member.recency, reverse=True)  # most recent first
    rank = source_rank(settings)
    golden: dict[str, GoldenValue] = {}
    for name, rule in field_rules(settings).items():
        if overrides and name in overrides:
            golden[name] = GoldenValue(value=overrides[name], rule="steward_override")
            continue
        entries = [(m.record_id, m.source, m.data[name]) for m in ordered if _has(m.data.get(name))]
        if entries:
            value, record_id = PICKERS[rule](entries, rank)
            golden[name] = GoldenValue(value=value, source_record_id=record_id, rule=rule)
    return golden


def field_rules(settings: SurvivorshipSettings) -> dict[str, str]:
    """The rule of each golden field, in :data:`GOLDEN_FIELDS` order: the field's own, else
    its default (:data:`DEFAULT_FIELD_RULES`), else source priority when one is configured,
    else the configured default rule."""
    rules: dict[str, str] = {}
    for name in GOLDEN_FIELDS:
        rule = settings.fields.get(name) or DEFAULT_FIELD_RULES.get(name)
        if rule is None:
            rule = "source_priority" if settings.source_priority else settings.default_rule
        rules[name] = rule
    return rules


def source_rank(settings: SurvivorshipSettings) -> dict[str, int]:
    """Each listed source's place in the priority order (unlisted sources come after)."""
    return {source: i for i, source in enumerate(settings.source_priority)}


EMPTY_VALUES: tuple[Any, ...] = (None, "", [], {})
"""Values that mean "this record does not know": no rule picks them."""


def _has(value: Any) -> bool:
    return value not in EMPTY_VALUES


Entry = tuple[int, str, Any]
"""(record id, source, value) of a member that knows the field; a rule gets them most recent
first."""

Pick = Callable[[Sequence[Entry], Mapping[str, int]], tuple[Any, "int | None"]]
"""A rule: from the entries and the source ranks, the golden value and where it came from."""


def _most_recent(entries: Sequence[Entry], _rank: Mapping[str, int]) -> tuple[Any, int | None]:
    record_id, _, value = entries[0]
    return value, record_id


def _source_priority(entries: Sequence[Entry], rank: Mapping[str, int]) -> tuple[Any, int | None]:
    # min() keeps the first of equals: recency order within a source; unlisted sources last.
    record_id, _, value = min(entries, key=lambda e: rank.get(e[1], len(rank)))
    return value, record_id


def _key(value: Any) -> str:
    return repr(sorted(value.items())) if isinstance(value, dict) else repr(value)


def _most_frequent(entries: Sequence[Entry], _rank: Mapping[str, int]) -> tuple[Any, int | None]:
    keys = [_key(value) for _, _, value in entries]
    counts = Counter(keys)
    top = max(counts.values())
    # The most recent of the most frequent.
    record_id, _, value = next(e for e, k in zip(entries, keys, strict=True) if counts[k] == top)
    return value, record_id


def _completeness(value: Any) -> int:
    if isinstance(value, dict):
        return sum(1 for v in value.values() if _has(v))
    if isinstance(value, list):
        return len(value)
    return len(str(value))


def _most_complete(entries: Sequence[Entry], _rank: Mapping[str, int]) -> tuple[Any, int | None]:
    sizes = [_completeness(value) for _, _, value in entries]
    top = max(sizes)
    record_id, _, value = next(e for e, size in zip(entries, sizes, strict=True) if size == top)
    return value, record_id


def _union(entries: Sequence[Entry], _rank: Mapping[str, int]) -> tuple[Any, int | None]:
    newest = entries[0][0]
    if isinstance(entries[0][2], dict):  # identifiers: the most recent value per kind
        merged: dict[str, Any] = {}
        for _, _, value in reversed(entries):
            merged.update(value)
        return merged, newest
    counts: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    for position, (_, _, values) in enumerate(entries):
        for value in values:
            counts[value] += 1
            first_seen.setdefault(value, position)
    return sorted(counts, key=lambda v: (-counts[v], first_seen[v], v)), newest


_RESTRICTIVENESS = {"denied": 2, "granted": 1, "unknown": 0}


def _most_restrictive(entries: Sequence[Entry], _rank: Mapping[str, int]) -> tuple[Any, int | None]:
    consent: dict[str, Any] = {}
    chosen_from: int | None = None
    for channel in CONSENT_CHANNELS:
        candidates = [
            (record_id, value[channel])
            for record_id, _, value in entries
            if isinstance(value.get(channel), dict)
        ]
        if not candidates:
            continue
        # The most restrictive status; among equals, the most recent record (already first).
        record_id, chosen = max(
            candidates, key=lambda c: _RESTRICTIVENESS.get(c[1].get("status", "unknown"), 0)
        )
        consent[channel] = dict(chosen)
        if chosen_from is None or chosen.get("status") == "denied":
            chosen_from = record_id
    return consent, chosen_from


PICKERS: dict[str, Pick] = {
    "most_recent": _most_recent,
    "source_priority": _source_priority,
    "most_frequent": _most_frequent,
    "most_complete": _most_complete,
    "union": _union,
    "most_restrictive": _most_restrictive,
}
"""The survivorship rules by name: one implementation for :func:`survive` and for the
hub's bulk golden records (:class:`crmhub.resolution.golden.GoldenBuilder`)."""

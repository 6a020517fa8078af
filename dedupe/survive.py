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

__all__ = ["DEFAULT_FIELD_RULES", "GOLDEN_FIELDS", "Member", "survive"]

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
    golden: dict[str, GoldenValue] = {}
    for name in GOLDEN_FIELDS:
        if overrides and name in overrides:
            golden[name] = GoldenValue(value=overrides[name], rule="steward_override")
            continue
        rule = settings.fields.get(name) or DEFAULT_FIELD_RULES.get(name)
        if rule is None:
            rule = "source_priority" if settings.source_priority else settings.default_rule
        chosen = _RULES[rule](name, ordered, settings)
        if chosen is not None:
            golden[name] = chosen
    return golden


def _has(value: Any) -> bool:
    return value not in (None, "", [], {})


def _present(name: str, ordered: Sequence[Member]) -> list[Member]:
    return [m for m in ordered if _has(m.data.get(name))]


def _from(member: Member, name: str, rule: str) -> GoldenValue:
    return GoldenValue(value=member.data[name], source_record_id=member.record_id, rule=rule)


def _most_recent(name: str, ordered: Sequence[Member], _s: SurvivorshipSettings) -> Any:
    present = _present(name, ordered)
    return _from(present[0], name, "most_recent") if present else None


def _source_priority(name: str, ordered: Sequence[Member], s: SurvivorshipSettings) -> Any:
    present = _present(name, ordered)
    if not present:
        return None
    rank = {source: i for i, source in enumerate(s.source_priority)}
    # Stable sort keeps recency order within a source; unlisted sources come last.
    best = sorted(present, key=lambda m: rank.get(m.source, len(rank)))[0]
    return _from(best, name, "source_priority")


def _key(value: Any) -> str:
    return repr(sorted(value.items())) if isinstance(value, dict) else repr(value)


def _most_frequent(name: str, ordered: Sequence[Member], _s: SurvivorshipSettings) -> Any:
    present = _present(name, ordered)
    if not present:
        return None
    counts = Counter(_key(m.data[name]) for m in present)
    top = max(counts.values())
    best = next(m for m in present if counts[_key(m.data[name])] == top)  # most recent of them
    return _from(best, name, "most_frequent")


def _completeness(value: Any) -> int:
    if isinstance(value, dict):
        return sum(1 for v in value.values() if _has(v))
    if isinstance(value, list):
        return len(value)
    return len(str(value))


def _most_complete(name: str, ordered: Sequence[Member], _s: SurvivorshipSettings) -> Any:
    present = _present(name, ordered)
    if not present:
        return None
    top = max(_completeness(m.data[name]) for m in present)
    best = next(m for m in present if _completeness(m.data[name]) == top)
    return _from(best, name, "most_complete")


def _union(name: str, ordered: Sequence[Member], _s: SurvivorshipSettings) -> Any:
    present = _present(name, ordered)
    if not present:
        return None
    if isinstance(present[0].data[name], dict):  # identifiers: the most recent value per kind
        merged: dict[str, Any] = {}
        for member in reversed(present):
            merged.update(member.data[name])
        return GoldenValue(value=merged, source_record_id=present[0].record_id, rule="union")
    counts: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    for position, member in enumerate(present):
        for value in member.data[name]:
            counts[value] += 1
            first_seen.setdefault(value, position)
    values = sorted(counts, key=lambda v: (-counts[v], first_seen[v], v))
    return GoldenValue(value=values, source_record_id=present[0].record_id, rule="union")


_RESTRICTIVENESS = {"denied": 2, "granted": 1, "unknown": 0}


def _most_restrictive(name: str, ordered: Sequence[Member], _s: SurvivorshipSettings) -> Any:
    present = _present(name, ordered)
    if not present:
        return None
    consent: dict[str, Any] = {}
    chosen_from: int | None = None
    for channel in CONSENT_CHANNELS:
        candidates = [
            (m, m.data[name][channel])
            for m in present
            if isinstance(m.data[name].get(channel), dict)
        ]
        if not candidates:
            continue
        # The most restrictive status; among equals, the most recent record (already first).
        member, value = max(
            candidates, key=lambda c: _RESTRICTIVENESS.get(c[1].get("status", "unknown"), 0)
        )
        consent[channel] = dict(value)
        if chosen_from is None or value.get("status") == "denied":
            chosen_from = member.record_id
    return GoldenValue(value=consent, source_record_id=chosen_from, rule="most_restrictive")


_RULES: dict[str, Callable[[str, Sequence[Member], SurvivorshipSettings], Any]] = {
    "most_recent": _most_recent,
    "source_priority": _source_priority,
    "most_frequent": _most_frequent,
    "most_complete": _most_complete,
    "union": _union,
    "most_restrictive": _most_restrictive,
}

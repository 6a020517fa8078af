"""Subject resolution: from the identifiers of a request to every source record of the person.

Starting from the given emails, phones and source ids, the subject grows until nothing new is
reached:

- records holding one of the subject's emails or phones (found through the blocking keys of
  matching, so the look-up costs what the subject holds, not what the hub holds; records
  their system deleted, which have no keys, through their own small index);
- the record named by a source id;
- every member of a golden record one of those records belongs to;
- the emails and phones of every record reached so far, in turn.

Each record says why it was reached, so the officer can see before anything is deleted
whether a shared address (a family's phone, ``info@``) pulled in someone else, and leave such
a record out (``exclude``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Text, func, or_, select, tuple_
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import Connection

from crmhub.dedupe.blocking import BlockingRule, key_digest, record_keys
from crmhub.dedupe.normalize import match_frame
from crmhub.errors import PrivacyError
from crmhub.model import Person
from crmhub.privacy.identifiers import Identifier, record_identifiers, source_id
from crmhub.store.dialect import in_chunks
from crmhub.store.schema import (
    activities,
    customers,
    match_keys,
    outbox,
    quarantine,
    source_records,
)

__all__ = [
    "MAX_SUBJECT_RECORDS",
    "Subject",
    "SubjectRecord",
    "holders",
    "merged_into",
    "quarantine_rows",
    "resolve_subject",
    "subject_words",
]

MAX_SUBJECT_RECORDS = 5_000
"""More records than one person plausibly has: an identifier shared by many people (a
company switchboard, a role address) has pulled in others, and the officer must narrow it."""

_MAX_ROUNDS = 8
_t = source_records.c
_c = customers.c


@dataclass
class SubjectRecord:
    """One source record of the subject, and why it belongs to them."""

    id: int
    connector: str
    stream: str
    external_id: str
    customer_id: str | None
    deleted: bool
    reason: str
    data: dict[str, Any] = field(repr=False)

    @property
    def source_id(self) -> str:
        """``connector/stream/external_id``."""
        return source_id(self.connector, self.stream, self.external_id)

    @property
    def identifiers(self) -> list[Identifier]:
        """The emails, phones and source id this record carries."""
        return record_identifiers(self.connector, self.stream, self.external_id, self.data)

    @property
    def name(self) -> str:
        """The name the record gives, for the officer's eyes only (never logged)."""
        full = self.data.get("full_name")
        if full:
            return str(full)
        parts = [self.data.get("first_name"), self.data.get("last_name")]
        return " ".join(str(p) for p in parts if p)


@dataclass
class Subject:
    """Everything the hub holds of one person, as found by :func:`resolve_subject`."""

    identifiers: list[Identifier]
    records: list[SubjectRecord]
    customers: list[str]
    excluded: list[int] = field(default_factory=list)
    activities: int = 0
    quarantine: int = 0
    outbox: int = 0

    @property
    def record_ids(self) -> list[int]:
        """The ids of the subject's source records."""
        return [r.id for r in self.records]

    @property
    def reasons(self) -> dict[str, str]:
        """Why each record was reached, by record id (ids and words: no personal data)."""
        return {str(r.id): r.reason for r in self.records}

    def systems(self) -> dict[str, list[SubjectRecord]]:
        """The subject's records by connector instance, in name order."""
        out: dict[str, list[SubjectRecord]] = {}
        for record in sorted(self.records, key=lambda r: (r.connector, r.stream, r.id)):
            out.setdefault(record.connector, []).append(record)
        return out

    def all_identifiers(self) -> list[Identifier]:
        """The given identifiers and every identifier the subject's records carry."""
        found = set(self.identifiers)
        for record in self.records:
            found.update(record.identifiers)
        return sorted(found)

    @property
    def found(self) -> bool:
        """Whether the hub holds anything of the subject."""
        return bool(self.records)


def subject_words(subject: Subject) -> list[str]:
    """The subject's names, emails and phones: what logs must mask while they are handled
    (see :func:`crmhub.logs.sensitive`)."""
    words: set[str] = {i.value for i in subject.all_identifiers() if i.kind != "source_id"}
    for record in subject.records:
        for key in ("first_name", "last_name", "full_name"):
            value = record.data.get(key)
            if isinstance(value, str):
                words.add(value)
    return sorted(words)


def resolve_subject(
    conn: Connection,
    identifiers: Sequence[Identifier],
    *,
    rules: Sequence[BlockingRule],
    seeds: Mapping[int, str] | Iterable[int] = (),
    exclude: Iterable[int] = (),
) -> Subject:
    """Find every source record of the subject (see the module docstring).

    Args:
        identifiers: the identifiers the request names.
        rules: the hub's blocking rules (those keyed on emails or phones alone are used).
        seeds: source record ids already known to be the subject's (a stored request),
            with the reason each was found for, when known.
        exclude: record ids the officer ruled out: neither kept nor followed.

    Raises:
        PrivacyError: the subject grew past :data:`MAX_SUBJECT_RECORDS`.
    """
    excluded = set(exclude)
    found: dict[int, SubjectRecord] = {}
    looked_up: set[Identifier] = set()
    customers_seen: set[str] = set()
    pending = set(identifiers)
    seed_reasons = (
        seeds if isinstance(seeds, Mapping) else dict.fromkeys(seeds, "named by the request")
    )
    pending_seeds = {rid: why for rid, why in seed_reasons.items() if rid not in excluded}
    for _ in range(_MAX_ROUNDS):
        reasons: dict[int, str] = dict(pending_seeds)
        pending_seeds = {}
        new_identifiers = sorted(pending - looked_up)
        looked_up.update(new_identifiers)
        first_round = not found
        for rid, reason in holders(conn, new_identifiers, rules, scan=first_round).items():
            reasons.setdefault(rid, reason)
        new_ids = [rid for rid in reasons if rid not in found and rid not in excluded]
        if not new_ids:
            break
        added = _load(conn, new_ids, reasons)
        found.update(added)
        # Every member of a golden record reached is the subject too.
        new_customers = {r.customer_id for r in added.values() if r.customer_id} - customers_seen
        customers_seen |= new_customers
        members = _members(conn, sorted(new_customers), set(found) | excluded)
        found.update(members)
        if len(found) > MAX_SUBJECT_RECORDS:
            raise PrivacyError(
                f"the subject reaches more than {MAX_SUBJECT_RECORDS} source records: an "
                "identifier shared by many people? name the subject more narrowly"
            )
        pending = {
            i for r in (*added.values(), *members.values()) for i in r.identifiers
        } - looked_up
        if not pending:
            break
    records = sorted(found.values(), key=lambda r: r.id)
    subject = Subject(
        list(identifiers),
        records,
        sorted({*customers_seen, *merged_into(conn, customers_seen)}),
        sorted(excluded),
    )
    _count_related(conn, subject)
    return subject


def holders(
    conn: Connection,
    wanted: Sequence[Identifier],
    rules: Sequence[BlockingRule],
    *,
    scan: bool = False,
) -> dict[int, str]:
    """The records holding any of ``wanted`` (by id), with the reason.

    Matching ignores placeholder addresses (``@example.com``, ``noreply@``) and numbers, so
    they have no keys; with ``scan`` (the identifiers an officer gave), records holding one
    are found by reading every record instead — slow on a big hub, and rare.
    """
    out: dict[int, str] = {}
    if scan:
        out.update(_scan_placeholders(conn, wanted))
    by_source = [i for i in wanted if i.kind == "source_id"]
    for identifier in by_source:
        connector, stream, external_id = identifier.value.split("/", 2)
        rid = conn.execute(
            select(_t.id).where(
                _t.connector == connector, _t.stream == stream, _t.external_id == external_id
            )
        ).scalar_one_or_none()
        if rid is not None:
            out[rid] = f"is the source record {identifier.value}"
    contacts = [i for i in wanted if i.kind in ("email", "phone")]
    if not contacts:
        return out
    probe = Person(
        source="privacy",
        stream="subject",
        external_id="subject",
        emails=[i.value for i in contacts if i.kind == "email"],
        phones=[i.value for i in contacts if i.kind == "phone"],
    )
    probe_frame = match_frame([(0, probe)])
    wanted_forms = {
        "emails": set(probe_frame.multi("emails")[0]),
        "phones": set(probe_frame.multi("phones")[0]),
    }
    candidates: set[int] = set()
    covered: set[str] = set()
    for rule in rules:
        multi = rule.multi_field
        if multi not in wanted_forms or rule.scalar_parts or not wanted_forms[multi]:
            continue
        covered.add(multi)
        _, keys = record_keys(probe_frame, rule)
        digests = sorted({key_digest(k) for k in keys})
        k = match_keys.c
        candidates.update(
            conn.execute(
                select(k.source_record_id).where(k.kind == rule.name, k.value.in_(digests))
            ).scalars()
        )
    uncovered = {name for name, forms in wanted_forms.items() if forms} - covered
    columns = (_t.id, _t.deleted_at, sql_cast(_t.data, Text))
    # One statement per way in, each on its own index (an OR of them would scan the table):
    # the candidates by id, and the few records deleted in their system (they have no keys).
    wheres: list[ColumnElement[bool]] = [_t.deleted_at.is_not(None)]
    if uncovered:  # no blocking rule keyed on it: every record has to be checked
        wheres = [_t.id.is_not(None)]
    else:
        wheres += [_t.id.in_(chunk) for chunk in in_chunks(sorted(candidates))]
    rows = {
        rid: (deleted, raw)
        for w in wheres
        for rid, deleted, raw in conn.execute(select(*columns).where(w))
    }
    parsed = [
        (rid, Person.model_validate_json(raw) if deleted is None else _deleted_person(raw))
        for rid, (deleted, raw) in sorted(rows.items())
    ]
    checked: list[tuple[int, Person]] = [(rid, p) for rid, p in parsed if p is not None]
    if not checked:
        return out
    frame = match_frame(checked)
    for row, (rid, _) in enumerate(checked):
        for name, label in (("emails", "email"), ("phones", "phone")):
            if set(frame.multi(name)[row]) & wanted_forms[name]:
                out.setdefault(rid, f"holds the subject's {label}")
    return out


def _scan_placeholders(conn: Connection, wanted: Sequence[Identifier]) -> dict[int, str]:
    """Records holding a given email or phone that matching has no form for."""
    out: dict[int, str] = {}
    for identifier in wanted:
        if identifier.kind not in ("email", "phone"):
            continue
        field_name = "emails" if identifier.kind == "email" else "phones"
        probe = Person(
            source="privacy",
            stream="subject",
            external_id="subject",
            **{field_name: [identifier.value]},
        )
        if match_frame([(0, probe)]).multi(field_name)[0]:
            continue  # matching keys it: found through the keys
        needle = orjson.dumps(identifier.value).decode()
        rows = conn.execute(
            select(_t.id, sql_cast(_t.data, Text)).where(
                sql_cast(_t.data, Text).contains(needle, autoescape=True)
            )
        )
        for rid, raw in rows:
            if identifier.value in (orjson.loads(raw).get(field_name) or []):
                out[rid] = f"holds the subject's {identifier.kind} (one matching ignores)"
    return out


def _deleted_person(raw: str) -> Person | None:
    try:
        return Person.model_validate_json(raw)
    except ValueError:
        return None


def _load(
    conn: Connection, ids: Sequence[int], reasons: dict[int, str]
) -> dict[int, SubjectRecord]:
    out: dict[int, SubjectRecord] = {}
    for chunk in in_chunks(sorted(ids)):
        rows = conn.execute(
            select(
                _t.id,
                _t.connector,
                _t.stream,
                _t.external_id,
                _t.customer_id,
                _t.deleted_at,
                sql_cast(_t.data, Text),
            ).where(_t.id.in_(chunk))
        )
        for rid, connector, stream, external_id, customer_id, deleted_at, raw in rows:
            out[rid] = SubjectRecord(
                rid,
                connector,
                stream,
                external_id,
                customer_id,
                deleted_at is not None,
                reasons.get(rid, "member of the subject's golden record"),
                orjson.loads(raw),
            )
    return out


def _members(
    conn: Connection, customer_ids: Sequence[str], known: set[int]
) -> dict[int, SubjectRecord]:
    if not customer_ids:
        return {}
    ids: list[int] = []
    for chunk in in_chunks(list(customer_ids)):
        ids += conn.execute(select(_t.id).where(_t.customer_id.in_(chunk))).scalars().all()
    new = [rid for rid in ids if rid not in known]
    return _load(conn, new, {})


def merged_into(conn: Connection, customer_ids: Iterable[str]) -> list[str]:
    """Every id merged (directly or through others) into these customers: the redirects
    that still hold the golden values of the day they were merged."""
    found: list[str] = []
    frontier = sorted(set(customer_ids))
    while frontier:
        step: list[str] = []
        for chunk in in_chunks(frontier):
            step += conn.execute(select(_c.id).where(_c.merged_into.in_(chunk))).scalars().all()
        found += step
        frontier = step
    return found


def _count_related(conn: Connection, subject: Subject) -> None:
    """How many activities, quarantine rows and queued pushes the subject has."""
    if not subject.records:
        return
    keys = sorted({(r.connector, r.external_id) for r in subject.records})
    a = activities.c
    subject.activities = sum(
        conn.execute(
            select(func.count()).where(tuple_(a.connector, a.person_external_id).in_(chunk))
        ).scalar_one()
        for chunk in in_chunks(keys, 500)
    )
    subject.quarantine = len(quarantine_rows(conn, subject))
    o = outbox.c
    subject.outbox = sum(
        conn.execute(select(func.count()).where(o.customer_id.in_(chunk))).scalar_one()
        for chunk in in_chunks(subject.customers)
    )


def quarantine_rows(conn: Connection, subject: Subject) -> list[int]:
    """Quarantine rows of the subject: those of its records, and those whose raw text holds
    one of its emails, phones or external ids (a record that failed mapping has no stored
    person to match on)."""
    q = quarantine.c
    ids: set[int] = set()
    keys = sorted({(r.connector, r.stream, r.external_id) for r in subject.records})
    for chunk in in_chunks(keys, 500):
        ids.update(
            conn.execute(
                select(q.id).where(tuple_(q.connector, q.stream, q.external_id).in_(chunk))
            ).scalars()
        )
    needles = sorted(
        {i.value for i in subject.all_identifiers() if i.kind != "source_id"}
        | {r.external_id for r in subject.records if len(r.external_id) >= 6}
    )
    for needle_chunk in in_chunks(needles, 100):
        ids.update(
            conn.execute(
                select(q.id).where(or_(*(q.raw.contains(n, autoescape=True) for n in needle_chunk)))
            ).scalars()
        )
    return sorted(ids)

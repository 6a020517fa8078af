"""The customer 360: one golden record with where each value came from, its member source
records and how each joined, the steward's overrides, the interaction timeline of its members
and the traits computed from it; and customer search.

One set of functions for the web pages, the JSON API and the CLI. Everything here reads;
changes (overrides, unmerges) are :class:`~crmhub.resolution.steward.Steward` decisions.

Traits are computed when asked, from the activities of the customer's live members:

- lifetime value: the sum of paid invoices (``kind`` invoice, ``status`` paid), per currency,
  in minor units;
- last activity: the newest interaction;
- open tickets: tickets that are not solved or closed;
- sources: the connected systems the customer's records come from.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.engine import Connection

from crmhub.dedupe.survive import GOLDEN_FIELDS
from crmhub.resolution.steward import StewardError, resolve_customer
from crmhub.resolution.views import search_customers
from crmhub.store.schema import activities, customers, links, match_pairs, overrides, source_records

__all__ = [
    "CLOSED_TICKET_STATUSES",
    "LIST_FIELDS",
    "OBJECT_FIELDS",
    "Customer360",
    "CustomerSummary",
    "GoldenField",
    "MemberRecord",
    "Money",
    "OverrideInfo",
    "SourceRef",
    "Suggestion",
    "TimelineItem",
    "TimelinePage",
    "Traits",
    "customer_360",
    "display_value",
    "find_customers",
    "format_money",
    "parse_override_value",
    "resolve",
    "timeline",
    "traits",
    "value_as_text",
]

CLOSED_TICKET_STATUSES = ("solved", "closed")
"""Ticket statuses that are not open (any other, or none, is open)."""

LIST_FIELDS = ("emails", "phones")
"""Golden fields holding a list: typed as values separated by commas or new lines."""

OBJECT_FIELDS = ("address", "consent", "identifiers")
"""Golden fields holding an object: typed as ``key: value`` lines (or a JSON object)."""

_s = source_records.c
_a = activities.c
_p = match_pairs.c
_o = overrides.c

# Currencies whose minor unit is not a hundredth (ISO 4217).
_ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
     "VND", "VUV", "XAF", "XOF", "XPF"}
)  # fmt: skip
_THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


# ---------------------------------------------------------------------- models


class CustomerSummary(BaseModel):
    """A search result."""

    id: str
    name: str | None = None
    emails: list[str] = Field(default_factory=list)
    phones: list[str] = Field(default_factory=list)
    company: str | None = None


class SourceRef(BaseModel):
    """A source record: where a value came from."""

    record_id: int
    connector: str | None = None
    stream: str | None = None
    external_id: str | None = None


class OverrideInfo(BaseModel):
    """A golden value set by a steward: who set it, when and why."""

    field: str
    value: Any
    display: str
    set_by: str
    set_at: datetime
    reason: str


class GoldenField(BaseModel):
    """One surviving value and its provenance: the source record and the rule that chose it,
    or the steward override that set it (``rule`` ``steward_override``)."""

    field: str
    value: Any
    display: str
    rule: str
    source: SourceRef | None = None
    override: OverrideInfo | None = None


class MemberRecord(BaseModel):
    """A source record of the customer, its dates, and how it was linked."""

    record_id: int
    connector: str
    stream: str
    external_id: str
    source_updated_at: datetime | None = None
    first_seen: datetime
    last_seen: datetime
    link_method: str | None = Field(
        None, description="auto | steward | rule | new (the record's own customer)"
    )
    link_probability: float | None = None
    decided_by: str | None = None
    linked_at: datetime | None = None
    supplies: list[str] = Field(
        default_factory=list, description="golden fields whose value this record gave"
    )


class Suggestion(BaseModel):
    """A pending match suggestion between a member and a record of another customer."""

    pair_id: int
    record_id: int
    other_record_id: int
    other_customer_id: str | None = None
    probability: float


class Money(BaseModel):
    """An amount in one currency: minor units, and as text."""

    currency: str
    amount: int
    display: str


class Traits(BaseModel):
    """What the customer's interactions add up to."""

    lifetime_value: list[Money] = Field(
        default_factory=list, description="paid invoices summed per currency"
    )
    paid_invoices: int = 0
    last_activity: datetime | None = None
    open_tickets: int = 0
    tickets: int = 0
    activities: int = 0
    sources: int = Field(0, description="how many connected systems hold the customer")
    source_names: list[str] = Field(default_factory=list)
    members: int = 0


class TimelineItem(BaseModel):
    """One interaction of a member: an invoice, a ticket, a form submission, an email event."""

    id: int
    connector: str
    stream: str
    external_id: str
    kind: str
    occurred_at: datetime
    status: str | None = None
    subject: str | None = None
    amount: int | None = None
    currency: str | None = None
    display_amount: str | None = None


class TimelinePage(BaseModel):
    """A page of the timeline, newest first."""

    items: list[TimelineItem]
    page: int
    per_page: int
    total: int
    pages: int


class Customer360(BaseModel):
    """Everything about one customer (see the module docstring)."""

    id: str
    requested_id: str = Field(description="the id asked for: an old, merged id resolves here")
    name: str | None = None
    version: int
    created_at: datetime
    updated_at: datetime
    fields: list[GoldenField]
    overrides: list[OverrideInfo]
    members: list[MemberRecord]
    suggestions: list[Suggestion]
    traits: Traits
    timeline: TimelinePage


# ---------------------------------------------------------------------- reading


def resolve(conn: Connection, customer_id: str) -> str | None:
    """The customer an id stands for now (merged-away ids resolve to the survivor)."""
    return resolve_customer(conn, customer_id)


def find_customers(conn: Connection, query: str, limit: int = 20) -> list[CustomerSummary]:
    """Customers by email, phone, or text of their golden values (names, company, city)."""
    cleaned = "".join(ch for ch in query if ch.isprintable()).strip()
    if not cleaned:
        return []
    found = search_customers(conn, cleaned, limit)
    return [
        CustomerSummary(**row) for row in sorted(found, key=lambda r: (r["name"] or "", r["id"]))
    ]


def customer_360(
    conn: Connection, customer_id: str, *, page: int = 1, per_page: int = 25
) -> Customer360 | None:
    """The 360 of a customer (an old, merged id resolves to its survivor); None if unknown.
    The timeline is the ``page``-th page of ``per_page`` interactions, newest first."""
    resolved = resolve_customer(conn, customer_id)
    if resolved is None:
        return None
    row = conn.execute(
        select(
            customers.c.data, customers.c.version, customers.c.created_at, customers.c.updated_at
        ).where(customers.c.id == resolved)
    ).one()
    data: dict[str, Any] = row[0] or {}
    members = _members(conn, resolved)
    set_by_steward = _overrides(conn, resolved)
    by_id = {m.record_id: m for m in members}
    fields: list[GoldenField] = []
    for name in GOLDEN_FIELDS:
        golden = data.get(name)
        if not isinstance(golden, dict):
            continue
        value, rule = golden.get("value"), str(golden.get("rule") or "")
        source = None
        record_id = golden.get("source_record_id")
        if isinstance(record_id, int):
            member = by_id.get(record_id)
            source = (
                SourceRef(
                    record_id=record_id,
                    connector=member.connector,
                    stream=member.stream,
                    external_id=member.external_id,
                )
                if member
                else _source_ref(conn, record_id)
            )
            if member:
                member.supplies.append(name)
        fields.append(
            GoldenField(
                field=name,
                value=value,
                display=display_value(name, value),
                rule=rule,
                source=source,
                override=set_by_steward.get(name) if rule == "steward_override" else None,
            )
        )
    return Customer360(
        id=resolved,
        requested_id=customer_id,
        name=_name(data),
        version=row[1],
        created_at=_utc(row[2]),
        updated_at=_utc(row[3]),
        fields=fields,
        overrides=list(set_by_steward.values()),
        members=members,
        suggestions=_suggestions(conn, [m.record_id for m in members]),
        traits=_traits(conn, members),
        timeline=_timeline(conn, members, page, per_page),
    )


def timeline(
    conn: Connection, customer_id: str, *, page: int = 1, per_page: int = 25
) -> TimelinePage | None:
    """A page of the customer's interactions, newest first; None for an unknown customer."""
    resolved = resolve_customer(conn, customer_id)
    if resolved is None:
        return None
    return _timeline(conn, _members(conn, resolved), page, per_page)


def traits(conn: Connection, customer_id: str) -> Traits | None:
    """The customer's computed traits; None for an unknown customer."""
    resolved = resolve_customer(conn, customer_id)
    if resolved is None:
        return None
    return _traits(conn, _members(conn, resolved))


def _members(conn: Connection, customer_id: str) -> list[MemberRecord]:
    l = links.c  # noqa: E741
    rows = conn.execute(
        select(
            _s.id,
            _s.connector,
            _s.stream,
            _s.external_id,
            _s.source_updated_at,
            _s.first_seen,
            _s.last_seen,
            l.method,
            l.probability,
            l.decided_by,
            l.decided_at,
        )
        .join(links, l.source_record_id == _s.id, isouter=True)
        .where(_s.customer_id == customer_id, _s.deleted_at.is_(None))
        .order_by(_s.id)
    ).all()
    members = [
        MemberRecord(
            record_id=r[0],
            connector=r[1],
            stream=r[2],
            external_id=r[3],
            source_updated_at=_when(r[4]),
            first_seen=_utc(r[5]),
            last_seen=_utc(r[6]),
            link_method=r[7],
            link_probability=r[8],
            decided_by=r[9],
            linked_at=_when(r[10]),
        )
        for r in rows
    ]
    _steward_links(conn, members)
    return members


def _steward_links(conn: Connection, members: list[MemberRecord]) -> None:
    """Who linked a record by hand: the steward of its latest accepted pair in the customer."""
    wanting = {m.record_id: m for m in members if m.decided_by is None}
    if not wanting or len(members) < 2:
        return
    ids = [m.record_id for m in members]
    latest: dict[int, tuple[datetime, str]] = {}
    for left, right, by, at in conn.execute(
        select(_p.left_id, _p.right_id, _p.decided_by, _p.decided_at).where(
            _p.status == "accepted", _p.left_id.in_(ids), _p.right_id.in_(ids)
        )
    ):
        if by is None or at is None:
            continue
        stamp = _utc(at)
        for rid in (left, right):
            if rid in wanting and (rid not in latest or latest[rid][0] < stamp):
                latest[rid] = (stamp, by)
    for rid, (stamp, by) in latest.items():
        wanting[rid].decided_by = by
        wanting[rid].linked_at = wanting[rid].linked_at or stamp


def _overrides(conn: Connection, customer_id: str) -> dict[str, OverrideInfo]:
    rows = conn.execute(
        select(_o.field, _o.value, _o.set_by, _o.set_at, _o.reason)
        .where(_o.customer_id == customer_id)
        .order_by(_o.field)
    )
    return {
        name: OverrideInfo(
            field=name,
            value=value,
            display=display_value(name, value),
            set_by=by,
            set_at=_utc(at),
            reason=reason,
        )
        for name, value, by, at, reason in rows
    }


def _source_ref(conn: Connection, record_id: int) -> SourceRef:
    row = conn.execute(
        select(_s.connector, _s.stream, _s.external_id).where(_s.id == record_id)
    ).first()
    if row is None:
        return SourceRef(record_id=record_id)
    return SourceRef(record_id=record_id, connector=row[0], stream=row[1], external_id=row[2])


def _suggestions(conn: Connection, ids: list[int]) -> list[Suggestion]:
    if not ids:
        return []
    mine = set(ids)
    rows = conn.execute(
        select(_p.id, _p.left_id, _p.right_id, _p.probability)
        .where(_p.status == "pending", or_(_p.left_id.in_(ids), _p.right_id.in_(ids)))
        .order_by(_p.probability.desc(), _p.id)
        .limit(50)
    ).all()
    others = {right if left in mine else left for _, left, right, _ in rows}
    customer_of: dict[int, str | None] = {}
    if others:
        query = select(_s.id, _s.customer_id).where(_s.id.in_(sorted(others)))
        customer_of = {rid: customer for rid, customer in conn.execute(query)}
    found: list[Suggestion] = []
    for pair_id, left, right, probability in rows:
        record, other = (left, right) if left in mine else (right, left)
        found.append(
            Suggestion(
                pair_id=pair_id,
                record_id=record,
                other_record_id=other,
                other_customer_id=customer_of.get(other),
                probability=round(float(probability), 4),
            )
        )
    return found


def _activity_filter(members: list[MemberRecord]) -> ColumnElement[bool] | None:
    """The activities of these records: same connector, the person's external id, and the
    person's stream (when the activity names one)."""
    by_stream: dict[tuple[str, str], list[str]] = {}
    for m in members:
        by_stream.setdefault((m.connector, m.stream), []).append(m.external_id)
    if not by_stream:
        return None
    return and_(
        _a.deleted_at.is_(None),
        or_(
            *(
                and_(
                    _a.connector == connector,
                    _a.person_external_id.in_(sorted(external_ids)),
                    or_(_a.person_stream == stream, _a.person_stream.is_(None)),
                )
                for (connector, stream), external_ids in sorted(by_stream.items())
            )
        ),
    )


def _timeline(
    conn: Connection, members: list[MemberRecord], page: int, per_page: int
) -> TimelinePage:
    page, per_page = max(page, 1), max(per_page, 1)
    where = _activity_filter(members)
    if where is None:
        return TimelinePage(items=[], page=page, per_page=per_page, total=0, pages=0)
    total = int(
        conn.execute(select(func.count()).select_from(activities).where(where)).scalar_one()
    )
    rows = conn.execute(
        select(
            _a.id,
            _a.connector,
            _a.stream,
            _a.external_id,
            _a.kind,
            _a.occurred_at,
            _a.status,
            _a.amount,
            _a.currency,
            _a.data,
        )
        .where(where)
        .order_by(_a.occurred_at.desc(), _a.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    items = []
    for aid, connector, stream, external_id, kind, occurred, status, amount, currency, data in rows:
        subject = data.get("subject") if isinstance(data, dict) else None
        items.append(
            TimelineItem(
                id=aid,
                connector=connector,
                stream=stream,
                external_id=external_id,
                kind=kind,
                occurred_at=_utc(occurred),
                status=status,
                subject=subject if isinstance(subject, str) else None,
                amount=amount,
                currency=currency,
                display_amount=(
                    format_money(amount, currency) if amount is not None and currency else None
                ),
            )
        )
    pages = (total + per_page - 1) // per_page
    return TimelinePage(items=items, page=page, per_page=per_page, total=total, pages=pages)


def _traits(conn: Connection, members: list[MemberRecord]) -> Traits:
    names = sorted({m.connector for m in members})
    result = Traits(sources=len(names), source_names=names, members=len(members))
    where = _activity_filter(members)
    if where is None:
        return result
    count, last = conn.execute(select(func.count(), func.max(_a.occurred_at)).where(where)).one()
    result.activities = int(count)
    result.last_activity = _when(last)
    paid = conn.execute(
        select(_a.currency, func.sum(_a.amount), func.count())
        .where(
            where,
            _a.kind == "invoice",
            func.lower(_a.status) == "paid",
            _a.amount.is_not(None),
            _a.currency.is_not(None),
        )
        .group_by(_a.currency)
        .order_by(_a.currency)
    ).all()
    result.lifetime_value = [
        Money(currency=currency, amount=int(total), display=format_money(int(total), currency))
        for currency, total, _ in paid
    ]
    result.paid_invoices = sum(int(n) for _, _, n in paid)
    tickets, still_open = conn.execute(
        select(
            func.count(),
            func.sum(
                case(
                    (func.lower(_a.status).in_(CLOSED_TICKET_STATUSES), 0),
                    else_=1,
                )
            ),
        ).where(where, _a.kind == "ticket")
    ).one()
    result.tickets, result.open_tickets = int(tickets), int(still_open or 0)
    return result


# ---------------------------------------------------------------------- values as text


def format_money(amount: int, currency: str) -> str:
    """Minor units as text in the currency's own precision: ``12345, "EUR"`` is
    ``"123.45 EUR"``."""
    code = currency.upper()
    digits = 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(amount), 10**digits)
    text = f"{whole:,}" + (f".{part:0{digits}d}" if digits else "")
    return f"{sign}{text} {code}"


def display_value(field_name: str, value: Any) -> str:
    """A golden value as one line of text."""
    if value is None:
        return ""
    if field_name == "address" and isinstance(value, dict):
        parts = ("line1", "line2", "city", "region", "postal_code", "country")
        return ", ".join(str(value[p]) for p in parts if value.get(p))
    if field_name == "consent" and isinstance(value, dict):
        return "; ".join(
            f"{channel}: {entry.get('status') if isinstance(entry, dict) else entry}"
            for channel, entry in sorted(value.items())
        )
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def parse_override_value(field_name: str, text: str) -> Any:
    """A value typed into a form, as the value of ``field_name``: text for text fields;
    for :data:`LIST_FIELDS` the values separated by commas, semicolons or new lines; for
    :data:`OBJECT_FIELDS` ``key: value`` lines (``country: GB``, ``email: denied``) or a JSON
    object. The canonical model checks and normalises the result
    (:func:`~crmhub.resolution.steward.canonical_value`).

    Raises:
        StewardError: an object field whose text is neither.
    """
    text = text.strip()
    if field_name in LIST_FIELDS:
        return [
            part.strip()
            for part in text.replace(";", "\n").replace(",", "\n").splitlines()
            if part.strip()
        ]
    if field_name in OBJECT_FIELDS:
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except ValueError:
                raise StewardError(f"{field_name}: not a JSON object") from None
            if not isinstance(parsed, dict):
                raise StewardError(f"{field_name}: not a JSON object")
            return parsed
        found: dict[str, str] = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            key, sep, value = line.partition(":")
            if not sep:
                key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise StewardError(f"{field_name}: write one 'key: value' per line")
            found[key.strip()] = value.strip()
        return found
    return text


def value_as_text(field_name: str, value: Any) -> str:
    """A golden value as a steward types it (what :func:`parse_override_value` reads back):
    lists one value per line, objects ``key: value`` lines, consent by its status."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    if isinstance(value, dict):
        lines = []
        for key, entry in value.items():
            if field_name == "consent" and isinstance(entry, dict):
                entry = entry.get("status", "")
            lines.append(f"{key}: {entry}")
        return "\n".join(lines)
    return str(value)


def _name(data: dict[str, Any]) -> str | None:
    def value(name: str) -> Any:
        entry = data.get(name)
        return entry.get("value") if isinstance(entry, dict) else None

    full = value("full_name")
    if isinstance(full, str) and full:
        return full
    joined = " ".join(str(v) for v in (value("first_name"), value("last_name")) if v)
    return joined or None


def _utc(value: datetime) -> datetime:
    """A stored time with its zone (SQLite hands times back without one)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _when(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)

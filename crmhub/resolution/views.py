"""Read-only views of customers for stewards: search, and the customer 360 (golden values
with provenance, member records, pending suggestions, activities)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text, cast, or_, select
from sqlalchemy.engine import Connection

from crmhub.dedupe.blocking import key_digest
from crmhub.dedupe.normalize import email_key
from crmhub.normalize import normalize_phone
from crmhub.resolution.steward import resolve_customer
from crmhub.store.schema import (
    activities,
    customers,
    links,
    match_keys,
    match_pairs,
    source_records,
)

__all__ = ["customer_view", "search_customers"]

_s = source_records.c


def search_customers(conn: Connection, query: str, limit: int = 20) -> list[dict[str, Any]]:
    """Customers whose email or phone is ``query`` (through the match keys), or whose golden
    values contain it as text (names, companies, cities)."""
    query = query.strip()
    if not query:
        return []
    record_ids: set[int] = set()
    key = email_key(query) if "@" in query else None
    phone = None
    if key is None and sum(ch.isdigit() for ch in query) >= 6:
        try:
            phone = normalize_phone(query)
        except ValueError:
            phone = None
    for kind, value in (("email", key), ("phone", phone)):
        if value:
            record_ids.update(
                conn.execute(
                    select(match_keys.c.source_record_id).where(
                        match_keys.c.kind == kind, match_keys.c.value == key_digest(value)
                    )
                ).scalars()
            )
    found: list[str] = []
    if record_ids:
        found = sorted(
            {
                c
                for c in conn.execute(
                    select(_s.customer_id).where(_s.id.in_(sorted(record_ids)))
                ).scalars()
                if c
            }
        )
    else:
        pattern = f"%{query}%"
        found = list(
            conn.execute(
                select(customers.c.id)
                .where(
                    customers.c.merged_into.is_(None), cast(customers.c.data, Text).ilike(pattern)
                )
                .order_by(customers.c.id)
                .limit(limit)
            ).scalars()
        )
    rows = conn.execute(
        select(customers.c.id, customers.c.data).where(customers.c.id.in_(found[:limit]))
    )
    return [_summary(cid, data) for cid, data in rows]


def _summary(customer_id: str, data: dict[str, Any]) -> dict[str, Any]:
    def value(name: str) -> Any:
        return (data.get(name) or {}).get("value")

    return {
        "id": customer_id,
        "name": value("full_name")
        or " ".join(filter(None, (value("first_name"), value("last_name")))),
        "emails": value("emails") or [],
        "phones": value("phones") or [],
        "company": value("company"),
    }


def customer_view(
    conn: Connection, customer_id: str, activity_limit: int = 50
) -> dict[str, Any] | None:
    """Everything about one customer (an old, merged id resolves to its customer)."""
    resolved = resolve_customer(conn, customer_id)
    if resolved is None:
        return None
    row = conn.execute(select(customers).where(customers.c.id == resolved)).mappings().one()
    member_rows = conn.execute(
        select(
            _s.id,
            _s.connector,
            _s.stream,
            _s.external_id,
            _s.source_updated_at,
            links.c.method,
            links.c.probability,
        )
        .join(links, links.c.source_record_id == _s.id, isouter=True)
        .where(_s.customer_id == resolved, _s.deleted_at.is_(None))
        .order_by(_s.id)
    ).all()
    members = [
        {
            "record_id": r[0],
            "connector": r[1],
            "stream": r[2],
            "external_id": r[3],
            "updated_at": r[4].isoformat() if r[4] else None,
            "method": r[5],
            "probability": r[6],
        }
        for r in member_rows
    ]
    ids = [m["record_id"] for m in members]
    p = match_pairs.c
    suggestions = [
        {"pair_id": pid, "left": left, "right": right, "probability": round(prob, 4)}
        for pid, left, right, prob in conn.execute(
            select(p.id, p.left_id, p.right_id, p.probability)
            .where(p.status == "pending", or_(p.left_id.in_(ids), p.right_id.in_(ids)))
            .order_by(p.probability.desc())
        )
    ]
    a = activities.c
    owners = [(m["connector"], m["external_id"]) for m in members]
    timeline: list[dict[str, Any]] = []
    for connector in sorted({c for c, _ in owners}):
        external = [e for c, e in owners if c == connector]
        for act in conn.execute(
            select(a.id, a.connector, a.kind, a.occurred_at, a.amount, a.currency, a.status).where(
                a.connector == connector, a.person_external_id.in_(external), a.deleted_at.is_(None)
            )
        ):
            timeline.append(
                {
                    "id": act[0],
                    "connector": act[1],
                    "kind": act[2],
                    "occurred_at": act[3].isoformat(),
                    "amount": act[4],
                    "currency": act[5],
                    "status": act[6],
                }
            )
    timeline.sort(key=lambda item: item["occurred_at"], reverse=True)
    return {
        "id": resolved,
        "requested_id": customer_id,
        "version": row["version"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "values": row["data"],
        "members": members,
        "suggestions": suggestions,
        "activities": timeline[:activity_limit],
        "activity_count": len(timeline),
    }

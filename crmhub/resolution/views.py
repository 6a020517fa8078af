"""Customer search for stewards: by email or phone through the match keys, or by the text
of the golden values (the customer 360 is :mod:`crmhub.resolution.customer360`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from crmhub.dedupe.blocking import key_digest
from crmhub.dedupe.normalize import email_key
from crmhub.normalize import normalize_phone
from crmhub.resolution.search import fold
from crmhub.store.schema import customers, match_keys, source_records

__all__ = ["search_customers"]

_s = source_records.c


def search_customers(conn: Connection, query: str, limit: int = 20) -> list[dict[str, Any]]:
    """Customers whose email or phone is ``query`` (through the match keys), or whose golden
    names, company, emails, phones or address contain it, whatever the case and accents (see
    :mod:`crmhub.resolution.search`)."""
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
    elif folded := fold(query):
        found = list(
            conn.execute(
                # In the index's order (by name, then id), so the scan stops at the limit;
                # customers merged away have no search text.
                select(customers.c.id)
                .where(customers.c.search_text.contains(folded, autoescape=True))
                .order_by(customers.c.search_text, customers.c.id)
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

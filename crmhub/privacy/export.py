"""Access export (GDPR Art. 15 and 20): everything the hub holds about a subject, as one
JSON document in a structured, machine-readable form.

It holds the golden records with where each value came from, the steward's overrides, every
source record as stored, the interactions, the consents per channel (golden and per source),
the matching decisions about the subject's records, the queued pushes and any quarantined
raw record. It is personal data: it goes to the subject, and is never logged or stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Text, select, tuple_
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import Connection

from crmhub.privacy.subject import Subject, quarantine_rows
from crmhub.store.dialect import in_chunks
from crmhub.store.schema import (
    activities,
    audit_log,
    customers,
    match_pairs,
    outbox,
    overrides,
    quarantine,
    source_records,
)

__all__ = ["EXPORT_VERSION", "access_export"]

EXPORT_VERSION = 1


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def access_export(
    conn: Connection, subject: Subject, *, request_id: str, now: datetime
) -> dict[str, Any]:
    """The access export of ``subject`` (see the module docstring)."""
    ids = subject.record_ids
    records = [
        {
            "system": r.connector,
            "stream": r.stream,
            "external_id": r.external_id,
            "deleted_in_system": r.deleted,
            "customer_id": r.customer_id,
            "data": r.data,
            **_seen(conn, r.id),
        }
        for r in subject.records
    ]
    return {
        "export": "crmhub access export",
        "version": EXPORT_VERSION,
        "request": request_id,
        "generated_at": now.isoformat(),
        "identifiers": [{"kind": i.kind, "value": i.value} for i in subject.identifiers],
        "customers": _customers(conn, subject.customers),
        "source_records": records,
        "consents": _consents(subject),
        "activities": _activities(conn, subject),
        "decisions": _decisions(conn, ids),
        "history": _history(conn, subject),
        "pending_pushes": _pushes(conn, subject.customers),
        "quarantined": _quarantined(conn, subject),
    }


def _seen(conn: Connection, record_id: int) -> dict[str, Any]:
    t = source_records.c
    row = conn.execute(
        select(t.first_seen, t.last_seen, t.source_updated_at).where(t.id == record_id)
    ).one()
    return {
        "first_seen": _iso(row.first_seen),
        "last_seen": _iso(row.last_seen),
        "updated_in_system": _iso(row.source_updated_at),
    }


def _customers(conn: Connection, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
    c, o = customers.c, overrides.c
    out = []
    for chunk in in_chunks(list(customer_ids)):
        for row in conn.execute(select(customers).where(c.id.in_(chunk)).order_by(c.id)):
            set_values = conn.execute(
                select(o.field, o.value, o.set_by, o.set_at).where(o.customer_id == row.id)
            ).all()
            out.append(
                {
                    "id": row.id,
                    "merged_into": row.merged_into,
                    "golden": row.data,
                    "traits": row.traits,
                    "created_at": _iso(row.created_at),
                    "updated_at": _iso(row.updated_at),
                    "overrides": [
                        {"field": f, "value": v, "set_by": by, "set_at": _iso(at)}
                        for f, v, by, at in set_values
                    ],
                }
            )
    return out


def _consents(subject: Subject) -> list[dict[str, Any]]:
    out = []
    for record in subject.records:
        for channel, consent in sorted((record.data.get("consent") or {}).items()):
            out.append(
                {
                    "channel": channel,
                    "system": record.connector,
                    "external_id": record.external_id,
                    **(consent if isinstance(consent, dict) else {"status": consent}),
                }
            )
        if record.data.get("lawful_basis"):
            out.append(
                {
                    "lawful_basis": record.data["lawful_basis"],
                    "system": record.connector,
                    "external_id": record.external_id,
                }
            )
    return out


def _activities(conn: Connection, subject: Subject) -> list[dict[str, Any]]:
    a = activities.c
    keys = sorted({(r.connector, r.external_id) for r in subject.records})
    out = []
    for chunk in in_chunks(keys, 500):
        rows = conn.execute(
            select(
                a.connector, a.stream, a.external_id, a.kind, a.occurred_at, sql_cast(a.data, Text)
            )
            .where(tuple_(a.connector, a.person_external_id).in_(chunk))
            .order_by(a.occurred_at)
        )
        out += [
            {
                "system": connector,
                "stream": stream,
                "external_id": external_id,
                "kind": kind,
                "occurred_at": _iso(occurred),
                "data": orjson.loads(raw),
            }
            for connector, stream, external_id, kind, occurred, raw in rows
        ]
    out.sort(key=lambda item: str(item["occurred_at"]))
    return out


def _decisions(conn: Connection, ids: Sequence[int]) -> list[dict[str, Any]]:
    """Matching decisions about the subject's records (by record id: the records are listed
    above with theirs, the other side of a pair is someone's record and is not shown)."""
    m = match_pairs.c
    out = []
    for chunk in in_chunks(list(ids), 1000):
        rows = conn.execute(
            select(m.left_id, m.right_id, m.status, m.probability, m.decided_by, m.decided_at)
            .where(m.left_id.in_(chunk) | m.right_id.in_(chunk))
            .order_by(m.id)
        )
        out += [
            {
                "records": [left, right],
                "status": status,
                "probability": round(probability, 4),
                "decided_by": by,
                "decided_at": _iso(at),
            }
            for left, right, status, probability, by, at in rows
        ]
    return out


def _history(conn: Connection, subject: Subject) -> list[dict[str, Any]]:
    """Audit events about the subject's golden records (merges, overrides, decisions)."""
    a = audit_log.c
    out = []
    for chunk in in_chunks(list(subject.customers)):
        rows = conn.execute(
            select(a.id, a.at, a.actor, a.action, a.subject_id)
            .where(a.subject_type == "customer", a.subject_id.in_(chunk))
            .order_by(a.id)
        )
        out += [
            {"event": i, "at": _iso(at), "by": actor, "action": action, "customer": cid}
            for i, at, actor, action, cid in rows
        ]
    return out


def _pushes(conn: Connection, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
    o = outbox.c
    out = []
    for chunk in in_chunks(list(customer_ids)):
        rows = conn.execute(
            select(o.target, o.stream, o.external_id, o.operation, o.fields, o.status).where(
                o.customer_id.in_(chunk)
            )
        )
        out += [
            {
                "system": target,
                "stream": stream,
                "external_id": external_id,
                "operation": operation,
                "fields": fields,
                "status": status,
            }
            for target, stream, external_id, operation, fields, status in rows
        ]
    return out


def _quarantined(conn: Connection, subject: Subject) -> list[dict[str, Any]]:
    q = quarantine.c
    out = []
    for chunk in in_chunks(quarantine_rows(conn, subject)):
        rows = conn.execute(
            select(q.connector, q.stream, q.external_id, q.raw, q.created_at).where(q.id.in_(chunk))
        )
        out += [
            {
                "system": connector,
                "stream": stream,
                "external_id": external_id,
                "raw": raw,
                "received_at": _iso(created),
            }
            for connector, stream, external_id, raw, created in rows
        ]
    return out

"""The audit log: append-only, each event chained to the one before by its hash.

An event records who did what to which subject, with details made of ids, hashes and
counts only — never a name, an email or a phone. Each row holds the hash of the previous
row and its own hash over (previous hash, time, actor, action, subject, details), so an
edited or deleted row breaks the chain at that point, which :func:`verify` reports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from crmhub.store.schema import audit_log

__all__ = ["GENESIS", "AuditEvent", "append", "event", "verify"]

GENESIS = "0" * 64
"""The previous hash of the first event."""


@dataclass(frozen=True)
class AuditEvent:
    """One row of the audit log."""

    id: int
    at: datetime
    actor: str
    action: str
    subject_type: str | None
    subject_id: str | None
    details: dict[str, Any]


def _digest(
    prev_hash: str,
    at: datetime,
    actor: str,
    action: str,
    subject_type: str | None,
    subject_id: str | None,
    details: dict[str, Any],
) -> str:
    body = json.dumps(
        [prev_hash, _stamp(at), actor, action, subject_type, subject_id, details],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _stamp(at: datetime) -> str:
    # Backends hand timestamps back with or without a zone; hash one fixed form.
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def append(
    conn: Connection,
    actor: str,
    action: str,
    *,
    subject_type: str | None = None,
    subject_id: str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> int:
    """Append an event in the caller's transaction; returns its id.

    The caller holds the hub's write lock (see :func:`crmhub.store.dialect.lock_hub`), so
    two writers never chain onto the same previous event.
    """
    details = details or {}
    at = at or datetime.now(UTC)
    prev = conn.execute(
        select(audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)
    ).scalar_one_or_none()
    prev_hash = prev or GENESIS
    digest = _digest(prev_hash, at, actor, action, subject_type, subject_id, details)
    result = conn.execute(
        insert(audit_log).values(
            at=at,
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            details=details,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def event(conn: Connection, event_id: int) -> AuditEvent | None:
    """The event with this id, or None."""
    row = conn.execute(select(audit_log).where(audit_log.c.id == event_id)).mappings().first()
    if row is None:
        return None
    return AuditEvent(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        subject_type=row["subject_type"],
        subject_id=row["subject_id"],
        details=row["details"],
    )


def verify(conn: Connection) -> tuple[int, int | None]:
    """Walk the chain; returns (events checked, id of the first broken event or None)."""
    prev_hash = GENESIS
    checked = 0
    rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings()
    for row in rows:
        expected = _digest(
            prev_hash,
            row["at"],
            row["actor"],
            row["action"],
            row["subject_type"],
            row["subject_id"],
            row["details"],
        )
        if row["prev_hash"] != prev_hash or row["hash"] != expected:
            return checked, int(row["id"])
        prev_hash = row["hash"]
        checked += 1
    return checked, None

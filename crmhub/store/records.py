"""Source records and activities: bulk reads and writes for one page at a time.

Both tables are keyed by (connector, stream, external_id) and carry a content hash of the raw
record (plus the mapping's fingerprint), which lets a re-sync skip unchanged records without
mapping them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, update
from sqlalchemy.engine import Connection

from crmhub.store.dialect import in_chunks, select_by_keys, upsert
from crmhub.store.schema import activities, source_records

__all__ = ["RECORD_TABLES", "existing_hashes", "mark_deleted", "upsert_records"]

RECORD_TABLES: dict[str, Table] = {"person": source_records, "activity": activities}
"""The table that holds each kind of canonical record."""

_UPDATED_ON_CONFLICT = {
    "person": ("data", "content_hash", "source_updated_at", "last_seen", "deleted_at"),
    "activity": (
        "data", "content_hash", "kind", "occurred_at", "person_stream", "person_external_id",
        "amount", "currency", "status", "last_seen", "deleted_at",
    ),
}  # fmt: skip


def existing_hashes(
    conn: Connection, kind: str, connector: str, stream: str, external_ids: Sequence[str]
) -> dict[str, str]:
    """For the given ids already stored: external id -> content hash, or ``""`` for a record
    marked deleted (so a deleted record never looks unchanged)."""
    rows = select_by_keys(
        conn,
        RECORD_TABLES[kind],
        ("external_id", "CASE WHEN deleted_at IS NULL THEN content_hash ELSE '' END"),
        {"connector": connector, "stream": stream},
        "external_id",
        external_ids,
    )
    return dict(rows)  # built in C from (id, hash) pairs: this runs for every record


def upsert_records(conn: Connection, kind: str, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new records and overwrite changed ones (first_seen and links are kept)."""
    upsert(
        conn,
        RECORD_TABLES[kind],
        rows,
        keys=("connector", "stream", "external_id"),
        update=_UPDATED_ON_CONFLICT[kind],
    )


def mark_deleted(
    conn: Connection,
    kind: str,
    connector: str,
    stream: str,
    external_ids: Sequence[str],
    now: datetime,
) -> int:
    """Mark records deleted in their source; returns how many were not deleted before."""
    table = RECORD_TABLES[kind]
    count = 0
    for chunk in in_chunks(external_ids):
        result = conn.execute(
            update(table)
            .where(
                table.c.connector == connector,
                table.c.stream == stream,
                table.c.external_id.in_(chunk),
                table.c.deleted_at.is_(None),
            )
            .values(deleted_at=now, last_seen=now)
        )
        count += int(result.rowcount or 0)
    return count

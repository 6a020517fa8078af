"""Quarantine: records that failed mapping or validation, kept whole with the reasons.

A record is kept once per (connector, stream, record hash): reading the same bad record again
only refreshes ``last_seen``. Raw records hold personal data, so erasure reaches this table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from crmhub.store.dialect import in_chunks, upsert
from crmhub.store.rows import as_dict
from crmhub.store.schema import quarantine

__all__ = [
    "add_to_quarantine",
    "get_quarantined",
    "list_quarantine",
    "open_quarantine_count",
    "raw_records",
    "resolve",
    "supersede",
    "update_errors",
]


def add_to_quarantine(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Store quarantined records; each row has connector, stream, external_id, record_hash,
    errors, raw, location, run_id, created_at, last_seen."""
    upsert(
        conn,
        quarantine,
        rows,
        keys=("connector", "stream", "record_hash"),
        update=("run_id", "errors", "last_seen"),
    )


def supersede(
    conn: Connection, connector: str, stream: str, external_ids: Sequence[str], now: datetime
) -> int:
    """Resolve open quarantine rows of records that have since been stored in a good version."""
    resolved = 0
    for chunk in in_chunks(external_ids):
        result = conn.execute(
            update(quarantine)
            .where(
                quarantine.c.connector == connector,
                quarantine.c.stream == stream,
                quarantine.c.external_id.in_(chunk),
                quarantine.c.resolved_at.is_(None),
            )
            .values(resolved_at=now, resolution="superseded")
        )
        resolved += int(result.rowcount or 0)
    return resolved


def update_errors(conn: Connection, quarantine_id: int, errors: list[str], now: datetime) -> None:
    """Replace the reasons of a quarantine row that failed again."""
    conn.execute(
        update(quarantine)
        .where(quarantine.c.id == quarantine_id)
        .values(errors=errors, last_seen=now)
    )


def resolve(conn: Connection, ids: Sequence[int], resolution: str, now: datetime) -> None:
    """Mark quarantine rows resolved (``retried``, ``discarded``, ...)."""
    for chunk in in_chunks(ids):
        conn.execute(
            update(quarantine)
            .where(quarantine.c.id.in_(chunk))
            .values(resolved_at=now, resolution=resolution)
        )


def open_quarantine_count(conn: Connection, connector: str, stream: str) -> int:
    """How many unresolved quarantine rows a stream has."""
    return int(
        conn.execute(
            select(func.count()).where(
                quarantine.c.connector == connector,
                quarantine.c.stream == stream,
                quarantine.c.resolved_at.is_(None),
            )
        ).scalar_one()
    )


def list_quarantine(
    conn: Connection,
    *,
    connector: str | None = None,
    stream: str | None = None,
    include_resolved: bool = False,
    limit: int | None = 100,
) -> list[dict[str, Any]]:
    """Quarantined records, newest first (without the raw record)."""
    columns = [c for c in quarantine.c if c.name != "raw"]
    query = select(*columns).order_by(quarantine.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    if connector:
        query = query.where(quarantine.c.connector == connector)
    if stream:
        query = query.where(quarantine.c.stream == stream)
    if not include_resolved:
        query = query.where(quarantine.c.resolved_at.is_(None))
    return [as_dict(row) for row in conn.execute(query)]


def raw_records(conn: Connection, ids: Sequence[int]) -> dict[int, str]:
    """The raw content of quarantine rows by id."""
    found: dict[int, str] = {}
    for chunk in in_chunks(ids):
        rows = conn.execute(
            select(quarantine.c.id, quarantine.c.raw).where(quarantine.c.id.in_(chunk))
        )
        found.update({row.id: row.raw for row in rows})
    return found


def get_quarantined(conn: Connection, quarantine_id: int) -> dict[str, Any] | None:
    """One quarantined record with its raw content."""
    row = conn.execute(select(quarantine).where(quarantine.c.id == quarantine_id)).first()
    return None if row is None else as_dict(row)

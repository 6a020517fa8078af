"""Sync runs: one row per (connector, stream) run with its counts and outcome.

Counts are added in the same transaction as the page they describe, so after a crash the row
still matches what was stored; a run left ``running`` by a dead process is marked
``interrupted`` when the stream next starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from crmhub.store.rows import as_dict
from crmhub.store.schema import sync_runs

__all__ = ["Counts", "add_counts", "finish_run", "list_runs", "start_run"]


@dataclass
class Counts:
    """What a run did to records. ``read`` is the sum of the outcomes after it; ``unchanged``
    counts records read and not written (same content as stored, or an earlier copy of a
    record repeated later in the same page)."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0
    suppressed: int = 0
    pushed: int = 0
    push_failed: int = 0
    retries: int = 0  # HTTP requests retried (429, 5xx, connection errors)
    rejected: int = 0  # webhook deliveries refused (bad signature)
    echoed: int = 0  # records that came back with exactly what the hub pushed

    def add(self, other: Counts) -> None:
        """Add another count into this one."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        """The counts by name."""
        return asdict(self)

    def __bool__(self) -> bool:
        return any(self.as_dict().values())


COUNT_NAMES = tuple(f.name for f in fields(Counts))


def start_run(conn: Connection, connector: str, stream: str, mode: str, now: datetime) -> int:
    """Record a new running run and mark earlier unfinished runs of the stream interrupted."""
    conn.execute(
        update(sync_runs)
        .where(
            sync_runs.c.connector == connector,
            sync_runs.c.stream == stream,
            sync_runs.c.status == "running",
        )
        .values(status="interrupted", finished_at=sync_runs.c.heartbeat_at)
    )
    result = conn.execute(
        insert(sync_runs).values(
            connector=connector,
            stream=stream,
            mode=mode,
            status="running",
            started_at=now,
            heartbeat_at=now,
        )
    )
    run_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
    assert run_id is not None
    return int(run_id)


def add_counts(conn: Connection, run_id: int, counts: Counts, now: datetime) -> None:
    """Add a page's counts to its run (inside the page's transaction)."""
    values: dict[str, Any] = {
        name: getattr(sync_runs.c, name) + amount
        for name, amount in counts.as_dict().items()
        if amount
    }
    conn.execute(
        update(sync_runs).where(sync_runs.c.id == run_id).values(heartbeat_at=now, **values)
    )


def finish_run(
    conn: Connection, run_id: int, status: str, now: datetime, error: str | None = None
) -> None:
    """Close a run with its outcome."""
    conn.execute(
        update(sync_runs)
        .where(sync_runs.c.id == run_id)
        .values(status=status, finished_at=now, heartbeat_at=now, error=error)
    )


def list_runs(
    conn: Connection,
    *,
    connector: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The most recent runs first, as plain dicts."""
    query = select(sync_runs).order_by(sync_runs.c.id.desc()).limit(limit)
    if connector:
        query = query.where(sync_runs.c.connector == connector)
    if status:
        query = query.where(sync_runs.c.status == status)
    return [as_dict(row) for row in conn.execute(query)]

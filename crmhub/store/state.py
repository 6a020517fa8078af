"""Stream state: where each (connector, stream) resumes. Written only inside the transaction
that stores the records it covers, so a crash can never leave state ahead of data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from crmhub.store.dialect import upsert
from crmhub.store.schema import sync_state

__all__ = ["clear_state", "load_state", "save_state"]


def load_state(conn: Connection, connector: str, stream: str) -> dict[str, Any] | None:
    """The saved state of a stream, or None if it was never synced."""
    row = conn.execute(
        select(sync_state.c.state).where(
            sync_state.c.connector == connector, sync_state.c.stream == stream
        )
    ).first()
    return None if row is None else dict(row.state)


def save_state(
    conn: Connection,
    connector: str,
    stream: str,
    state: dict[str, Any],
    *,
    run_id: int | None,
    now: datetime,
) -> None:
    """Store the state of a stream (call inside the page's transaction)."""
    upsert(
        conn,
        sync_state,
        [
            {
                "connector": connector,
                "stream": stream,
                "state": state,
                "run_id": run_id,
                "updated_at": now,
            }
        ],
        keys=("connector", "stream"),
        update=("state", "run_id", "updated_at"),
    )


def clear_state(conn: Connection, connector: str, stream: str | None = None) -> None:
    """Forget the state of one stream or of all streams of a connector."""
    query = delete(sync_state).where(sync_state.c.connector == connector)
    if stream is not None:
        query = query.where(sync_state.c.stream == stream)
    conn.execute(query)

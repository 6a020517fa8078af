"""Quarantine store: pages larger than a backend's parameter limit still resolve."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from crmhub.store.quarantine import add_to_quarantine, resolve, supersede
from crmhub.store.schema import quarantine


def test_superseding_more_records_than_an_in_list_can_hold(engine: Engine) -> None:
    now = datetime.now(UTC)
    ids = [f"c{n}" for n in range(70_000)]  # over PostgreSQL's 65,535 parameters per statement
    rows = [
        {
            "run_id": None,
            "connector": "shop",
            "stream": "people",
            "external_id": i,
            "record_hash": f"h{i}",
            "errors": ["bad"],
            "raw": "{}",
            "location": None,
            "created_at": now,
            "last_seen": now,
        }
        for i in ids[::1000]
    ]
    with engine.begin() as conn:
        add_to_quarantine(conn, rows)
        assert supersede(conn, "shop", "people", ids, now) == len(rows)
        resolve(conn, list(range(1, 70_000)), "retried", now)
        still_open = conn.execute(
            select(func.count()).where(quarantine.c.resolved_at.is_(None))
        ).scalar_one()
    assert still_open == 0

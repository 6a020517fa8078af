"""The demo: the whole story on the embedded default, with nothing to set up.

A fresh SQLite hub in a folder, the five sandbox systems (Stripe, Zendesk, Mailchimp,
Typeform, HubSpot) seeded with the same synthetic people typed differently in each, a full
sync through their HTTP APIs, matching into golden records, pushes of the golden values back,
and a summary of what happened. The CLI's ``crmhub demo`` prints it; the tests run it too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.engine import Connection

from crmhub.hub import PushOutcome
from crmhub.sandbox.world import DEFAULT_PORTS, Sandbox
from crmhub.store.schema import activities, customers, match_pairs, source_records
from crmhub.sync import Observer, StreamResult

__all__ = ["DemoSummary", "run_demo"]


@dataclass
class DemoSummary:
    """What the demo did."""

    folder: Path
    config: Path
    streams: list[StreamResult]
    pushes: list[PushOutcome]
    people: int
    records_by_system: dict[str, int] = field(default_factory=dict)
    activities: int = 0
    customers: int = 0
    suggestions: int = 0
    auto_links: int = 0
    seconds: float = 0.0

    @property
    def pushed(self) -> int:
        """Records updated in the connected systems."""
        return sum(p.counts.pushed for p in self.pushes)

    @property
    def ok(self) -> bool:
        """Whether every stream and push succeeded."""
        return all(s.ok for s in self.streams) and not any(p.failed for p in self.pushes)


def run_demo(
    folder: str | Path,
    *,
    people: int = 500,
    seed: int = 7,
    observer: Observer | None = None,
) -> DemoSummary:
    """Run the demo in ``folder`` (its hub database is created afresh).

    The sandbox answers in-process at the loopback addresses ``crmhub sandbox serve`` uses,
    so the written config also works against a served sandbox afterwards.
    """
    started = time.monotonic()
    folder = Path(folder)
    for suffix in ("", "-wal", "-shm"):
        (folder / f"crmhub.db{suffix}").unlink(missing_ok=True)
    sandbox = Sandbox(people, seed=seed, ports=DEFAULT_PORTS)
    hub = sandbox.open_hub(folder)
    try:
        streams = hub.sync(full=True, observer=observer, push=True)
        summary = DemoSummary(
            folder=folder,
            config=folder / "crmhub.toml",
            streams=streams,
            pushes=hub.last_push or [],
            people=people,
        )
        for result in streams:
            by_system = summary.records_by_system
            by_system[result.connector] = by_system.get(result.connector, 0) + result.counts.read
        with hub.engine.connect() as conn:
            summary.activities = _count(conn, activities)
            summary.customers = _count(conn, customers, customers.c.merged_into.is_(None))
            summary.suggestions = _count(conn, match_pairs, match_pairs.c.status == "pending")
            linked = _count(conn, source_records, source_records.c.customer_id.is_not(None))
            summary.auto_links = linked - summary.customers
    finally:
        hub.close()
    summary.seconds = time.monotonic() - started
    return summary


def _count(conn: Connection, table: Table, *where: ColumnElement[bool]) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())

"""A sync through all five sandbox systems while they fail: 20% of requests get a 5xx and
bursts of 429 arrive regularly. The sync completes with every record exactly once (the same
records as a sync from systems that do not fail) and the runs record the retries."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from crmhub.sandbox.app import Faults
from crmhub.sandbox.world import Sandbox
from crmhub.store.schema import activities, source_records, sync_runs

PEOPLE = 300


def _stored(hub: object) -> dict[tuple[str, str], int]:
    engine = hub.engine  # type: ignore[attr-defined]
    counts: dict[tuple[str, str], int] = {}
    with engine.connect() as conn:
        for table in (source_records, activities):
            rows = conn.execute(
                select(table.c.connector, table.c.stream, func.count()).group_by(
                    table.c.connector, table.c.stream
                )
            )
            counts.update({(c, s): n for c, s, n in rows})
    return counts


def test_a_sync_against_failing_systems_stores_every_record_exactly_once(
    database_url: str, tmp_path: Path
) -> None:
    clean = Sandbox(PEOPLE)
    with clean.open_hub(tmp_path / "clean", sleep=lambda _s: None) as hub:
        assert all(r.ok for r in hub.sync(match=False))
        expected = _stored(hub)
    assert sum(expected.values()) > PEOPLE  # every system holds records

    faults = Faults(error_rate=0.2, burst_every=10, burst_length=3, retry_after=2, seed=3)
    failing = Sandbox(PEOPLE, faults=faults)
    waits: list[float] = []
    hub = failing.open_hub(
        tmp_path / "failing",
        database_url,
        connectors={"max_attempts": 10, "page_size": 10},  # many pages: many requests
        sleep=waits.append,
    )
    with hub:
        results = hub.sync(match=False)
        assert [(r.connector, r.stream) for r in results if not r.ok] == []
        assert _stored(hub) == expected
        with hub.engine.connect() as conn:
            retries = conn.execute(select(func.sum(sync_runs.c.retries))).scalar_one()
    sent = {system: dict(app.faults_sent) for system, app in failing.apps.items()}
    injected = sum(sum(by_status.values()) for by_status in sent.values())
    # Every system failed some requests; bursts of 429 and 5xx both came.
    assert all(sent.values()), sent
    assert sum(s.get(429, 0) for s in sent.values()) >= 3 * 3
    assert sum(n for s in sent.values() for code, n in s.items() if code >= 500) >= 10
    assert retries == injected == sum(r.counts.retries for r in results)
    assert waits.count(2.0) >= sum(by_status.get(429, 0) for by_status in sent.values())

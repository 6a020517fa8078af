"""Helpers to put person records into a hub the way a sync does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from crmhub.mapping import load_mapping
from crmhub.model import Person
from crmhub.sandbox.people import WorldOptions, iter_world
from crmhub.store.dialect import RawJson
from crmhub.store.records import mark_deleted, upsert_records
from crmhub.store.schema import source_records

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def world_people(people: int, seed: int = 5) -> list[tuple[str, str, Person]]:
    """(source, external id, person) of a small synthetic world with duplicates."""
    mapping = load_mapping("people_file").stream("people")
    out = []
    for index, (source, row) in enumerate(iter_world(people, WorldOptions(seed=seed))):
        person = mapping.apply(row, source=source, stream="people", region="GB").record
        if isinstance(person, Person):
            out.append((source, f"{source}-{index}", person))
    return out


def store_people(
    engine: Engine, people: list[tuple[str, str, Person]], *, version: int = 0
) -> None:
    """Upsert records as a sync would (a new content hash per ``version``)."""
    rows: list[dict[str, Any]] = []
    for source, external_id, person in people:
        rows.append(
            {
                "connector": source,
                "stream": "people",
                "external_id": external_id,
                "data": RawJson(person.model_dump_json(exclude_none=True)),
                "content_hash": f"{hash((external_id, version)) & 0xFFFFFFFF:08x}",
                "source_updated_at": NOW + timedelta(minutes=version),
                "first_seen": NOW,
                "last_seen": NOW,
                "deleted_at": None,
            }
        )
    with engine.begin() as conn:
        upsert_records(conn, "person", rows)


def delete_people(engine: Engine, source: str, external_ids: list[str]) -> None:
    with engine.begin() as conn:
        mark_deleted(conn, "person", source, "people", external_ids, NOW)


def partition(engine: Engine) -> list[list[int]]:
    """Live records grouped by customer, as sorted lists."""
    t = source_records.c
    groups: dict[str, list[int]] = {}
    with engine.connect() as conn:
        for rid, customer in conn.execute(
            select(t.id, t.customer_id).where(t.deleted_at.is_(None))
        ):
            assert customer is not None, f"record {rid} has no customer"
            groups.setdefault(customer, []).append(rid)
    return sorted(sorted(g) for g in groups.values())


def record_id(engine: Engine, external_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(source_records.c.id).where(source_records.c.external_id == external_id)
            ).scalar_one()
        )


@pytest.fixture(scope="session")
def world() -> list[tuple[str, str, Person]]:
    return world_people(420)


@pytest.fixture
def hub_engine(engine: Engine) -> Iterator[Engine]:
    yield engine

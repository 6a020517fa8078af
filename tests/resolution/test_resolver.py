"""Matching in the hub: incremental equals full, deletes, crashes, model training."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from crmhub.config import SurvivorshipSettings
from crmhub.dedupe.pipeline import MatchSettings
from crmhub.model import Person
from crmhub.resolution import Resolver
from crmhub.resolution import resolver as resolver_module
from crmhub.resolution.records import pending_ids
from crmhub.store.schema import (
    customers,
    dedupe_models,
    links,
    match_keys,
    match_pairs,
    source_records,
)

from .conftest import delete_people, partition, store_people

World = list[tuple[str, str, Person]]


def _pairs(engine: Engine) -> set[tuple[int, int, str]]:
    p = match_pairs.c
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(select(p.left_id, p.right_id, p.status))}  # type: ignore[misc]


def test_incremental_matching_gives_the_clusters_of_a_full_run(
    engine: Engine, world: World
) -> None:
    resolver = Resolver(engine)
    first = len(world) * 3 // 5
    store_people(engine, world[:first])
    assert resolver.resolve().mode == "full"  # a new hub: one pass over everything
    modes = []
    for start in range(first, len(world), 20):
        store_people(engine, world[start : start + 20])
        modes.append(resolver.resolve().mode)
    assert set(modes) == {"incremental"}
    # Changed and deleted records are matched again too.
    changed = [(s, e, p.model_copy(update={"emails": []})) for s, e, p in world[5:40:3]]
    store_people(engine, changed, version=1)
    delete_people(engine, world[50][0], [world[50][1]])
    assert resolver.resolve().mode == "incremental"
    with engine.connect() as conn:
        assert pending_ids(conn) == []
    incremental, incremental_pairs = partition(engine), _pairs(engine)
    assert any(len(group) > 1 for group in incremental)

    report = resolver.full()
    assert report.mode == "full"
    assert partition(engine) == incremental
    assert _pairs(engine) == incremental_pairs


def test_every_live_record_gets_one_customer_and_one_link(engine: Engine, world: World) -> None:
    store_people(engine, world[:150])
    report = Resolver(engine).resolve()
    with engine.connect() as conn:
        live = conn.execute(select(func.count()).select_from(source_records)).scalar_one()
        linked = conn.execute(select(func.count()).select_from(links)).scalar_one()
        golden = conn.execute(select(func.count()).select_from(customers)).scalar_one()
        keys = conn.execute(select(func.count()).select_from(match_keys)).scalar_one()
    assert linked == live == report.records
    assert golden == report.settled.clusters == len(partition(engine))
    assert keys > live  # several blocking keys per record, stored for incremental lookups


def test_a_deleted_record_leaves_its_customer(engine: Engine, world: World) -> None:
    store_people(engine, world[:200])
    Resolver(engine).resolve()
    groups = partition(engine)
    pair = next(g for g in groups if len(g) == 2)
    with engine.connect() as conn:
        t = source_records.c
        rows = conn.execute(
            select(t.connector, t.external_id, t.customer_id).where(t.id.in_(pair))
        ).all()
    delete_people(engine, rows[0][0], [rows[0][1]])
    Resolver(engine).resolve()
    with engine.connect() as conn:
        t = source_records.c
        left = conn.execute(select(t.customer_id).where(t.id == pair[0])).scalar_one()
        data = conn.execute(
            select(customers.c.data).where(customers.c.id == rows[1][2])
        ).scalar_one()
    assert left is None
    provenance = {v.get("source_record_id") for v in data.values()}
    assert pair[0] not in provenance  # the golden record no longer draws on the deleted record


def test_a_crash_in_the_middle_of_matching_is_completed_by_the_next_run(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = Resolver(engine)
    store_people(engine, world[:550])
    resolver.resolve()
    store_people(engine, world[550:])
    monkeypatch.setattr(resolver_module, "STEP_RECORDS", 25)
    calls = {"n": 0}
    real_settle = resolver_module.settle

    def failing_settle(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("power cut")
        return real_settle(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(resolver_module, "settle", failing_settle)
    with pytest.raises(RuntimeError, match="power cut"):
        resolver.resolve()
    with engine.connect() as conn:
        waiting = len(pending_ids(conn))
    assert 0 < waiting < len(world) - 550  # two steps committed, the third rolled back
    monkeypatch.setattr(resolver_module, "settle", real_settle)
    resolver.resolve()
    after = partition(engine)
    resolver.full()
    assert partition(engine) == after


def test_a_hub_with_enough_records_trains_and_stores_its_own_model(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolver_module, "MIN_OWN_MODEL_RECORDS", 100)
    store_people(engine, world[:300])
    report = Resolver(engine).resolve()
    assert report.trained and report.model_version == 1
    with engine.connect() as conn:
        active = conn.execute(
            select(dedupe_models.c.version).where(dedupe_models.c.active == 1)
        ).all()
    assert active == [(1,)]
    store_people(engine, world[300:320])
    again = Resolver(engine).resolve()
    assert again.mode == "incremental" and not again.trained and again.model_version == 1


def test_a_model_trained_on_other_comparisons_is_trained_again(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolver_module, "MIN_OWN_MODEL_RECORDS", 100)
    store_people(engine, world[:300])
    Resolver(engine).resolve()
    with engine.begin() as conn:  # as a model saved before "address" replaced "postcode"
        params = conn.execute(select(dedupe_models.c.params)).scalar_one()
        params["fields"]["postcode"] = params["fields"].pop("address")
        conn.execute(dedupe_models.update().values(params=params))
    store_people(engine, world[300:320])
    report = Resolver(engine).resolve()
    assert report.trained and report.model_version == 2  # not a crash on the missing field


def test_stored_explanations_add_up_to_the_match_weight(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolver_module, "MIN_OWN_MODEL_RECORDS", 100)
    store_people(engine, world[:400])
    Resolver(engine).resolve()
    p = match_pairs.c
    with engine.connect() as conn:
        stored = conn.execute(select(p.weight, p.comparison)).all()
    assert stored
    for weight, comparison in stored:
        # Term frequencies and the household term included: each part is its own weight.
        assert sum(part for _, part in comparison.values()) == pytest.approx(weight, abs=1e-2)


def test_source_priority_decides_golden_values(engine: Engine, world: World) -> None:
    store_people(engine, world[:200])
    Resolver(engine).resolve()
    sources = sorted({s for s, _, _ in world[:200]})
    trusted = sources[-1]
    survivorship = SurvivorshipSettings(source_priority=[trusted])
    Resolver(engine, MatchSettings(), survivorship).full()
    with engine.connect() as conn:
        t = source_records.c
        rows = conn.execute(select(t.id, t.connector, t.customer_id, t.data)).all()
        connector_of = {rid: c for rid, c, _, _ in rows}
        members: dict[str, set[str]] = {}
        for _, connector, customer, data in rows:
            if data.get("last_name"):
                members.setdefault(customer, set()).add(connector)
        checked = 0
        for cid, data in conn.execute(select(customers.c.id, customers.c.data)):
            if trusted in members.get(cid, ()) and len(members[cid]) > 1:
                value = data["last_name"]
                assert value["rule"] == "source_priority"
                assert connector_of[value["source_record_id"]] == trusted
                checked += 1
    assert checked > 0


def _pair_rows(engine: Engine) -> set[tuple[int, int, int, str, float]]:
    p = match_pairs.c
    with engine.connect() as conn:
        rows = conn.execute(select(p.id, p.left_id, p.right_id, p.status, p.probability))
        return {(i, a, b, s, round(pr, 9)) for i, a, b, s, pr in rows}


def _customers(engine: Engine) -> dict[str, tuple[object, int]]:
    c = customers.c
    with engine.connect() as conn:
        return {cid: (data, v) for cid, data, v in conn.execute(select(c.id, c.data, c.version))}


def test_a_second_full_pass_changes_nothing(engine: Engine, world: World) -> None:
    store_people(engine, world[:300])
    resolver = Resolver(engine)
    resolver.full()
    before = (partition(engine), _pair_rows(engine), _customers(engine))
    again = resolver.full()
    assert again.settled.customers_created == again.settled.customers_updated == 0
    # Same clusters, same customer ids and versions, same pairs under the same ids.
    assert (partition(engine), _pair_rows(engine), _customers(engine)) == before


def test_a_full_pass_is_chosen_when_a_quarter_of_the_hub_waits(
    engine: Engine, world: World
) -> None:
    store_people(engine, world[:200])
    assert Resolver(engine).resolve().mode == "full"
    store_people(engine, world[200:240])  # 40 waiting, 240 live: under a quarter
    assert Resolver(engine).resolve().mode == "incremental"
    store_people(engine, world[240:330])  # 90 waiting, 330 live: over a quarter
    assert Resolver(engine).resolve().mode == "full"


def test_a_resolver_picks_up_a_model_trained_since_it_last_ran(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolver_module, "MIN_OWN_MODEL_RECORDS", 100)
    store_people(engine, world[:300])
    resolver = Resolver(engine)
    assert resolver.resolve().model_version == 1
    Resolver(engine).full(train=True)  # another process trains version 2
    store_people(engine, world[300:310])
    report = resolver.resolve()
    assert report.mode == "incremental" and report.model_version == 2


def test_the_waiting_records_index_holds_exactly_the_waiting_records(
    engine: Engine, world: World
) -> None:
    store_people(engine, world[:120])
    Resolver(engine).resolve()
    store_people(engine, world[120:130])
    store_people(engine, world[:3], version=1)  # changed
    delete_people(engine, world[5][0], [world[5][1]])  # deleted
    with engine.connect() as conn:
        waiting = pending_ids(conn)
        t = source_records.c
        rows = conn.execute(select(t.id, t.content_hash, t.matched_hash, t.deleted_at)).all()
    expected = sorted(
        rid
        for rid, content, matched, deleted in rows
        if matched != ("deleted" if deleted is not None else content)
    )
    assert waiting == expected and len(waiting) == 14


def test_a_full_pass_gives_the_connection_its_page_cache_back(sqlite_url: str) -> None:
    from crmhub.store import open_engine, upgrade

    engine = open_engine(sqlite_url)
    upgrade(engine)
    try:
        with engine.connect() as conn:
            before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
        Resolver(engine).full()
        with engine.connect() as conn:  # the pool hands out the same connection again
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == before
    finally:
        engine.dispose()


def test_indexes_dropped_for_a_large_write_come_back_the_same(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect

    from crmhub.resolution import bulk
    from crmhub.store.schema import metadata

    store_people(engine, world[:300])
    Resolver(engine).full()
    expected = (partition(engine), _pairs(engine))

    def indexes() -> dict[str, list[str]]:
        found = inspect(engine)
        tables = ("source_records", "match_keys", "match_pairs", "links")
        return {
            table: sorted(
                # Partial index conditions come back as SQL text objects: compare their text.
                str(
                    {
                        **i,
                        "dialect_options": {
                            k: str(v) for k, v in i.get("dialect_options", {}).items()
                        },
                    }
                )
                for i in found.get_indexes(table)
            )
            for table in tables
        }

    before = indexes()
    monkeypatch.setattr(bulk, "REBUILD_ROWS", 1)  # every write counts as large
    with engine.begin() as conn:  # as a new hub: every record written again
        conn.execute(links.delete())
        conn.execute(source_records.update().values(customer_id=None, matched_hash=None))
    Resolver(engine).full()
    assert (partition(engine), _pairs(engine)) == expected
    assert indexes() == before
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert pending_ids(conn) == []  # the partial index is whole again
    store_people(engine, world[300:320])
    assert Resolver(engine).resolve().mode == "incremental"


def test_records_with_nothing_to_match_on_are_counted_and_kept_apart(
    engine: Engine, world: World
) -> None:
    blank = Person.model_validate(
        {"source": "forms", "stream": "people", "external_id": "x", "birth_date": "1990-01-02"}
    )
    store_people(engine, [*world[:60], ("forms", "blank-1", blank), ("forms", "blank-2", blank)])
    report = Resolver(engine).resolve()
    assert report.unmatchable == 2 and report.as_dict()["unmatchable"] == 2
    groups = partition(engine)
    with engine.connect() as conn:
        t = source_records.c
        blanks = {rid for (rid,) in conn.execute(select(t.id).where(t.connector == "forms"))}
    # Two records alike in what little they hold stay two customers, each on its own.
    assert [g for g in groups if set(g) & blanks] == [[rid] for rid in sorted(blanks)]
    store_people(engine, [("forms", "blank-3", blank)])
    assert Resolver(engine).resolve().unmatchable == 1  # incremental too

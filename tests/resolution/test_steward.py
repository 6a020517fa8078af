"""Steward decisions: merge, unmerge, accept, reject, undo — audited and round-tripping."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from crmhub import audit
from crmhub.model import Person
from crmhub.resolution import Resolver
from crmhub.resolution.customer360 import customer_360
from crmhub.resolution.steward import Steward, StewardError, resolve_customer
from crmhub.resolution.views import search_customers
from crmhub.store.schema import audit_log, customers, match_pairs, source_records

from .conftest import partition, store_people

World = list[tuple[str, str, Person]]


def _customer_of(engine: Engine, record: int) -> str:
    with engine.connect() as conn:
        t = source_records.c
        return str(conn.execute(select(t.customer_id).where(t.id == record)).scalar_one())


def _members(engine: Engine, customer: str) -> list[int]:
    with engine.connect() as conn:
        t = source_records.c
        return sorted(conn.execute(select(t.id).where(t.customer_id == customer)).scalars())


@pytest.fixture
def hub(engine: Engine, world: World) -> tuple[Resolver, Steward]:
    store_people(engine, world[:240])
    resolver = Resolver(engine)
    resolver.resolve()
    return resolver, Steward(resolver, "alice")


def test_merge_unmerge_merge_round_trip(engine: Engine, hub: tuple[Resolver, Steward]) -> None:
    resolver, steward = hub
    groups = partition(engine)
    singles = [g[0] for g in groups if len(g) == 1]
    a, b = _customer_of(engine, singles[0]), _customer_of(engine, singles[1])

    merged = steward.merge(a, b, reason="same person, checked by phone")
    assert _members(engine, a) == sorted([singles[0], singles[1]])
    with engine.connect() as conn:
        assert resolve_customer(conn, b) == a  # the old id keeps resolving
        view = customer_360(conn, b)
    assert view is not None and view.id == a and len(view.members) == 2

    unmerged = steward.unmerge(a, singles[1])
    assert _members(engine, a) == [singles[0]]
    split_off = _customer_of(engine, singles[1])
    assert split_off != a
    with engine.connect() as conn:
        data = conn.execute(select(customers.c.data).where(customers.c.id == a)).scalar_one()
    assert {v.get("source_record_id") for v in data.values()} <= {singles[0], None}

    # A full re-run keeps both decisions: the unmerge is a "not a match" memory.
    resolver.full()
    assert _customer_of(engine, singles[1]) != _customer_of(engine, singles[0])

    steward.merge(a, split_off)
    assert _members(engine, a) == sorted([singles[0], singles[1]])
    resolver.full()
    assert _members(engine, a) == sorted([singles[0], singles[1]])

    with engine.connect() as conn:
        checked, broken = audit.verify(conn)
        actions = list(conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars())
        details = [d for d in conn.execute(select(audit_log.c.details)).scalars()]
    assert broken is None and checked == 3
    assert actions == ["customer.merged", "customer.unmerged", "customer.merged"]
    assert merged.event_id < unmerged.event_id
    assert all("same person" not in str(d) for d in details)  # free text stays out of the log


def test_undo_a_merge_gives_the_merged_customer_its_id_back(
    engine: Engine, hub: tuple[Resolver, Steward]
) -> None:
    _, steward = hub
    singles = [g[0] for g in partition(engine) if len(g) == 1]
    a, b = _customer_of(engine, singles[2]), _customer_of(engine, singles[3])
    before = partition(engine)
    result = steward.merge(a, b)
    steward.undo(result.event_id)
    assert partition(engine) == before
    assert _customer_of(engine, singles[3]) == b
    with engine.connect() as conn:
        assert resolve_customer(conn, b) == b
    with pytest.raises(StewardError, match="already undone"):
        steward.undo(result.event_id)


def test_undo_an_unmerge_puts_the_record_back(
    engine: Engine, hub: tuple[Resolver, Steward]
) -> None:
    _, steward = hub
    group = next(g for g in partition(engine) if len(g) >= 2)
    customer = _customer_of(engine, group[0])
    result = steward.unmerge(customer, group[-1])
    assert group[-1] not in _members(engine, customer)
    steward.undo(result.event_id)
    assert _members(engine, customer) == group


def test_rejecting_a_link_splits_and_stays_split(
    engine: Engine, hub: tuple[Resolver, Steward]
) -> None:
    resolver, steward = hub
    p = match_pairs.c
    with engine.connect() as conn:
        pair_id, left, right = conn.execute(
            select(p.id, p.left_id, p.right_id).where(p.status == "auto").order_by(p.id)
        ).first()  # type: ignore[misc]
    group = next(g for g in partition(engine) if left in g)
    if len(group) == 2:
        steward.decide(pair_id, accept=False)
        assert _customer_of(engine, left) != _customer_of(engine, right)
    else:
        steward.decide(pair_id, accept=False)
    resolver.full()
    with engine.connect() as conn:
        status = conn.execute(select(p.status).where(p.id == pair_id)).scalar_one()
    assert status == "rejected"
    assert _customer_of(engine, left) != _customer_of(engine, right)


def test_accepting_a_suggestion_links_the_pair(engine: Engine, world: World) -> None:
    store_people(engine, world[:400])
    resolver = Resolver(engine)
    resolver.resolve()
    p = match_pairs.c
    with engine.connect() as conn:
        row = conn.execute(select(p.id, p.left_id, p.right_id).where(p.status == "pending")).first()
    assert row is not None, "the sample world should leave at least one suggestion"
    Steward(resolver, "bob").decide(row[0], accept=True)
    assert _customer_of(engine, row[1]) == _customer_of(engine, row[2])


def test_clear_errors_for_impossible_decisions(
    engine: Engine, hub: tuple[Resolver, Steward]
) -> None:
    _, steward = hub
    groups = partition(engine)
    single = next(g[0] for g in groups if len(g) == 1)
    customer = _customer_of(engine, single)
    with pytest.raises(StewardError, match="no customer"):
        steward.merge(customer, "not-a-customer")
    with pytest.raises(StewardError, match="already one customer"):
        steward.merge(customer, customer)
    with pytest.raises(StewardError, match="only member"):
        steward.unmerge(customer, single)
    with pytest.raises(StewardError, match="not a member"):
        steward.unmerge(customer, single + 100_000)
    with pytest.raises(StewardError, match="not a decision that can be undone"):
        steward.undo(987654)


def test_search_finds_customers_by_email_and_name(
    engine: Engine, hub: tuple[Resolver, Steward], world: World
) -> None:
    person = next(p for _, _, p in world[:240] if p.emails and p.last_name)
    with engine.connect() as conn:
        by_email = search_customers(conn, person.emails[0].upper())
        by_name = search_customers(conn, person.last_name or "")
    assert by_email and any(person.emails[0] in row["emails"] for row in by_email)
    assert by_name and all(isinstance(row["id"], str) for row in by_name)

"""Property: erasing one person never changes anyone else's golden record, except that a
golden record which wrongly held one of the erased person's records loses that member."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from crmhub.config import HubConfig, HubSettings
from crmhub.hub import Hub
from crmhub.plugins import Plugins
from crmhub.privacy import PrivacyDesk, parse_identifiers
from crmhub.store import open_engine, upgrade
from crmhub.store.schema import customers, source_records

from ..resolution.conftest import store_people, world_people

PEOPLE = world_people(80, seed=9)
WITH_EMAIL = [i for i, (_, _, person) in enumerate(PEOPLE) if person.emails]


def _state(hub: Hub) -> tuple[dict[str, Any], dict[int, str | None]]:
    with hub.engine.connect() as conn:
        golden = dict(conn.execute(select(customers.c.id, customers.c.data)).all())
        members = dict(
            conn.execute(select(source_records.c.id, source_records.c.customer_id)).all()
        )
    return golden, members


def _provenance(data: dict[str, Any]) -> set[int]:
    return {f["source_record_id"] for f in data.values() if f.get("source_record_id")}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(pick=st.sampled_from(WITH_EMAIL))
def test_erasing_one_person_changes_no_one_elses_golden_record(pick: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'hub.db'}"
        engine = open_engine(url)
        upgrade(engine)
        config = HubConfig(hub=HubSettings(database_url=url, secret="property-secret"))
        hub = Hub(config, engine, Plugins(load_entry_points=False))
        try:
            store_people(engine, PEOPLE)
            hub.resolver().resolve()
            golden_before, members_before = _state(hub)

            email = PEOPLE[pick][2].emails[0]
            identifiers = parse_identifiers(emails=[email])
            desk = PrivacyDesk(hub, "dpo")
            request = desk.receive("erasure", identifiers).request
            subject = desk.resolve(request.id, identifiers)
            erased = set(subject.record_ids)
            assert erased
            desk.erase(request.id, identifiers, fan_out=False)
            golden_after, members_after = _state(hub)
        finally:
            engine.dispose()

    assert set(members_after) == set(members_before) - erased
    touched = {members_before[rid] for rid in erased}
    for customer_id, data in golden_before.items():
        if customer_id in touched:
            continue
        assert golden_after.get(customer_id) == data, customer_id
    for customer_id, data in golden_after.items():
        # No surviving value comes from an erased record.
        assert not _provenance(data) & erased, customer_id
    for rid, customer_id in members_after.items():
        assert customer_id is not None, rid  # everyone left still has a golden record

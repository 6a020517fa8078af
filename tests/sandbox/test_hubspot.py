"""The HubSpot sandbox app (crmhub.sandbox.hubspot) and the hubspot connector against it,
up to a hub syncing it end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from crmhub.connector import Change
from crmhub.connectors.hubspot import HubspotConfig, HubspotConnector
from crmhub.sandbox.app import Faults
from crmhub.sandbox.hubspot import HubspotSandbox
from crmhub.sandbox.world import Sandbox
from crmhub.store import quarantine as quarantine_store
from crmhub.store.schema import source_records

BASE = f"https://{HubspotSandbox.host}"
CONTACTS = "/crm/v3/objects/contacts"


def seeded(count: int, *, stamp: str | None = None, clock: float = 1.8e9) -> HubspotSandbox:
    """An app of ``count`` contacts, each modified a second after the one before (or all at
    ``stamp``)."""
    app = HubspotSandbox(clock=lambda: clock)
    rows = [
        {
            "first_name": f"First{n}",
            "last_name": f"Last{n}",
            "email": f"person{n}@example.org",
            "newsletter": ("yes", "no", "")[n % 3],
            "updated_at": stamp
            or f"2024-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
            "person_key": f"P{n}",
        }
        for n in range(count)
    ]
    app.seed(rows)
    return app


def client(app: HubspotSandbox, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token or app.credentials}"}
    return httpx.Client(base_url=BASE, transport=httpx.MockTransport(app), headers=headers)


def connector(app: HubspotSandbox, **settings: Any) -> HubspotConnector:
    config = HubspotConfig(base_url=BASE, access_token=app.credentials, **settings)
    options = {"transport": httpx.MockTransport(app), "sleep": lambda _s: None}
    return HubspotConnector(config, http_options=options)


def search(http: httpx.Client, since_ms: int, **body: Any) -> httpx.Response:
    gte = {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(since_ms)}
    return http.post(f"{CONTACTS}/search", json={"filterGroups": [{"filters": [gte]}], **body})


# ---------------------------------------------------------------------- the app's API


def test_requests_without_the_token_are_refused_in_hubspots_error_shape() -> None:
    app = seeded(3)
    for http in (client(app, token="pat-wrong"), httpx.Client(transport=httpx.MockTransport(app))):
        response = http.get(f"{BASE}{CONTACTS}")
        body = response.json()
        assert response.status_code == 401
        assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
        assert body["message"] and body["correlationId"]
    assert not app.calls


def test_the_list_pages_by_id_and_ends_without_paging() -> None:
    app = seeded(250)
    http = client(app)
    ids: list[str] = []
    params: dict[str, Any] = {"limit": 100, "properties": "email,lastname"}
    pages = 0
    while True:
        body = http.get(CONTACTS, params=params).json()
        pages += 1
        ids += [r["id"] for r in body["results"]]
        assert set(body["results"][0]["properties"]) == {"email", "lastname"}
        if "paging" not in body:
            break
        assert body["paging"]["next"]["link"].startswith(BASE)
        params["after"] = body["paging"]["next"]["after"]
    assert pages == 3
    assert ids == sorted(ids, key=int) and len(set(ids)) == 250
    assert http.get(CONTACTS, params={"limit": 101}).status_code == 400


def test_the_response_carries_hubspots_rate_limit_headers() -> None:
    response = client(seeded(1)).get(CONTACTS, params={"limit": 1})
    assert int(response.headers["X-HubSpot-RateLimit-Daily-Remaining"]) > 100_000
    assert int(response.headers["X-HubSpot-RateLimit-Remaining"]) > 0
    assert response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"


def test_search_filters_on_lastmodifieddate_ascending_with_offset_paging() -> None:
    app = seeded(50)
    http = client(app)
    all_times = sorted(c.modified for c in app.contacts.values())
    since = all_times[20]
    first = search(http, since, limit=10, sorts=[{"propertyName": "lastmodifieddate"}]).json()
    assert first["total"] == 30
    times = [r["properties"]["lastmodifieddate"] for r in first["results"]]
    assert times == sorted(times) and len(times) == 10
    assert first["paging"]["next"]["after"] == "10"
    last = search(http, since, limit=10, after="20").json()
    assert len(last["results"]) == 10 and "paging" not in last
    iso = first["results"][0]["properties"]["lastmodifieddate"]
    assert search(http, 0, limit=1, filterGroups=[]).json()["total"] == 50
    by_iso = http.post(
        f"{CONTACTS}/search",
        json={
            "filterGroups": [
                {"filters": [{"propertyName": "lastmodifieddate", "operator": "GT", "value": iso}]}
            ]
        },
    )
    assert by_iso.json()["total"] == 29


def test_search_refuses_to_page_past_ten_thousand_and_over_200_a_page() -> None:
    http = client(seeded(5))
    refused = search(http, 0, after="10000")
    assert refused.status_code == 400 and refused.json()["category"] == "VALIDATION_ERROR"
    assert search(http, 0, limit=201).status_code == 400
    assert search(http, 0, limit=200).status_code == 200


def test_batch_update_answers_207_with_the_unknown_ids() -> None:
    app = seeded(3)
    http = client(app)
    known = str(next(iter(app.contacts)))
    response = http.post(
        f"{CONTACTS}/batch/update",
        json={
            "inputs": [
                {"id": known, "properties": {"lastname": "Renamed"}, "objectWriteTraceId": "k1"},
                {"id": "999999", "properties": {"lastname": "Nobody"}},
            ]
        },
    )
    body = response.json()
    assert response.status_code == 207 and body["numErrors"] == 1
    assert body["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert body["errors"][0]["context"] == {"ids": ["999999"]}
    assert body["results"][0]["objectWriteTraceId"] == "k1"
    assert app.contacts[int(known)].props["lastname"] == "Renamed"
    bad = http.post(
        f"{CONTACTS}/batch/update",
        json={"inputs": [{"id": known, "properties": {"no_such_property": "x"}}]},
    )
    assert bad.status_code == 400


def test_batch_upsert_creates_then_updates_by_email() -> None:
    app = seeded(2)
    http = client(app)
    item = {"idProperty": "email", "id": "New@Example.org", "properties": {"firstname": "Nia"}}
    created = http.post(f"{CONTACTS}/batch/upsert", json={"inputs": [item]}).json()
    item["properties"] = {"firstname": "Nina"}
    again = http.post(f"{CONTACTS}/batch/upsert", json={"inputs": [item]}).json()
    assert created["results"][0]["new"] is True and again["results"][0]["new"] is False
    assert created["results"][0]["id"] == again["results"][0]["id"]
    assert len(app.contacts) == 3
    assert app.contacts[int(again["results"][0]["id"])].props["firstname"] == "Nina"


def test_writes_move_the_contact_to_the_clock_so_searches_find_it() -> None:
    app = seeded(10)
    http = client(app)
    target = next(iter(app.contacts))
    newest = max(c.modified for c in app.contacts.values())
    assert search(http, newest + 1).json()["total"] == 0
    http.patch(f"{CONTACTS}/{target}", json={"properties": {"city": "Leeds"}})
    found = search(http, newest + 1).json()
    assert [r["id"] for r in found["results"]] == [str(target)]
    assert app.contacts[target].modified == 1_800_000_000_000


def test_archived_contacts_are_listed_with_archived_at_and_not_found_otherwise() -> None:
    app = seeded(4)
    http = client(app)
    target = next(iter(app.contacts))
    assert http.delete(f"{CONTACTS}/{target}").status_code == 204
    assert http.get(f"{CONTACTS}/{target}").status_code == 404
    archived = http.get(CONTACTS, params={"archived": "true"}).json()["results"]
    assert [r["id"] for r in archived] == [str(target)]
    assert archived[0]["archived"] is True and archived[0]["archivedAt"].endswith("Z")
    assert str(target) not in [r["id"] for r in http.get(CONTACTS).json()["results"]]


def test_gdpr_delete_removes_the_contact_for_good_then_answers_404() -> None:
    app = seeded(4)
    http = client(app)
    first, second = list(app.contacts)[:2]
    http.delete(f"{CONTACTS}/{second}")  # archived contacts are erased too
    for target in (first, second):
        response = http.post(f"{CONTACTS}/gdpr-delete", json={"objectId": str(target)})
        assert response.status_code == 204
        again = http.post(f"{CONTACTS}/gdpr-delete", json={"objectId": str(target)})
        assert again.status_code == 404 and again.json()["category"] == "OBJECT_NOT_FOUND"
    assert http.get(CONTACTS, params={"archived": "true"}).json()["results"] == []
    assert str(first) not in app.person_keys
    by_email = {"objectId": "person3@example.org", "idProperty": "email"}
    assert http.post(f"{CONTACTS}/gdpr-delete", json=by_email).status_code == 204
    assert len(app.contacts) == 1


def test_injected_faults_answer_429_with_retry_after_in_hubspots_shape() -> None:
    app = seeded(2)
    app.faults = Faults(burst_every=1, burst_length=1, retry_after=4)
    response = client(app).get(CONTACTS)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "4"
    assert response.json()["category"] == "RATE_LIMITS"


def test_equal_seeds_give_equal_contacts() -> None:
    one = Sandbox(40, systems=("hubspot",)).app("hubspot")
    two = Sandbox(40, systems=("hubspot",)).app("hubspot")
    assert isinstance(one, HubspotSandbox) and isinstance(two, HubspotSandbox)
    assert [c.props for c in one.contacts.values()] == [c.props for c in two.contacts.values()]


# ---------------------------------------------------------------------- the connector


def test_an_incremental_read_crosses_the_10000_result_search_window() -> None:
    app = seeded(10_350)
    reader = connector(app, page_size=200)
    pages = list(reader.read("contacts", reader.state_since("contacts", app_epoch())))
    ids = [r["id"] for p in pages for r in p.records]
    assert len(ids) == 10_350 and len(set(ids)) == 10_350
    searches = app.calls[f"POST {CONTACTS}/search"]
    assert 52 <= searches <= 56  # 10,350 / 200 pages, plus the restarts
    assert app.faults_sent == {}
    cursors = [p.state["lastmodifieddate"] for p in pages if p.state]
    assert cursors == sorted(cursors)


def test_more_than_10000_contacts_at_one_instant_are_walked_by_id() -> None:
    app = seeded(10_150, stamp="2024-03-01T00:00:00Z")
    reader = connector(app, page_size=200)
    pages = list(reader.read("contacts", reader.state_since("contacts", app_epoch())))
    ids = [r["id"] for p in pages for r in p.records]
    assert len(ids) == 10_150 and len(set(ids)) == 10_150
    # One window by date, the instant by id (two windows), one search after it: no window
    # wasted on searching the same instant again.
    assert app.calls[f"POST {CONTACTS}/search"] == 50 + 51 + 1
    final = pages[-1].state
    assert final is not None and "tie_after" not in final
    # The next read starts just after that instant and finds nothing.
    again = list(connector(app).read("contacts", final))
    assert [r for p in again for r in p.records] == []


def test_a_read_resumed_from_any_page_state_misses_nothing() -> None:
    app = seeded(60)
    reader = connector(app, page_size=7)
    pages = list(reader.read("contacts", None))
    every = {r["id"] for p in pages for r in p.records}
    assert len(every) == 60
    for cut in range(len(pages) - 1):
        state = next((p.state for p in reversed(pages[: cut + 1]) if p.state), None)
        before = {r["id"] for p in pages[: cut + 1] for r in p.records}
        after = {
            r["id"] for p in connector(app, page_size=7).read("contacts", state) for r in p.records
        }
        assert before | after == every, f"a rerun after page {cut} lost records"


def test_push_through_the_connector_updates_and_upserts() -> None:
    app = seeded(3)
    writer = connector(app)
    target = str(next(iter(app.contacts)))
    changes = [
        Change(target, {"lastname": "Pushed"}, "key-update"),
        Change(None, {"email": "fresh@example.org", "firstname": "Fresh"}, "key-create"),
        Change("999999", {"lastname": "Gone"}, "key-gone"),
    ]
    results = {r.idempotency_key: r for r in writer.write("contacts", changes)}
    assert results["key-update"].ok and results["key-update"].external_id == target
    assert results["key-create"].ok and results["key-create"].external_id in {
        str(i) for i in app.contacts
    }
    assert not results["key-gone"].ok and not results["key-gone"].retriable
    assert app.contacts[int(target)].props["lastname"] == "Pushed"


def app_epoch() -> datetime:
    return datetime(2000, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------------- through the hub


def test_a_hub_syncs_hubspot_once_then_only_what_changed(tmp_path: Path, database_url: str) -> None:
    sandbox = Sandbox(people=300, systems=("hubspot",))
    app = sandbox.app("hubspot")
    assert isinstance(app, HubspotSandbox)
    hub = sandbox.open_hub(tmp_path, database_url, sleep=lambda _s: None)
    assert hub.config.hub.default_region == "GB"  # national numbers of the synthetic world
    try:
        [first] = hub.sync(["hubspot"])
        assert first.ok, first.error
        assert first.counts.inserted == len(app.contacts) and first.counts.quarantined == 0
        with hub.engine.connect() as conn:
            stored = conn.execute(
                select(func.count(), func.count(func.distinct(source_records.c.external_id))).where(
                    source_records.c.connector == "hubspot"
                )
            ).one()
            assert tuple(stored) == (len(app.contacts), len(app.contacts))
            assert quarantine_store.open_quarantine_count(conn, "hubspot", "contacts") == 0

        app.reset_counters()
        [second] = hub.sync(["hubspot"])
        assert second.ok and second.counts.read == 0
        assert second.counts.inserted == second.counts.updated == 0
        # Only what the cursor needs: one search and one look at the archived contacts.
        assert dict(app.calls) == {f"POST {CONTACTS}/search": 1, f"GET {CONTACTS}": 1}

        changed, archived = list(app.contacts)[:2]
        http = client(app)
        http.patch(f"{CONTACTS}/{changed}", json={"properties": {"lastname": "Changed"}})
        http.delete(f"{CONTACTS}/{archived}")
        [third] = hub.sync(["hubspot"])
        assert third.ok and third.counts.read == 1 and third.counts.updated == 1
        assert third.counts.deleted == 1
        with hub.engine.connect() as conn:
            rows = dict(
                conn.execute(
                    select(source_records.c.external_id, source_records.c.deleted_at).where(
                        source_records.c.connector == "hubspot",
                        source_records.c.external_id.in_([str(changed), str(archived)]),
                    )
                ).all()
            )
        assert rows[str(changed)] is None and rows[str(archived)] is not None
    finally:
        hub.close()


@pytest.mark.parametrize("people", [0])
def test_a_hub_syncs_an_empty_portal(tmp_path: Path, people: int) -> None:
    sandbox = Sandbox(people=people, systems=("hubspot",))
    hub = sandbox.open_hub(tmp_path, sleep=lambda _s: None)
    try:
        [result] = hub.sync(["hubspot"])
        assert result.ok and result.counts.read == 0
        [again] = hub.sync(["hubspot"])
        assert again.ok and again.counts.read == 0
    finally:
        hub.close()

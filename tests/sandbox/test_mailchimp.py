"""The Mailchimp sandbox app (crmhub.sandbox.mailchimp) and the mailchimp connector against it,
up to a hub syncing it end to end."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from crmhub.connector import Change
from crmhub.connectors.mailchimp import MailchimpConfig, MailchimpConnector
from crmhub.sandbox.app import Faults
from crmhub.sandbox.mailchimp import MailchimpSandbox, subscriber_hash
from crmhub.sandbox.world import Sandbox
from crmhub.store import quarantine as quarantine_store
from crmhub.store.schema import source_records

ROOT = f"https://{MailchimpSandbox.host}/3.0"
MEMBERS = f"/lists/{MailchimpSandbox.list_id}/members"
CLOCK = 1.8e9  # 2027: after every seeded change


def seeded(count: int, *, newsletter: str = "yes") -> MailchimpSandbox:
    """An app of ``count`` members, each changed a second after the one before."""
    app = MailchimpSandbox(clock=lambda: CLOCK)
    app.archived_share = 0.0  # every member listed: counts below are exact
    app.seed(
        {
            "first_name": f"First{n}",
            "last_name": f"Last{n}",
            "email": f"Person{n}@Example.org",
            "newsletter": newsletter,
            "updated_at": f"2024-01-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
        }
        for n in range(count)
    )
    return app


def client(app: MailchimpSandbox, key: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=ROOT, transport=httpx.MockTransport(app), auth=("anyone", key or app.credentials)
    )


def connector(app: MailchimpSandbox, **settings: Any) -> MailchimpConnector:
    config = MailchimpConfig(
        base_url=ROOT, api_key=app.credentials, list_id=app.list_id, **settings
    )
    options = {"transport": httpx.MockTransport(app), "sleep": lambda _s: None}
    return MailchimpConnector(config, http_options=options)


def walk(http: httpx.Client, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every member of a listing, and the number of requests it took."""
    members: list[dict[str, Any]] = []
    offset, requests = 0, 0
    while True:
        body = http.get(MEMBERS, params={**params, "offset": offset}).json()
        requests += 1
        members += body["members"]
        offset += len(body["members"])
        if not body["members"] or offset >= body["total_items"]:
            return members, requests


# ---------------------------------------------------------------------- the app


def test_requests_without_the_key_are_refused_as_problem_json() -> None:
    app = seeded(3)
    for http in (client(app, key="wrong-us1"), httpx.Client(transport=httpx.MockTransport(app))):
        response = http.get(f"{ROOT}/ping")
        body = response.json()
        assert response.status_code == 401
        assert body["title"] == "API Key Invalid" and body["status"] == 401
        assert body["type"].startswith("https://mailchimp.com/developer/")
        assert body["detail"] and body["instance"]
    assert not app.calls
    assert client(app).get("/ping").json() == {"health_status": "Everything's Chimpy!"}


def test_the_listing_pages_with_count_and_offset_and_ends() -> None:
    app = seeded(250)
    members, requests = walk(client(app), count=100)
    assert requests == 3
    ids = [m["id"] for m in members]
    assert len(set(ids)) == 250
    assert ids[0] == hashlib.md5(b"person0@example.org").hexdigest()
    times = [m["last_changed"] for m in members]
    assert times == sorted(times)
    http = client(app)
    assert http.get(MEMBERS, params={"count": 1001}).status_code == 400
    assert len(http.get(MEMBERS).json()["members"]) == 10  # the API's default count
    assert http.get("/lists/nope/members").json()["title"] == "Resource Not Found"


def test_since_last_changed_is_strictly_after_and_oldest_first() -> None:
    app = seeded(30)
    http = client(app)
    body = http.get(
        MEMBERS, params={"since_last_changed": "2024-01-01T00:00:19+00:00", "count": 5}
    ).json()
    assert body["total_items"] == 10
    assert [m["last_changed"][17:19] for m in body["members"]] == ["20", "21", "22", "23", "24"]
    before = http.get(MEMBERS, params={"before_last_changed": "2024-01-01T00:00:03Z"}).json()
    assert before["total_items"] == 3
    newest = http.get(MEMBERS, params={"sort_dir": "DESC", "count": 1}).json()["members"]
    assert newest[0]["last_changed"].endswith("00:00:29+00:00")


def test_fields_and_exclude_fields_shape_the_answer() -> None:
    http = client(seeded(3))
    only = http.get(MEMBERS, params={"fields": "members.id,total_items"}).json()
    assert set(only) == {"members", "total_items"}
    assert all(set(m) == {"id"} for m in only["members"])
    without = http.get(MEMBERS, params={"exclude_fields": "members.merge_fields"}).json()
    assert "merge_fields" not in without["members"][0] and "list_id" in without


def test_archived_members_are_listed_only_when_asked_for() -> None:
    app = seeded(5)
    http = client(app)
    target = subscriber_hash("person2@example.org")
    assert http.delete(f"{MEMBERS}/{target}").status_code == 204
    live, _ = walk(http, count=10)
    archived, _ = walk(http, status="archived")
    assert target not in [m["id"] for m in live] and len(live) == 4
    assert [m["id"] for m in archived] == [target]
    assert http.get(f"{MEMBERS}/{target}").json()["status"] == "archived"


def test_put_adds_or_updates_by_hash_and_patch_updates_the_change_time() -> None:
    app = seeded(3)
    http = client(app)
    new = "New.Person@Example.org"
    new_id = subscriber_hash(new)
    missing = http.put(f"{MEMBERS}/{new_id}", json={"email_address": new})
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "status_if_new"
    body = {"email_address": new, "status_if_new": "subscribed", "merge_fields": {"FNAME": "Nu"}}
    created = http.put(f"{MEMBERS}/{new_id}", json=body).json()
    again = http.put(f"{MEMBERS}/{new_id}", json=body).json()
    assert created["id"] == again["id"] == new_id and len(app.members) == 4
    assert created["status"] == "subscribed" and created["merge_fields"]["FNAME"] == "Nu"
    wrong = http.put(f"{MEMBERS}/{new_id}", json={"email_address": "other@example.org"})
    assert wrong.status_code == 400
    old = subscriber_hash("person0@example.org")
    patched = http.patch(f"{MEMBERS}/{old}", json={"merge_fields": {"LNAME": "Changed"}}).json()
    assert patched["merge_fields"] == {**patched["merge_fields"], "FNAME": "First0"}
    assert patched["merge_fields"]["LNAME"] == "Changed"
    assert patched["last_changed"] == "2027-01-15T08:00:00+00:00"
    since = {"since_last_changed": "2026-01-01T00:00:00Z"}
    assert {m["id"] for m in http.get(MEMBERS, params=since).json()["members"]} == {old, new_id}
    assert http.patch(f"{MEMBERS}/{'0' * 32}", json={}).status_code == 404
    bad = http.patch(f"{MEMBERS}/{old}", json={"merge_fields": {"NOPE": "x"}})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "NOPE"


def test_permanent_deletion_answers_404_after_and_the_address_cannot_come_back() -> None:
    app = seeded(3)
    http = client(app)
    target = subscriber_hash("person1@example.org")
    erase = f"{MEMBERS}/{target}/actions/delete-permanent"
    assert http.post(erase).status_code == 204
    gone = http.post(erase)
    assert gone.status_code == 404 and gone.json()["title"] == "Resource Not Found"
    assert http.get(f"{MEMBERS}/{target}").status_code == 404
    back = http.put(
        f"{MEMBERS}/{target}",
        json={"email_address": "person1@example.org", "status_if_new": "subscribed"},
    )
    assert back.status_code == 400 and back.json()["title"] == "Forgotten Email Not Subscribed"
    assert len(app.members) == 2


def test_injected_faults_answer_429_with_retry_after_as_problem_json() -> None:
    app = seeded(2)
    app.faults = Faults(burst_every=1, burst_length=1, retry_after=4)
    response = client(app).get(MEMBERS)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "4"
    assert response.json()["title"] == "Too Many Requests"


def test_equal_seeds_give_equal_members() -> None:
    one = Sandbox(40, systems=("mailchimp",)).app("mailchimp")
    two = Sandbox(40, systems=("mailchimp",)).app("mailchimp")
    assert isinstance(one, MailchimpSandbox) and isinstance(two, MailchimpSandbox)
    assert one.members and one.members == two.members
    statuses = {m["status"] for m in one.members.values()}
    assert "subscribed" in statuses and statuses <= {
        "subscribed",
        "unsubscribed",
        "cleaned",
        "pending",
        "transactional",
        "archived",
    }


def test_the_settings_reach_the_app_and_any_user_name_goes_with_the_key() -> None:
    app = seeded(1)
    settings = app.connector_settings(f"https://{app.host}")
    assert settings["base_url"] == ROOT and settings["list_id"] == app.list_id
    assert settings["api_key"] == f"env:{app.env_name}"
    assert app.credentials.endswith("-us1")  # a key names its data centre
    for user in ("anystring", "crmhub"):
        http = httpx.Client(transport=httpx.MockTransport(app), auth=(user, app.credentials))
        assert http.get(f"{ROOT}/ping").status_code == 200
    token = httpx.Client(
        transport=httpx.MockTransport(app), headers={"Authorization": f"Bearer {app.credentials}"}
    )
    assert token.get(f"{ROOT}/ping").status_code == 401


# ---------------------------------------------------------------------- the connector


def test_the_connector_writes_and_erases_through_the_app() -> None:
    app = seeded(4)
    mc = connector(app)
    target = subscriber_hash("person3@example.org")
    changes = [
        Change(target, {"status": "denied", "merge_fields": {"LNAME": "Lee"}}, "k1"),
        Change(None, {"email_address": "fresh@example.org", "status": "granted"}, "k2"),
    ]
    results = list(mc.write("members", changes))
    assert [r.ok for r in results] == [True, True]
    assert app.members[target]["status"] == "unsubscribed"
    assert app.members[target]["merge_fields"]["LNAME"] == "Lee"
    assert app.members[subscriber_hash("fresh@example.org")]["status"] == "subscribed"
    assert [r.status for r in mc.erase([target])] == ["erased"]
    assert [r.status for r in mc.erase([target])] == ["already_gone"]
    [again] = mc.write("members", [Change(None, {"email_address": "Person3@Example.org"}, "k3")])
    assert not again.ok and not again.retriable and "permanently deleted" in (again.error or "")


def test_an_incremental_read_after_a_change_reads_only_the_window() -> None:
    app = seeded(50)
    mc = connector(app, page_size=7)
    pages = list(mc.read("members", None))
    assert sum(len(p.records) for p in pages) == 50 and len(pages) == 9  # 8 live + 1 archived
    state = pages[-1].state
    assert state == {"last_changed": "2024-01-01T00:00:49Z"}
    app.change_member(subscriber_hash("person7@example.org"), FNAME="Seven")
    app.reset_counters()
    later = list(mc.read("members", state))
    ids = [r["id"] for p in later for r in p.records]
    # The member at the saved second is read again (the one-second overlap), and the change.
    assert subscriber_hash("person7@example.org") in ids and len(ids) == 2
    assert app.calls == {"GET /3.0/lists/{list_id}/members": 2}


# ---------------------------------------------------------------------- end to end


def test_a_hub_syncs_the_app_incrementally(tmp_path: Path, database_url: str) -> None:
    sandbox = Sandbox(people=300, systems=("mailchimp",))
    app = sandbox.app("mailchimp")
    assert isinstance(app, MailchimpSandbox)
    listed = [m["id"] for m in app.members.values() if m["status"] != "archived"]
    hub = sandbox.open_hub(tmp_path, database_url, sleep=lambda s: None)
    try:
        [first] = hub.sync(["mailchimp"])
        assert first.ok, first.error
        assert first.counts.inserted == len(listed) and first.counts.quarantined == 0
        with hub.engine.connect() as conn:
            stored = conn.execute(
                select(source_records.c.external_id).where(
                    source_records.c.connector == "mailchimp"
                )
            ).scalars()
            stored_ids = list(stored)
            assert quarantine_store.open_quarantine_count(conn, "mailchimp", "members") == 0
        assert sorted(stored_ids) == sorted(listed)

        app.reset_counters()
        [second] = hub.sync(["mailchimp"])
        assert second.ok and second.counts.inserted == second.counts.updated == 0
        # One page of live members and one of archived ones: all the cursor needs.
        assert app.calls == {"GET /3.0/lists/{list_id}/members": 2}

        changed = listed[5]
        app.change_member(changed, LNAME="Changed-In-Mailchimp")
        http = client(app)
        archived = listed[6]
        assert http.delete(f"{MEMBERS}/{archived}").status_code == 204
        [third] = hub.sync(["mailchimp"])
        assert third.ok and third.counts.updated == 1 and third.counts.deleted == 1
        with hub.engine.connect() as conn:
            rows = dict(
                conn.execute(
                    select(source_records.c.external_id, source_records.c.deleted_at).where(
                        source_records.c.external_id.in_([changed, archived])
                    )
                ).all()
            )
            total = conn.execute(
                select(func.count())
                .select_from(source_records)
                .where(source_records.c.connector == "mailchimp")
            ).scalar_one()
        assert rows[changed] is None and rows[archived] is not None
        assert total == len(listed)
    finally:
        hub.close()

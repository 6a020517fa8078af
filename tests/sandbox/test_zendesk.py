"""Tests of the Zendesk sandbox app (crmhub.sandbox.zendesk) and of a hub syncing from it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from crmhub.connectors.zendesk import ZendeskConfig, ZendeskConnector
from crmhub.sandbox.app import Faults
from crmhub.sandbox.world import Sandbox
from crmhub.sandbox.zendesk import ZendeskSandbox
from crmhub.store.schema import activities, quarantine, source_records

USERS = "/api/v2/incremental/users/cursor.json"
TICKETS = "/api/v2/incremental/tickets/cursor.json"


@pytest.fixture
def app() -> ZendeskSandbox:
    sandbox = Sandbox(people=60, systems=("zendesk",))
    zendesk = sandbox.app("zendesk")
    assert isinstance(zendesk, ZendeskSandbox)
    return zendesk


def client(app: ZendeskSandbox, token: str | None = None) -> httpx.Client:
    return httpx.Client(
        transport=httpx.MockTransport(app),
        base_url=f"https://{app.host}",
        auth=(f"{app.api_email}/token", token or app.credentials),
    )


def export_all(http: httpx.Client, path: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every page of an export from ``params``, following after_cursor to the end."""
    while True:
        body = http.get(path, params=params).json()
        yield body
        if body["end_of_stream"]:
            return
        params = {"cursor": body["after_cursor"], "per_page": params.get("per_page", 1000)}


def first_user_id(app: ZendeskSandbox) -> int:
    return next(iter(app.users.records))


# --- authentication and errors --------------------------------------------------------------


def test_a_wrong_token_is_refused_with_zendesks_401_body(app: ZendeskSandbox) -> None:
    response = client(app, token="wrong").get(USERS, params={"start_time": 0})
    assert response.status_code == 401
    assert response.json() == {"error": "Couldn't authenticate you"}
    assert app.calls[f"GET {USERS}"] == 0


def test_the_email_must_be_the_tokens_owner(app: ZendeskSandbox) -> None:
    http = httpx.Client(
        transport=httpx.MockTransport(app),
        base_url=f"https://{app.host}",
        auth=("someone@else.example/token", app.credentials),
    )
    assert http.get("/api/v2/users/me.json").status_code == 401


def test_me_is_the_admin_the_token_belongs_to(app: ZendeskSandbox) -> None:
    me = client(app).get("/api/v2/users/me.json").json()["user"]
    assert me["email"] == app.api_email and me["role"] == "admin"


def test_export_parameters_are_checked(app: ZendeskSandbox) -> None:
    http = client(app)
    assert http.get(USERS).status_code == 400  # neither start_time nor cursor
    assert http.get(USERS, params={"start_time": 0, "per_page": 1001}).status_code == 400
    bad = http.get(USERS, params={"cursor": "!!not-a-cursor"})
    assert bad.status_code == 400 and bad.json()["error"] == "InvalidPaginationParameter"


# --- the incremental export -----------------------------------------------------------------


def test_export_pages_end_with_every_user_once_in_updated_at_order(app: ZendeskSandbox) -> None:
    pages = list(export_all(client(app), USERS, start_time=0, per_page=25))
    users = [u for page in pages for u in page["users"]]
    assert len(pages) == -(-len(app.users.records) // 25) > 2
    assert sorted(u["id"] for u in users) == sorted(app.users.records)
    assert [u["updated_at"] for u in users] == sorted(u["updated_at"] for u in users)
    assert [p["end_of_stream"] for p in pages] == [False] * (len(pages) - 1) + [True]
    assert all(page["after_cursor"] and "cursor=" in page["after_url"] for page in pages)


def test_start_time_returns_only_what_changed_at_or_after_it(app: ZendeskSandbox) -> None:
    stamps = sorted(u["updated_at"] for u in app.users.records.values())
    middle = stamps[len(stamps) // 2]
    since = int(datetime.fromisoformat(middle).timestamp())
    [page] = export_all(client(app), USERS, start_time=since)
    assert page["users"] and min(u["updated_at"] for u in page["users"]) == middle
    assert len(page["users"]) == sum(1 for s in stamps if s >= middle)


def test_the_last_cursor_returns_only_later_changes(app: ZendeskSandbox) -> None:
    http = client(app)
    *_, last = export_all(http, USERS, start_time=0)
    empty = http.get(USERS, params={"cursor": last["after_cursor"]}).json()
    assert empty["users"] == [] and empty["end_of_stream"] is True
    user_id = first_user_id(app)
    assert http.put(
        f"/api/v2/users/{user_id}.json", json={"user": {"name": "Jo Bloggs"}}
    ).is_success
    after = http.get(USERS, params={"cursor": last["after_cursor"]}).json()
    assert [(u["id"], u["name"]) for u in after["users"]] == [(user_id, "Jo Bloggs")]


def test_tickets_belong_to_seeded_users_and_include_deleted_ones(app: ZendeskSandbox) -> None:
    tickets = [t for page in export_all(client(app), TICKETS, start_time=0)
               for t in page["tickets"]]  # fmt: skip
    assert tickets and {t["requester_id"] for t in tickets} <= set(app.users.records)
    assert {t["status"] for t in tickets} <= {"new", "open", "pending", "solved", "closed",
                                              "deleted"}  # fmt: skip


def test_equal_seeds_give_equal_accounts() -> None:
    one = Sandbox(people=40, systems=("zendesk",)).app("zendesk")
    two = Sandbox(people=40, systems=("zendesk",)).app("zendesk")
    assert isinstance(one, ZendeskSandbox) and isinstance(two, ZendeskSandbox)
    assert one.users.records == two.users.records
    assert one.tickets.records == two.tickets.records


# --- writes ---------------------------------------------------------------------------------


def test_create_or_update_matches_on_email(app: ZendeskSandbox) -> None:
    http = client(app)
    body = {"user": {"name": "Ann Lee", "email": "ann.lee@example.com"}}
    created = http.post("/api/v2/users/create_or_update.json", json=body)
    again = http.post("/api/v2/users/create_or_update.json", json=body)
    assert created.status_code == 201 and again.status_code == 200
    assert created.json()["user"]["id"] == again.json()["user"]["id"]


def test_a_new_user_needs_a_name_and_an_unused_email(app: ZendeskSandbox) -> None:
    http = client(app)
    nameless = http.post("/api/v2/users.json", json={"user": {"email": "x@example.com"}})
    assert nameless.status_code == 422 and "name" in nameless.json()["details"]
    taken = app.users.records[first_user_id(app)]["email"]
    other = list(app.users.records)[1]
    duplicate = http.put(f"/api/v2/users/{other}.json", json={"user": {"email": taken}})
    assert duplicate.status_code == 422
    assert duplicate.json()["details"]["email"][0]["error"] == "DuplicateValue"


def test_add_record_is_newer_than_every_other(app: ZendeskSandbox) -> None:
    new_id = app.add_record("users")
    *_, last = export_all(client(app), USERS, start_time=0)
    assert str(last["users"][-1]["id"]) == new_id
    ticket_id = app.add_record("tickets")
    *_, last = export_all(client(app), TICKETS, start_time=0)
    assert str(last["tickets"][-1]["id"]) == ticket_id


# --- deletion -------------------------------------------------------------------------------


def test_delete_is_soft_then_permanent_then_404(app: ZendeskSandbox) -> None:
    http = client(app)
    user_id = first_user_id(app)
    deleted = http.delete(f"/api/v2/users/{user_id}.json")
    assert deleted.status_code == 200 and deleted.json()["user"]["active"] is False
    assert http.get(f"/api/v2/deleted_users/{user_id}.json").status_code == 200
    assert http.delete(f"/api/v2/users/{user_id}.json").status_code == 404
    purged = http.delete(f"/api/v2/deleted_users/{user_id}.json")
    assert purged.status_code == 200 and purged.json()["deleted_user"]["email"] is None
    gone = http.get(f"/api/v2/deleted_users/{user_id}.json")
    assert gone.status_code == 404
    assert gone.json() == {"error": "RecordNotFound", "description": "Not found"}
    assert http.delete(f"/api/v2/deleted_users/{user_id}.json").status_code == 404
    *_, last = export_all(http, USERS, start_time=0)
    tombstone = last["users"][-1]
    assert tombstone["id"] == user_id and tombstone["active"] is False
    assert tombstone["name"] == "Permanently Deleted User" and tombstone["phone"] is None


# --- rate limits and faults -----------------------------------------------------------------


def test_responses_carry_zendesk_rate_limit_headers(app: ZendeskSandbox) -> None:
    http = client(app)
    export = http.get(USERS, params={"start_time": 0})
    assert int(export.headers["X-Rate-Limit"]) >= 700
    assert int(export.headers["X-Rate-Limit-Remaining"]) > 0
    assert int(export.headers["ratelimit-remaining"]) > 0 and "ratelimit-reset" in export.headers
    me = http.get("/api/v2/users/me.json")
    assert "X-Rate-Limit-Remaining" in me.headers and "ratelimit-remaining" not in me.headers


def test_a_spent_export_quota_answers_429_with_retry_after() -> None:
    app = ZendeskSandbox(clock=lambda: 1_700_000_010.0)
    app.seed([])
    app.export_quota.limit = 2
    http = client(app)
    first = http.get(USERS, params={"start_time": 0})
    second = http.get(USERS, params={"start_time": 0})
    third = http.get(USERS, params={"start_time": 0})
    assert (
        first.headers["ratelimit-remaining"] == "1" and second.headers["ratelimit-remaining"] == "0"
    )
    assert third.status_code == 429 and third.headers["Retry-After"] == "30"  # the minute ends
    assert app.rate_limited == 1
    assert http.get("/api/v2/users/me.json").status_code == 200  # other endpoints still answer


def test_injected_faults_answer_429_with_retry_after(app: ZendeskSandbox) -> None:
    app.faults = Faults(burst_every=1, burst_length=1, retry_after=3)
    response = client(app).get(USERS, params={"start_time": 0})
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert app.faults_sent[429] == 1


def test_a_read_resumed_from_any_page_state_loses_and_repeats_nothing(app: ZendeskSandbox) -> None:
    config = ZendeskConfig(
        base_url=f"https://{app.host}", email=app.api_email, api_token=app.credentials, page_size=9
    )
    zendesk = ZendeskConnector(config, http_options={"transport": httpx.MockTransport(app)})
    pages = zendesk.read("users", None)
    first = [next(pages), next(pages)]  # then the process dies
    rest = list(zendesk.read("users", first[-1].state))
    ids = [r["id"] for page in first + rest for r in page.records]
    assert len(ids) == len(set(ids)) == len(app.users.records)


# --- end to end through the hub -------------------------------------------------------------


def test_hub_syncs_every_record_once_then_only_changes(tmp_path: Path, database_url: str) -> None:
    sandbox = Sandbox(people=300, systems=("zendesk",))
    app = sandbox.app("zendesk")
    assert isinstance(app, ZendeskSandbox)
    hub = sandbox.open_hub(tmp_path, database_url, sleep=lambda seconds: None)
    try:
        results = hub.sync(["zendesk"])
        assert [(r.stream, r.status) for r in results] == [
            ("users", "succeeded"),
            ("tickets", "succeeded"),
        ]
        live_tickets = [t for t in app.tickets.records.values() if t["status"] != "deleted"]
        with hub.engine.connect() as conn:
            people = conn.execute(
                select(func.count(), func.count(func.distinct(source_records.c.external_id)))
            ).one()
            stored_tickets = conn.execute(select(func.count()).select_from(activities)).scalar()
            quarantined = conn.execute(select(func.count()).select_from(quarantine)).scalar()
        assert tuple(people) == (len(app.users.records), len(app.users.records))
        assert stored_tickets == len(live_tickets)
        assert quarantined == 0

        app.reset_counters()
        again = hub.sync(["zendesk"])
        assert [r.counts.read for r in again] == [0, 0]
        assert dict(app.calls) == {f"GET {USERS}": 1, f"GET {TICKETS}": 1}

        user_id = first_user_id(app)
        http = client(app)
        assert http.put(
            f"/api/v2/users/{user_id}.json", json={"user": {"phone": "+442079460958"}}
        ).is_success
        other = list(app.users.records)[1]
        assert http.delete(f"/api/v2/users/{other}.json").is_success
        app.reset_counters()
        changed = hub.sync(["zendesk"])
        users = changed[0].counts
        assert (users.read, users.updated, users.deleted) == (1, 1, 1)
        assert dict(app.calls) == {f"GET {USERS}": 1, f"GET {TICKETS}": 1}
        with hub.engine.connect() as conn:
            row = conn.execute(
                select(source_records.c.data, source_records.c.deleted_at).where(
                    source_records.c.external_id.in_([str(user_id), str(other)])
                )
            ).all()
        by_deleted = {deleted_at is not None: data for data, deleted_at in row}
        assert by_deleted[False]["phones"] == ["+442079460958"]
        assert True in by_deleted
    finally:
        hub.close()

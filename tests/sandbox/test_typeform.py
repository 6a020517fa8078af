"""The Typeform sandbox app (auth, forms, response paging and filters, deletion, faults) and
the typeform connector against it, through the hub on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from crmhub.connectors.typeform import TypeformConfig, TypeformConnector
from crmhub.errors import AuthError, WebhookSignatureError
from crmhub.sandbox.app import Faults
from crmhub.sandbox.typeform import CONTACT_FORM, FEEDBACK_FORM, TypeformSandbox
from crmhub.sandbox.world import Sandbox
from crmhub.store import quarantine as quarantine_store
from crmhub.store.schema import activities, source_records

ROWS = [
    {
        "id": f"shop-{n}",
        "first_name": f"Ann{n}",
        "last_name": "Lee",
        "email": f"ann{n}@example.com",
        "phone": "+44 7400 123456" if n % 2 else "",
        "company": "",
        "job_title": "",
        "street": "",
        "city": "",
        "postcode": "",
        "country": "GB",
        "birth_date": "",
        "newsletter": ("yes", "no", "")[n % 3],
        "updated_at": f"2024-05-01T10:00:{n // 2:02d}Z",  # two responses per second
        "person_key": f"P{n}",
    }
    for n in range(40)
]


@pytest.fixture
def app() -> TypeformSandbox:
    app = TypeformSandbox()
    app.seed_random(1)
    app.seed(ROWS)
    return app


def _client(app: TypeformSandbox, token: str | None = None) -> httpx.Client:
    return httpx.Client(
        transport=httpx.MockTransport(app),
        base_url=f"https://{app.host}",
        headers={"Authorization": f"Bearer {token or app.credentials}"},
    )


def _tokens(app: TypeformSandbox) -> set[str]:
    return {t for held in app.responses.values() for t in held}


def _connector(app: TypeformSandbox, **settings: Any) -> TypeformConnector:
    values = {**app.connector_settings(f"https://{app.host}"), "token": app.credentials}
    values.pop("webhook_secret")
    values.update(settings)
    return TypeformConnector(
        TypeformConfig(**values),
        http_options={"transport": httpx.MockTransport(app), "sleep": lambda s: None},
    )


def test_a_wrong_token_is_refused_in_typeforms_error_shape(app: TypeformSandbox) -> None:
    response = _client(app, "wrong").get("/forms")
    assert response.status_code == 401
    assert response.json()["code"] == "AUTHENTICATION_FAILED"
    assert not app.calls


def test_forms_are_listed_and_defined_with_refs(app: TypeformSandbox) -> None:
    client = _client(app)
    listed = client.get("/forms", params={"page_size": 1}).json()
    assert listed["total_items"] == 2 and listed["page_count"] == 2
    assert [f["id"] for f in listed["items"]] == [CONTACT_FORM]
    form = client.get(f"/forms/{CONTACT_FORM}").json()
    assert form["title"] == "Contact us"
    assert {"first_name", "email", "newsletter", "country"} <= {f["ref"] for f in form["fields"]}
    missing = client.get("/forms/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "FORM_NOT_FOUND"
    assert client.get("/forms/nope/responses").json()["code"] == "FORM_NOT_FOUND"


def test_seeded_answers_are_typed_and_blank_values_unanswered(app: TypeformSandbox) -> None:
    assert sum(len(held) for held in app.responses.values()) == len(ROWS)
    first = next(
        item for held in app.responses.values() for item in held.values()
        if item["hidden"] == {"person_key": "P1"}
    )  # fmt: skip
    by_ref = {a["field"]["ref"]: a for a in first["answers"]}
    assert by_ref["email"] == {
        "field": by_ref["email"]["field"],
        "type": "email",
        "email": "ann1@example.com",
    }
    assert by_ref["newsletter"]["boolean"] is False
    assert by_ref["country"]["choice"] == {"label": "GB"}
    assert by_ref["phone"]["phone_number"] == "+447400123456"  # stored E.164
    assert "company" not in by_ref
    assert first["submitted_at"] == "2024-05-01T10:00:00Z"


def test_paging_after_tokens_reads_each_response_once_oldest_first_and_ends(
    app: TypeformSandbox,
) -> None:
    client = _client(app)
    path = f"/forms/{CONTACT_FORM}/responses"
    params: dict[str, Any] = {"page_size": 4, "sort": "submitted_at,asc"}
    seen: list[tuple[str, str]] = []
    requests = 0
    while True:
        body = client.get(path, params=params).json()
        requests += 1
        seen += [(i["submitted_at"], i["token"]) for i in body["items"]]
        if len(body["items"]) < 4:
            break
        params = {"page_size": 4, "after": body["items"][-1]["token"]}
    assert len(seen) == len(app.responses[CONTACT_FORM]) == len(set(seen))
    assert seen == sorted(seen)
    assert requests == len(seen) // 4 + 1


def test_default_order_is_newest_first_and_sort_cannot_go_with_after(
    app: TypeformSandbox,
) -> None:
    client = _client(app)
    path = f"/forms/{CONTACT_FORM}/responses"
    items = client.get(path, params={"page_size": 1000}).json()["items"]
    stamps = [i["submitted_at"] for i in items]
    assert stamps == sorted(stamps, reverse=True)
    refused = client.get(path, params={"sort": "submitted_at,asc", "after": items[0]["token"]})
    assert refused.status_code == 400 and refused.json()["code"] == "VALIDATION_ERROR"
    too_big = client.get(path, params={"page_size": 1001})
    assert too_big.status_code == 400


def test_since_and_until_are_inclusive_to_the_second(app: TypeformSandbox) -> None:
    client = _client(app)
    body = {
        form: client.get(
            f"/forms/{form}/responses",
            params={"since": "2024-05-01T10:00:05", "until": "1714557607", "page_size": 100},
        ).json()
        for form in (CONTACT_FORM, FEEDBACK_FORM)
    }
    stamps = sorted(i["submitted_at"] for b in body.values() for i in b["items"])
    assert stamps[0] == "2024-05-01T10:00:05Z" and stamps[-1] == "2024-05-01T10:00:07Z"
    assert len(stamps) == 6  # two responses in each of three seconds
    assert sum(b["total_items"] for b in body.values()) == 6
    bad = client.get(f"/forms/{CONTACT_FORM}/responses", params={"since": "yesterday"})
    assert bad.status_code == 400


def test_included_and_excluded_ids_filter_the_listing(app: TypeformSandbox) -> None:
    client = _client(app)
    path = f"/forms/{CONTACT_FORM}/responses"
    a, b, c = sorted(app.responses[CONTACT_FORM])[:3]
    included = client.get(path, params={"included_response_ids": f"{a},{b},unknown"}).json()
    assert {i["token"] for i in included["items"]} == {a, b}
    excluded = client.get(path, params={"excluded_response_ids": c, "page_size": 1000}).json()
    assert excluded["total_items"] == len(app.responses[CONTACT_FORM]) - 1
    assert c not in {i["token"] for i in excluded["items"]}


def test_deleting_responses_removes_them_and_unknown_ids_are_ignored(
    app: TypeformSandbox,
) -> None:
    client = _client(app)
    path = f"/forms/{CONTACT_FORM}/responses"
    token = next(iter(app.responses[CONTACT_FORM]))
    assert client.delete(path, params={"included_response_ids": token}).status_code == 200
    listed = client.get(path, params={"included_response_ids": token}).json()
    assert listed["items"] == [] and listed["total_items"] == 0
    again = client.delete(path, params={"included_response_ids": token})
    assert again.status_code == 200  # as Typeform: ids that are not there are ignored
    assert client.delete(path).status_code == 400  # included_response_ids is required
    assert token not in _tokens(app)


def test_paging_after_an_erased_token_goes_on_from_where_it_was(app: TypeformSandbox) -> None:
    client = _client(app)
    path = f"/forms/{CONTACT_FORM}/responses"
    first = client.get(path, params={"page_size": 2, "sort": "submitted_at,asc"}).json()
    last = first["items"][-1]["token"]
    app.delete_responses(CONTACT_FORM, [last])
    rest = client.get(path, params={"page_size": 1000, "after": last}).json()["items"]
    assert len(rest) == len(app.responses[CONTACT_FORM]) - 1  # all but the first one


def test_fault_injection_answers_429_with_retry_after(app: TypeformSandbox) -> None:
    app.faults = Faults(burst_every=1, burst_length=1, retry_after=3)
    response = _client(app).get("/forms")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert app.faults_sent[429] == 1


def test_a_crash_after_any_page_loses_nothing_and_reads_nothing_twice(
    app: TypeformSandbox,
) -> None:
    everything = {
        r["token"] for page in _connector(app).read("responses", None) for r in page.records
    }
    assert everything == _tokens(app)
    for crash_after in range(1, 6):
        connector = _connector(app, page_size=3)
        pages = connector.read("responses", None)
        read: list[str] = []
        state = None
        for _ in range(crash_after):
            page = next(pages)
            read += [r["token"] for r in page.records]
            state = page.state
        read += [
            r["token"] for page in _connector(app, page_size=3).read("responses", state)
            for r in page.records
        ]  # fmt: skip
        assert sorted(read) == sorted(everything), crash_after


def test_the_connector_erases_then_finds_the_response_already_gone(app: TypeformSandbox) -> None:
    contact = next(iter(app.responses[CONTACT_FORM]))
    feedback = next(iter(app.responses[FEEDBACK_FORM]))
    connector = _connector(app)
    results = list(connector.erase([feedback, contact]))
    assert [r.status for r in results] == ["erased", "erased"]
    assert contact not in _tokens(app) and feedback not in _tokens(app)
    assert [r.status for r in _connector(app).erase([contact])] == ["already_gone"]


def test_check_passes_with_the_token_and_fails_with_another(app: TypeformSandbox) -> None:
    _connector(app).check()
    with pytest.raises(AuthError, match="refused the personal access token"):
        _connector(app, token="tfp_wrong").check()


def test_a_signed_delivery_gives_the_records_a_read_gives(app: TypeformSandbox) -> None:
    token = next(iter(app.responses[CONTACT_FORM]))
    headers, body = app.webhook_delivery(token)
    connector = _connector(app, webhook_secret=app.webhook_secret, webhook_tolerance=None)
    [responses, submissions] = connector.webhook(headers, body)
    read = {r["token"]: r for page in connector.read("responses", None) for r in page.records}[
        token
    ]
    pushed = responses.page.records[0]
    assert pushed == {**read, "metadata": {}}  # a webhook carries no metadata
    assert submissions.page.records[0]["form_title"] == "Contact us"
    wrong_headers, _ = app.webhook_delivery(token, "not-the-secret")
    with pytest.raises(WebhookSignatureError):
        connector.webhook(wrong_headers, body)


# --------------------------------------------------------------------------- through the hub


def _count(hub: Any, table: Any, stream: str) -> tuple[int, int]:
    with hub.engine.connect() as conn:
        rows = conn.execute(
            select(func.count(), func.count(func.distinct(table.c.external_id))).where(
                table.c.connector == "typeform", table.c.stream == stream
            )
        ).one()
    return int(rows[0]), int(rows[1])


def test_sync_through_the_hub_stores_each_response_once_and_then_only_what_changed(
    tmp_path: Path, database_url: str
) -> None:
    sandbox = Sandbox(people=300, systems=("typeform",))
    app = sandbox.app("typeform")
    assert isinstance(app, TypeformSandbox)
    total = len(_tokens(app))
    assert total > 50
    hub = sandbox.open_hub(tmp_path, database_url, sleep=lambda s: None)
    try:
        results = hub.sync(["typeform"])
        assert [(r.stream, r.status) for r in results] == [
            ("responses", "succeeded"),
            ("submissions", "succeeded"),
        ]
        for r in results:
            assert (r.counts.read, r.counts.inserted, r.counts.quarantined) == (total, total, 0)
        assert _count(hub, source_records, "responses") == (total, total)
        assert _count(hub, activities, "submissions") == (total, total)
        with hub.engine.connect() as conn:
            assert quarantine_store.list_quarantine(conn, connector="typeform") == []
            person_of = dict(
                conn.execute(
                    select(activities.c.external_id, activities.c.person_external_id).where(
                        activities.c.connector == "typeform"
                    )
                ).all()
            )
        assert all(person == token for token, person in person_of.items())

        # Nothing new: one listing per form and stream, nothing read.
        app.reset_counters()
        again = hub.sync(["typeform"])
        assert [r.counts.read for r in again] == [0, 0]
        assert dict(app.calls) == {"GET /forms/{form_id}/responses": 4}

        # A changed response and a new one come back, and only they.
        changed = next(iter(app.responses[FEEDBACK_FORM]))
        app.edit_response(changed, {"email": "changed@example.com"})
        added = app.add_record("responses")
        app.reset_counters()
        third = hub.sync(["typeform"])
        for r in third:
            assert (r.counts.read, r.counts.inserted, r.counts.updated) == (2, 1, 1), r.stream
        assert app.calls["GET /forms/{form_id}/responses"] == 4
        with hub.engine.connect() as conn:
            data = dict(
                conn.execute(
                    select(source_records.c.external_id, source_records.c.data).where(
                        source_records.c.external_id.in_([changed, added])
                    )
                ).all()
            )
        assert data[changed]["emails"] == ["changed@example.com"]
        assert data[added]["attributes"]["form_id"] == CONTACT_FORM
    finally:
        hub.close()

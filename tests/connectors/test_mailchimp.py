"""Tests of the ``mailchimp`` connector's requests (crmhub.connectors.mailchimp), against respx."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import respx
from pydantic import ValidationError

from crmhub.connector import Change, Page
from crmhub.connectors.mailchimp import MailchimpConfig, MailchimpConnector, subscriber_hash
from crmhub.errors import AuthError, ConnectorError

BASE = "https://us1.api.mailchimp.com/3.0"
KEY = "0123456789abcdef0123456789abcdef-us1"
LIST = "a1b2c3d4e5"
MEMBERS = f"/lists/{LIST}/members"
ANN = "Ann.Lee@Example.org"
ANN_ID = hashlib.md5(b"ann.lee@example.org").hexdigest()


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(base_url=BASE, assert_all_called=False)


def connector(
    router: respx.MockRouter, *, sleep: Callable[[float], None] | None = None, **settings: Any
) -> MailchimpConnector:
    config = MailchimpConfig(**{"api_key": KEY, "list_id": LIST, **settings})
    options: dict[str, Any] = {"transport": httpx.MockTransport(router.handler)}
    options["sleep"] = sleep or (lambda seconds: None)
    return MailchimpConnector(config, http_options=options)


def member(member_id: str, changed: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": member_id,
        "email_address": f"{member_id}@example.org",
        "status": "subscribed",
        "merge_fields": {"FNAME": "A", "LNAME": "B", "ADDRESS": "", "PHONE": ""},
        "last_changed": changed,
        **extra,
    }


def listing(members: list[dict[str, Any]], total: int) -> httpx.Response:
    return httpx.Response(200, json={"members": members, "list_id": LIST, "total_items": total})


def problem(status: int, title: str, detail: str = "", **extra: Any) -> httpx.Response:
    body = {
        "type": "https://mailchimp.com/developer/marketing/docs/errors/",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": "0f0e",
        **extra,
    }
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json"})


def params_of(route: respx.Route) -> list[dict[str, str]]:
    return [dict(call.request.url.params) for call in route.calls]


def body_of(route: respx.Route, index: int = -1) -> Any:
    return orjson.loads(route.calls[index].request.content)


def archived_route(router: respx.MockRouter, members: list[dict[str, Any]] | None = None) -> Any:
    return router.get(MEMBERS, params={"status": "archived"}).mock(
        return_value=listing(members or [], len(members or []))
    )


def live_route(router: respx.MockRouter, *responses: httpx.Response) -> Any:
    # Registered after the archived route: respx picks the first route that matches.
    return router.get(MEMBERS).mock(side_effect=list(responses))


# --- configuration and authentication ------------------------------------------------------


def test_the_api_address_comes_from_the_keys_data_centre_and_base_url_wins() -> None:
    assert MailchimpConfig(api_key="abc-us21", list_id=LIST).base_url == (
        "https://us21.api.mailchimp.com/3.0"
    )
    given = MailchimpConfig(api_key="abc", list_id=LIST, base_url="http://localhost:9/3.0")
    assert given.base_url == "http://localhost:9/3.0"


def test_a_key_without_a_data_centre_and_no_base_url_is_a_clear_error_without_the_key() -> None:
    with pytest.raises(ValidationError) as caught:
        MailchimpConfig(api_key="secretkeywithoutdc", list_id=LIST)
    message = str(caught.value)
    assert "data centre" in message and "base_url" in message
    assert "secretkeywithoutdc" not in message


def test_page_size_is_bounded_by_the_apis_limit() -> None:
    with pytest.raises(ValidationError):
        MailchimpConfig(api_key=KEY, list_id=LIST, page_size=1001)
    assert MailchimpConfig(api_key=KEY, list_id=LIST).page_size == 1000


def test_requests_use_http_basic_with_the_key_as_password(router: respx.MockRouter) -> None:
    ping = router.get("/ping").respond(200, json={"health_status": "Everything's Chimpy!"})
    router.get(f"/lists/{LIST}").respond(200, json={"id": LIST})
    connector(router).check()
    scheme, _, encoded = ping.calls[0].request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode().partition(":")[2] == KEY


def test_check_pings_and_looks_the_audience_up(router: respx.MockRouter) -> None:
    router.get("/ping").respond(200, json={"health_status": "Everything's Chimpy!"})
    audience = router.get(f"/lists/{LIST}").respond(200, json={"id": LIST})
    connector(router).check()
    assert params_of(audience) == [{"fields": "id"}]


def test_check_reports_a_refused_key_clearly_without_the_key(router: respx.MockRouter) -> None:
    router.get("/ping").mock(
        return_value=problem(401, "API Key Invalid", "Your API key may be invalid.")
    )
    with pytest.raises(AuthError) as caught:
        connector(router).check()
    message = str(caught.value)
    assert "API key" in message and "us1.api.mailchimp.com" in message
    assert KEY not in message and KEY[:16] not in message


def test_check_says_when_the_audience_does_not_exist(router: respx.MockRouter) -> None:
    router.get("/ping").respond(200, json={"health_status": "Everything's Chimpy!"})
    router.get(f"/lists/{LIST}").mock(return_value=problem(404, "Resource Not Found"))
    with pytest.raises(ConnectorError, match="no audience with list_id 'a1b2c3d4e5'"):
        connector(router).check()


def test_check_says_when_base_url_is_not_the_api_root(router: respx.MockRouter) -> None:
    router.get("/ping").mock(return_value=problem(404, "Resource Not Found"))
    with pytest.raises(ConnectorError, match="no Mailchimp API answers at"):
        connector(router).check()


def test_check_says_when_the_host_cannot_be_reached(router: respx.MockRouter) -> None:
    router.get("/ping").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ConnectorError, match="cannot reach the Mailchimp API") as caught:
        connector(router, max_attempts=2).check()
    assert not isinstance(caught.value, AuthError)
    assert KEY not in str(caught.value)


# --- reading ---------------------------------------------------------------------------------


def test_a_full_read_pages_with_count_and_offset_and_only_the_last_page_has_state(
    router: respx.MockRouter,
) -> None:
    archived = archived_route(
        router, [{"id": "gone1", "last_changed": "2024-03-01T00:00:00+00:00"}]
    )
    # Not in cursor order, on purpose: the state is the newest change seen, not the last one.
    live = live_route(
        router,
        listing(
            [member("m1", "2024-01-01T00:00:00+00:00"), member("m2", "2024-06-01T12:00:00+00:00")],
            5,
        ),
        listing(
            [member("m3", "2024-02-01T00:00:00+00:00"), member("m4", "2024-01-05T00:00:00+00:00")],
            5,
        ),
        listing([member("m5", "2024-04-01T00:00:00+00:00")], 5),
    )
    pages = list(connector(router, page_size=2).read("members", None))
    assert [[r["id"] for r in p.records] for p in pages] == [["m1", "m2"], ["m3", "m4"], ["m5"], []]
    assert [p.state for p in pages[:-1]] == [None, None, None]
    assert pages[-1].state == {"last_changed": "2024-06-01T12:00:00Z"}
    assert pages[-1].deleted == ["gone1"]
    sent = params_of(live)
    assert [(p["offset"], p["count"]) for p in sent] == [("0", "2"), ("2", "2"), ("4", "2")]
    assert all(p["sort_field"] == "last_changed" and p["sort_dir"] == "ASC" for p in sent)
    assert all("since_last_changed" not in p for p in sent)
    assert "members._links" in sent[0]["exclude_fields"]
    [asked] = params_of(archived)
    assert asked["status"] == "archived" and asked["fields"].startswith("members.id")


def test_an_incremental_read_asks_from_one_second_before_the_saved_change(
    router: respx.MockRouter,
) -> None:
    archived = archived_route(router)
    live = live_route(router, listing([member("m9", "2024-05-01T10:00:00+00:00")], 1))
    pages = list(connector(router).read("members", {"last_changed": "2024-05-01T10:00:00Z"}))
    assert [r["id"] for p in pages for r in p.records] == ["m9"]
    for route in (live, archived):
        assert params_of(route)[0]["since_last_changed"] == "2024-05-01T09:59:59Z"
    # Nothing newer: the state stays where it was, never moves back.
    assert pages[-1].state == {"last_changed": "2024-05-01T10:00:00Z"}


def test_archived_members_are_reported_as_deleted_and_move_the_cursor(
    router: respx.MockRouter,
) -> None:
    archived_route(router, [{"id": "old1", "last_changed": "2024-08-01T00:00:00+00:00"}])
    live_route(router, listing([member("m1", "2024-07-01T00:00:00+00:00")], 1))
    pages = list(connector(router).read("members", {"last_changed": "2024-01-01T00:00:00Z"}))
    assert [d for p in pages for d in p.deleted] == ["old1"]
    assert pages[-1].state == {"last_changed": "2024-08-01T00:00:00Z"}


def test_a_read_disturbed_by_concurrent_changes_keeps_the_old_state(
    router: respx.MockRouter,
) -> None:
    archived_route(router)
    # m2 was edited between the two requests: it moved to the end, so offset 2 shows it
    # again and whatever slid back into page one was never read.
    live_route(
        router,
        listing(
            [member("m1", "2024-01-01T00:00:00+00:00"), member("m2", "2024-01-02T00:00:00+00:00")],
            3,
        ),
        listing([member("m2", "2024-09-09T00:00:00+00:00")], 3),
    )
    pages = list(
        connector(router, page_size=2).read("members", {"last_changed": "2023-12-01T00:00:00Z"})
    )
    assert all(p.state is None for p in pages)


def test_a_shrinking_total_between_pages_keeps_the_old_state(router: respx.MockRouter) -> None:
    archived_route(router)
    live_route(
        router,
        listing(
            [member("m1", "2024-01-01T00:00:00+00:00"), member("m2", "2024-01-02T00:00:00+00:00")],
            4,
        ),
        listing([member("m4", "2024-01-04T00:00:00+00:00")], 3),  # m3 archived meanwhile
    )
    pages = list(connector(router, page_size=2).read("members", None))
    assert all(p.state is None for p in pages)


def test_state_since_rounds_up_to_whole_seconds(router: respx.MockRouter) -> None:
    mc = connector(router)
    assert mc.state_since("members", datetime(2024, 5, 1, 10, 0, 0, 500, tzinfo=UTC)) == {
        "last_changed": "2024-05-01T10:00:01Z"
    }
    assert mc.state_since("members", datetime(2024, 5, 1, 10, tzinfo=UTC)) == {
        "last_changed": "2024-05-01T10:00:00Z"
    }


def test_429_is_retried_honouring_retry_after(router: respx.MockRouter) -> None:
    archived_route(router)
    live_route(
        router,
        httpx.Response(
            429, json={"title": "Too Many Requests", "status": 429}, headers={"Retry-After": "3"}
        ),
        listing([member("m1", "2024-01-01T00:00:00+00:00")], 1),
    )
    waits: list[float] = []
    mc = connector(router, sleep=waits.append)
    pages = list(mc.read("members", None))
    assert [r["id"] for p in pages for r in p.records] == ["m1"]
    assert waits == [3.0]
    assert mc.retries == 1


# --- writing ---------------------------------------------------------------------------------


def test_a_new_member_is_put_under_its_address_hash_with_status_if_new(
    router: respx.MockRouter,
) -> None:
    put = router.put(f"{MEMBERS}/{ANN_ID}").respond(200, json={"id": ANN_ID})
    change = Change(
        None,
        {
            "email_address": ANN,
            "status": "subscribed",
            "merge_fields": {"FNAME": "Ann", "LNAME": None, "ADDRESS": {"city": None}},
        },
        "key-1",
    )
    [result] = connector(router).write("members", [change])
    assert result.ok and result.external_id == ANN_ID and result.idempotency_key == "key-1"
    assert body_of(put) == {
        "email_address": ANN,
        "status_if_new": "subscribed",
        "merge_fields": {"FNAME": "Ann"},
    }
    assert subscriber_hash(ANN) == ANN_ID


def test_a_new_member_without_a_consent_decision_is_transactional(
    router: respx.MockRouter,
) -> None:
    put = router.put(f"{MEMBERS}/{ANN_ID}").respond(200, json={"id": ANN_ID})
    [result] = connector(router).write("members", [Change(None, {"email_address": ANN}, "k")])
    assert result.ok
    assert body_of(put)["status_if_new"] == "transactional"


def test_an_update_patches_only_the_changed_fields_and_consent_becomes_status(
    router: respx.MockRouter,
) -> None:
    patch = router.patch(f"{MEMBERS}/{ANN_ID}").respond(200, json={"id": ANN_ID})
    change = Change(
        ANN_ID,
        {"status": "denied", "merge_fields.LNAME": "Lee", "merge_fields.ADDRESS.city": "Leeds"},
        "key-2",
    )
    [result] = connector(router).write("members", [change])
    assert result.ok and result.external_id == ANN_ID
    assert body_of(patch) == {
        "status": "unsubscribed",
        "merge_fields": {"LNAME": "Lee", "ADDRESS": {"city": "Leeds"}},
    }


def test_writing_the_same_change_twice_sends_the_same_request(router: respx.MockRouter) -> None:
    put = router.put(f"{MEMBERS}/{ANN_ID}").respond(200, json={"id": ANN_ID})
    change = Change(None, {"email_address": ANN, "status": "granted"}, "key-3")
    first = list(connector(router).write("members", [change]))
    second = list(connector(router).write("members", [change]))
    assert first == second
    assert [r.ok for r in first] == [True]
    assert put.calls[0].request.content == put.calls[1].request.content
    assert body_of(put)["status_if_new"] == "subscribed"


def test_an_update_with_nothing_mailchimp_holds_sends_nothing(router: respx.MockRouter) -> None:
    patch = router.patch(f"{MEMBERS}/{ANN_ID}").respond(200, json={"id": ANN_ID})
    [result] = connector(router).write(
        "members", [Change(ANN_ID, {"merge_fields": {"PHONE": None}, "status": None}, "k")]
    )
    assert result.ok and not patch.called


def test_an_update_of_a_missing_member_fails_for_good(router: respx.MockRouter) -> None:
    router.patch(f"{MEMBERS}/{ANN_ID}").mock(return_value=problem(404, "Resource Not Found"))
    [result] = connector(router).write(
        "members", [Change(ANN_ID, {"merge_fields.FNAME": "A"}, "k")]
    )
    assert not result.ok and not result.retriable
    assert "not found" in (result.error or "")


def test_a_permanently_deleted_address_is_a_clear_permanent_failure(
    router: respx.MockRouter,
) -> None:
    router.put(f"{MEMBERS}/{ANN_ID}").mock(
        return_value=problem(
            400,
            "Forgotten Email Not Subscribed",
            f"{ANN} was permanently deleted and cannot be re-imported.",
        )
    )
    [result] = connector(router).write("members", [Change(None, {"email_address": ANN}, "k")])
    assert not result.ok and not result.retriable
    assert "permanently deleted" in (result.error or "")
    assert ANN not in (result.error or "") and ANN.lower() not in (result.error or "")


def test_a_rejected_field_is_named_without_its_value(router: respx.MockRouter) -> None:
    router.patch(f"{MEMBERS}/{ANN_ID}").mock(
        return_value=problem(
            400,
            "Invalid Resource",
            "The resource submitted could not be validated.",
            errors=[{"field": "email_address", "message": f"{ANN} looks fake or invalid"}],
        )
    )
    [result] = connector(router).write("members", [Change(ANN_ID, {"email_address": ANN}, "k")])
    assert not result.ok and not result.retriable
    assert "email_address" in (result.error or "") and "Ann" not in (result.error or "")


def test_server_errors_after_retries_are_retriable(router: respx.MockRouter) -> None:
    router.patch(f"{MEMBERS}/{ANN_ID}").respond(503)
    [result] = connector(router, max_attempts=2).write(
        "members", [Change(ANN_ID, {"merge_fields.FNAME": "A"}, "k")]
    )
    assert not result.ok and result.retriable


def test_a_refused_key_stops_the_push_after_one_request(router: respx.MockRouter) -> None:
    other = "0" * 32
    routes = [
        router.patch(f"{MEMBERS}/{i}").mock(return_value=problem(401, "API Key Invalid"))
        for i in (ANN_ID, other)
    ]
    changes = [Change(i, {"merge_fields.FNAME": "A"}, i) for i in (ANN_ID, other)]
    results = list(connector(router).write("members", changes))
    assert [(r.ok, r.retriable) for r in results] == [(False, True), (False, True)]
    assert [route.call_count for route in routes] == [1, 0]


def test_changes_mailchimp_cannot_take_fail_without_a_request(router: respx.MockRouter) -> None:
    results = list(
        connector(router).write(
            "members",
            [
                Change(None, {"merge_fields.FNAME": "No address"}, "a"),
                Change(ANN_ID, {"status": "archived"}, "b"),
                Change("../../ping", {"merge_fields.FNAME": "A"}, "c"),
            ],
        )
    )
    assert [r.ok for r in results] == [False, False, False]
    assert not router.calls


# --- erasing ---------------------------------------------------------------------------------


def test_erase_deletes_permanently_and_a_missing_member_is_already_gone(
    router: respx.MockRouter,
) -> None:
    other = "f" * 32
    erased = router.post(f"{MEMBERS}/{ANN_ID}/actions/delete-permanent").respond(204)
    router.post(f"{MEMBERS}/{other}/actions/delete-permanent").mock(
        return_value=problem(404, "Resource Not Found")
    )
    results = list(connector(router).erase([ANN_ID, other]))
    assert [(r.external_id, r.status) for r in results] == [
        (ANN_ID, "erased"),
        (other, "already_gone"),
    ]
    assert all(r.done for r in results)
    assert erased.calls[0].request.content == b""


def test_erase_with_a_refused_key_fails_retriably(router: respx.MockRouter) -> None:
    routes = [
        router.post(f"{MEMBERS}/{i}/actions/delete-permanent").mock(
            return_value=problem(401, "API Key Invalid")
        )
        for i in (ANN_ID, "e" * 32)
    ]
    results = list(connector(router).erase([ANN_ID, "e" * 32]))
    assert [(r.status, r.retriable) for r in results] == [("failed", True), ("failed", True)]
    assert [route.call_count for route in routes] == [1, 0]
    assert all(KEY not in (r.error or "") for r in results)


def test_read_pages_are_pages(router: respx.MockRouter) -> None:
    archived_route(router)
    live_route(router, listing([], 0))
    pages = list(connector(router).read("members", None))
    assert all(isinstance(p, Page) for p in pages)
    assert pages[-1].state is None  # an empty audience has no change to remember

"""Tests of the ``zendesk`` connector's requests (crmhub.connectors.zendesk), against respx."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import respx
from pydantic import ValidationError

from crmhub.connector import Change, Page
from crmhub.connectors.zendesk import ZendeskConfig, ZendeskConnector
from crmhub.errors import AuthError, ConnectorError, FatalError

BASE = "https://acme.zendesk.com"
TOKEN = "zd-secret-token-123"
USERS = "/api/v2/incremental/users/cursor.json"
TICKETS = "/api/v2/incremental/tickets/cursor.json"


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(base_url=BASE, assert_all_called=False)


def connector(
    router: respx.MockRouter, *, sleep: Callable[[float], None] | None = None, **settings: Any
) -> ZendeskConnector:
    config = ZendeskConfig(
        **{"subdomain": "acme", "email": "admin@acme.com", "api_token": TOKEN, **settings}
    )
    options: dict[str, Any] = {"transport": httpx.MockTransport(router.handler)}
    options["sleep"] = sleep or (lambda seconds: None)
    return ZendeskConnector(config, http_options=options)


def export_page(
    items: list[dict[str, Any]], cursor: str, *, end: bool, key: str = "users"
) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            key: items,
            "after_cursor": cursor,
            "after_url": f"{BASE}{USERS}?cursor={cursor}",
            "before_cursor": None,
            "before_url": None,
            "end_of_stream": end,
        },
    )


def user(user_id: int, *, active: bool = True) -> dict[str, Any]:
    return {
        "id": user_id,
        "name": f"User {user_id}",
        "email": f"u{user_id}@example.com",
        "active": active,
        "updated_at": "2024-01-01T00:00:00Z",
    }


def body_of(route: respx.Route, index: int = -1) -> Any:
    return orjson.loads(route.calls[index].request.content)


# --- configuration and authentication ------------------------------------------------------


def test_base_url_is_built_from_the_subdomain_and_an_explicit_base_url_wins() -> None:
    built = ZendeskConfig(subdomain="acme", email="a@b.co", api_token=TOKEN)
    assert built.base_url == "https://acme.zendesk.com"
    given = ZendeskConfig(
        subdomain="acme", base_url="http://localhost:9000/", email="a@b.co", api_token=TOKEN
    )
    assert given.base_url == "http://localhost:9000"


def test_config_without_subdomain_or_base_url_says_which_to_give() -> None:
    with pytest.raises(ValidationError, match="give `subdomain`"):
        ZendeskConfig(email="a@b.co", api_token=TOKEN)
    with pytest.raises(ValidationError, match="account's name only"):
        ZendeskConfig(subdomain="acme.zendesk.com", email="a@b.co", api_token=TOKEN)


def test_page_size_is_bounded_to_the_export_limit() -> None:
    with pytest.raises(ValidationError):
        ZendeskConfig(subdomain="acme", email="a@b.co", api_token=TOKEN, page_size=1001)


def test_requests_carry_api_token_basic_auth(router: respx.MockRouter) -> None:
    route = router.get("/api/v2/users/me.json").respond(
        200, json={"user": {"id": 1, "role": "admin"}}
    )
    connector(router).check()
    expected = base64.b64encode(f"admin@acme.com/token:{TOKEN}".encode()).decode()
    assert route.calls.last.request.headers["authorization"] == f"Basic {expected}"


def test_check_with_a_refused_token_raises_auth_error_without_the_token(
    router: respx.MockRouter,
) -> None:
    router.get("/api/v2/users/me.json").respond(401, json={"error": "Couldn't authenticate you"})
    with pytest.raises(AuthError) as caught:
        connector(router).check()
    message = str(caught.value)
    assert "refused the credentials" in message and "api_token" in message
    assert TOKEN not in message


def test_check_of_a_non_admin_token_says_the_export_needs_an_admin(
    router: respx.MockRouter,
) -> None:
    router.get("/api/v2/users/me.json").respond(200, json={"user": {"id": 7, "role": "agent"}})
    with pytest.raises(AuthError, match="not an admin"):
        connector(router).check()


def test_check_of_an_anonymous_answer_is_an_auth_error(router: respx.MockRouter) -> None:
    router.get("/api/v2/users/me.json").respond(200, json={"user": {"id": None, "role": None}})
    with pytest.raises(AuthError, match="did not authenticate"):
        connector(router).check()


def test_check_of_an_unreachable_host_says_it_cannot_be_reached(router: respx.MockRouter) -> None:
    router.get("/api/v2/users/me.json").mock(side_effect=httpx.ConnectError("no route"))
    with pytest.raises(ConnectorError, match=r"cannot reach acme\.zendesk\.com") as caught:
        connector(router).check()
    assert not isinstance(caught.value, AuthError)


# --- reading --------------------------------------------------------------------------------


def test_full_read_starts_at_start_time_and_follows_after_cursor_to_end_of_stream(
    router: respx.MockRouter,
) -> None:
    route = router.get(USERS).mock(
        side_effect=[
            export_page([user(1), user(2)], "c1", end=False),
            export_page([user(3), user(4)], "c2", end=False),
            export_page([user(5)], "c3", end=True),
        ]
    )
    pages = list(connector(router, page_size=2, start_time=1700000000).read("users", None))
    sent = [dict(call.request.url.params) for call in route.calls]
    assert sent == [
        {"per_page": "2", "start_time": "1700000000"},
        {"per_page": "2", "cursor": "c1"},
        {"per_page": "2", "cursor": "c2"},
    ]
    assert [[r["id"] for r in page.records] for page in pages] == [[1, 2], [3, 4], [5]]
    assert [page.state for page in pages] == [
        {"cursor": "c1", "start_time": 1700000000},
        {"cursor": "c2", "start_time": 1700000000},
        {"cursor": "c3", "start_time": 1700000000},
    ]


def test_incremental_read_continues_from_the_saved_cursor(router: respx.MockRouter) -> None:
    route = router.get(USERS).mock(return_value=export_page([], "c9", end=True))
    state = {"cursor": "c9", "start_time": 0}
    pages = list(connector(router).read("users", state))
    assert len(route.calls) == 1
    assert dict(route.calls.last.request.url.params) == {"cursor": "c9", "per_page": "1000"}
    assert pages == [Page(records=[], state={"cursor": "c9", "start_time": 0})]


def test_inactive_users_and_deleted_tickets_are_reported_as_deletions(
    router: respx.MockRouter,
) -> None:
    router.get(USERS).mock(
        return_value=export_page([user(1), user(2, active=False)], "c", end=True)
    )
    tickets = [{"id": 10, "status": "open"}, {"id": 11, "status": "deleted"}]
    router.get(TICKETS).mock(return_value=export_page(tickets, "t", end=True, key="tickets"))
    zendesk = connector(router)
    [users_page] = zendesk.read("users", None)
    assert [r["id"] for r in users_page.records] == [1] and users_page.deleted == ["2"]
    [tickets_page] = zendesk.read("tickets", None)
    assert [r["id"] for r in tickets_page.records] == [10] and tickets_page.deleted == ["11"]


def test_a_repeated_cursor_stops_the_read_instead_of_looping(router: respx.MockRouter) -> None:
    router.get(USERS).mock(
        side_effect=[
            export_page([user(1)], "same", end=False),
            export_page([user(2)], "same", end=False),
        ]
    )
    with pytest.raises(FatalError, match="already"):
        list(connector(router).read("users", None))


def test_a_refused_saved_cursor_says_to_run_a_full_sync(router: respx.MockRouter) -> None:
    router.get(USERS).respond(400, json={"error": "InvalidPaginationParameter"})
    with pytest.raises(FatalError, match="full sync"):
        list(connector(router).read("users", {"cursor": "stale"}))


def test_429_is_retried_after_the_retry_after_seconds(router: respx.MockRouter) -> None:
    waits: list[float] = []
    route = router.get(USERS).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "TooManyRequests"}),
            export_page([user(1)], "c1", end=True),
        ]
    )
    [page] = connector(router, sleep=waits.append).read("users", None)
    assert waits == [7.0]
    assert len(route.calls) == 2 and page.records == [user(1)]


# --- writing --------------------------------------------------------------------------------


def test_update_puts_the_changed_fields_under_user(router: respx.MockRouter) -> None:
    route = router.put("/api/v2/users/42.json").respond(200, json={"user": {"id": 42}})
    change = Change("42", {"name": "Ann Lee", "phone": "+441234567890"}, "key-1")
    [result] = connector(router).write("users", [change])
    assert body_of(route) == {"user": {"name": "Ann Lee", "phone": "+441234567890"}}
    assert result.ok and result.external_id == "42" and result.idempotency_key == "key-1"


def test_create_uses_create_or_update_so_a_retried_create_is_safe(
    router: respx.MockRouter,
) -> None:
    route = router.post("/api/v2/users/create_or_update.json").respond(
        201, json={"user": {"id": 77}}
    )
    changes = [
        Change(None, {"name": "Ann Lee", "email": "ann@example.com", "phone": None}, "k1"),
        Change(None, {"name": "Bo Chan"}, "k2", customer_id="cust-9"),
    ]
    results = list(connector(router).write("users", changes))
    # No idempotency header in Zendesk: the email (or our external_id) is the match key.
    assert body_of(route, 0) == {"user": {"name": "Ann Lee", "email": "ann@example.com"}}
    assert body_of(route, 1) == {"user": {"name": "Bo Chan", "external_id": "crmhub-cust-9"}}
    assert "idempotency-key" not in route.calls[0].request.headers
    assert [(r.ok, r.external_id) for r in results] == [(True, "77"), (True, "77")]


def test_update_of_a_missing_user_fails_without_retry(router: respx.MockRouter) -> None:
    router.put("/api/v2/users/42.json").respond(
        404, json={"error": "RecordNotFound", "description": "Not found"}
    )
    [result] = connector(router).write("users", [Change("42", {"name": "X"}, "k")])
    assert not result.ok and not result.retriable
    assert "does not exist" in (result.error or "")


def test_a_refused_write_names_fields_not_values(router: respx.MockRouter) -> None:
    details = {"email": [{"description": "Email: taken@example.com is already being used"}]}
    router.put("/api/v2/users/42.json").respond(
        422, json={"error": "RecordInvalid", "description": "invalid", "details": details}
    )
    [result] = connector(router).write("users", [Change("42", {"email": "taken@example.com"}, "k")])
    assert not result.ok and not result.retriable
    assert "RecordInvalid (email)" in (result.error or "")
    assert "taken@example.com" not in (result.error or "")


def test_a_write_that_keeps_failing_with_5xx_is_retriable(router: respx.MockRouter) -> None:
    router.put("/api/v2/users/42.json").respond(503, json={"error": "InternalError"})
    [result] = connector(router).write("users", [Change("42", {"name": "X"}, "k")])
    assert not result.ok and result.retriable


# --- erasing --------------------------------------------------------------------------------


def test_erase_soft_deletes_then_permanently_deletes(router: respx.MockRouter) -> None:
    soft = router.delete("/api/v2/users/42.json").respond(200, json={"user": {"id": 42}})
    hard = router.delete("/api/v2/deleted_users/42.json").respond(
        200, json={"deleted_user": {"id": 42}}
    )
    [result] = connector(router).erase(["42"])
    assert result.status == "erased" and result.done
    assert soft.call_count == 1 and hard.call_count == 1


def test_erase_of_an_already_soft_deleted_user_only_deletes_permanently(
    router: respx.MockRouter,
) -> None:
    router.delete("/api/v2/users/42.json").respond(404, json={"error": "RecordNotFound"})
    hard = router.delete("/api/v2/deleted_users/42.json").respond(
        200, json={"deleted_user": {"id": 42}}
    )
    [result] = connector(router).erase(["42"])
    assert result.status == "erased" and hard.call_count == 1


def test_erase_of_a_user_gone_everywhere_is_already_gone(router: respx.MockRouter) -> None:
    router.delete("/api/v2/users/42.json").respond(404, json={"error": "RecordNotFound"})
    router.delete("/api/v2/deleted_users/42.json").respond(404, json={"error": "RecordNotFound"})
    [result] = connector(router).erase(["42"])
    assert result.status == "already_gone" and result.done


def test_erase_refuses_an_id_that_is_not_a_zendesk_id_without_a_request(
    router: respx.MockRouter,
) -> None:
    route = router.route().respond(200, json={})
    [result] = connector(router).erase(["../users/1"])
    assert result.status == "failed" and route.call_count == 0


def test_erase_during_an_outage_is_retriable(router: respx.MockRouter) -> None:
    router.delete("/api/v2/users/42.json").respond(502)
    [result] = connector(router).erase(["42"])
    assert result.status == "failed" and result.retriable

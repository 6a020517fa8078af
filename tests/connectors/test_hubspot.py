"""Tests of the ``hubspot`` connector's requests (crmhub.connectors.hubspot), against respx."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import respx
from pydantic import ValidationError

from crmhub.connector import Change
from crmhub.connectors.hubspot import PROPERTIES, HubspotConfig, HubspotConnector
from crmhub.errors import AuthError, ConnectorError

BASE = "https://api.hubapi.com"
TOKEN = "pat-na1-secret-token-1234"
CONTACTS = "/crm/v3/objects/contacts"
SEARCH = f"{CONTACTS}/search"
T = 1_714_557_600_000  # 2024-05-01T10:00:00Z in ms


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(base_url=BASE, assert_all_called=False)


def connector(
    router: respx.MockRouter, *, sleep: Callable[[float], None] | None = None, **settings: Any
) -> HubspotConnector:
    config = HubspotConfig(**{"access_token": TOKEN, **settings})
    options: dict[str, Any] = {"transport": httpx.MockTransport(router.handler)}
    options["sleep"] = sleep or (lambda _seconds: None)
    return HubspotConnector(config, http_options=options)


def iso(ms: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def contact(contact_id: int, ms: int, **properties: Any) -> dict[str, Any]:
    return {
        "id": str(contact_id),
        "properties": {"lastmodifieddate": iso(ms), "hs_object_id": str(contact_id), **properties},
        "createdAt": iso(ms - 1000),
        "updatedAt": iso(ms),
        "archived": False,
    }


def listing(results: list[dict[str, Any]], after: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"results": results}
    if after is not None:
        body["paging"] = {"next": {"after": after, "link": f"{BASE}{CONTACTS}?after={after}"}}
    return httpx.Response(200, json=body)


def error(status: int, category: str, message: str = "refused") -> httpx.Response:
    body = {"status": "error", "message": message, "correlationId": "c-1", "category": category}
    return httpx.Response(status, json=body)


def body_of(request: httpx.Request) -> Any:
    return orjson.loads(request.content)


def archived_route(router: respx.MockRouter, results: list[dict[str, Any]]) -> None:
    """The archived listing answers ``results``; the active one is routed by the test."""

    def archived(request: httpx.Request) -> httpx.Response:
        assert request.url.params["archived"] == "true"
        return listing(results)

    router.get(CONTACTS, params={"archived": "true"}).mock(side_effect=archived)


# ---------------------------------------------------------------------- check


def test_check_sends_the_bearer_token_and_asks_for_one_contact(router: respx.MockRouter) -> None:
    route = router.get(CONTACTS).mock(return_value=listing([]))
    connector(router).check()
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.url.params["limit"] == "1"


def test_check_on_401_raises_auth_error_naming_the_setting_not_the_token(
    router: respx.MockRouter,
) -> None:
    router.get(CONTACTS).mock(return_value=error(401, "INVALID_AUTHENTICATION"))
    with pytest.raises(AuthError) as caught:
        connector(router).check()
    message = str(caught.value)
    assert "access_token" in message and "401" in message
    assert TOKEN not in message and "secret-token" not in message


def test_check_on_403_names_the_missing_scope(router: respx.MockRouter) -> None:
    router.get(CONTACTS).mock(return_value=error(403, "MISSING_SCOPES"))
    with pytest.raises(AuthError, match=r"crm\.objects\.contacts\.read"):
        connector(router).check()


def test_check_on_an_unreachable_host_says_it_cannot_be_reached(router: respx.MockRouter) -> None:
    router.get(CONTACTS).mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(ConnectorError) as caught:
        connector(router, max_attempts=2).check()
    assert not isinstance(caught.value, AuthError)
    assert "cannot reach HubSpot at api.hubapi.com" in str(caught.value)


def test_429_with_retry_after_is_waited_for_and_retried(router: respx.MockRouter) -> None:
    waits: list[float] = []
    limited = error(429, "RATE_LIMITS")
    limited.headers["Retry-After"] = "7"
    route = router.get(CONTACTS).mock(side_effect=[limited, listing([])])
    hubspot = connector(router, sleep=waits.append)
    hubspot.check()
    assert waits == [7.0]
    assert route.call_count == 2 and hubspot.retries == 1


# ---------------------------------------------------------------------- full read


def test_a_full_read_pages_the_list_and_starts_the_cursor_before_listing(
    router: respx.MockRouter,
) -> None:
    newest = router.post(SEARCH).mock(
        return_value=httpx.Response(200, json={"total": 5, "results": [contact(4, T)]})
    )
    pages = {
        None: listing([contact(1, T - 50), contact(2, T - 40)], after="3"),
        "3": listing([contact(3, T - 30), contact(4, T)], after="5"),
        "5": listing([contact(5, T - 10)]),
    }
    active = router.get(CONTACTS, params={"archived": "false"}).mock(
        side_effect=lambda request: pages[request.url.params.get("after")]
    )
    gone = {**contact(9, T - 5), "archived": True, "archivedAt": iso(T - 2)}
    archived_route(router, [gone])
    read = list(connector(router, page_size=2).read("contacts", None))

    probe = body_of(newest.calls.last.request)
    assert probe["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}]
    assert probe["limit"] == 1
    params = [call.request.url.params for call in active.calls]
    assert [p.get("after") for p in params] == [None, "3", "5"]
    assert {p["limit"] for p in params} == {"2"}
    assert params[0]["properties"].split(",") == list(PROPERTIES)
    assert [[r["id"] for r in p.records] for p in read[:3]] == [["1", "2"], ["3", "4"], ["5"]]
    assert read[0].state == {"full": {"since": T, "after": "3", "ids_at": []}}
    assert read[1].state == {"full": {"since": T, "after": "5", "ids_at": ["4"]}}
    assert read[2].state == {"lastmodifieddate": T, "ids_at": ["4"], "archivedAt": None}
    assert read[3].deleted == ["9"] and read[3].records == []
    assert read[3].state == {"lastmodifieddate": T, "ids_at": ["4"], "archivedAt": T - 2}


def test_a_full_read_resumes_at_the_page_after_its_state(router: respx.MockRouter) -> None:
    probe = router.post(SEARCH).mock(return_value=httpx.Response(200, json={"results": []}))
    active = router.get(CONTACTS, params={"archived": "false"}).mock(
        return_value=listing([contact(5, T - 10)])
    )
    archived_route(router, [])
    state = {"full": {"since": T, "after": "5", "ids_at": ["4"]}}
    read = list(connector(router).read("contacts", state))
    assert active.calls.last.request.url.params["after"] == "5"
    assert not probe.called
    assert read[0].state == {"lastmodifieddate": T, "ids_at": ["4"], "archivedAt": None}


def test_the_list_asks_at_most_100_even_for_bigger_pages(router: respx.MockRouter) -> None:
    router.post(SEARCH).mock(return_value=httpx.Response(200, json={"results": []}))
    active = router.get(CONTACTS, params={"archived": "false"}).mock(return_value=listing([]))
    archived_route(router, [])
    list(connector(router, page_size=200).read("contacts", None))
    assert active.calls.last.request.url.params["limit"] == "100"
    with pytest.raises(ValidationError):
        HubspotConfig(access_token=TOKEN, page_size=201)


# ---------------------------------------------------------------------- incremental read


def test_an_incremental_read_searches_from_the_state_and_skips_ids_read_at_it(
    router: respx.MockRouter,
) -> None:
    answers = {
        None: {
            "total": 4,
            "results": [contact(4, T), contact(6, T), contact(7, T + 5)],
            "paging": {"next": {"after": "3"}},
        },
        "3": {"total": 4, "results": [contact(8, T + 9)]},
    }
    search = router.post(SEARCH).mock(
        side_effect=lambda request: httpx.Response(200, json=answers[body_of(request).get("after")])
    )
    older = {**contact(20, T - 9), "archived": True, "archivedAt": iso(T - 100)}
    newer = {**contact(21, T - 9), "archived": True, "archivedAt": iso(T + 50)}
    archived_route(router, [older, newer])
    state = {"lastmodifieddate": T, "ids_at": ["4"], "archivedAt": T - 1}
    read = list(connector(router, page_size=3).read("contacts", state))

    first, second = (body_of(call.request) for call in search.calls)
    gte = [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(T)}]
    assert first["filterGroups"] == [{"filters": gte}]
    assert first["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert first["limit"] == 3 and first["properties"] == list(PROPERTIES)
    assert "after" not in first
    # Paging keeps the query: the offset counts in its results.
    assert second["after"] == "3" and second["filterGroups"] == first["filterGroups"]
    assert [[r["id"] for r in p.records] for p in read[:2]] == [["6", "7"], ["8"]]
    assert read[0].state == {"lastmodifieddate": T + 5, "ids_at": ["7"], "archivedAt": T - 1}
    assert read[1].state == {"lastmodifieddate": T + 9, "ids_at": ["8"], "archivedAt": T - 1}
    assert read[2].deleted == ["21"]
    assert read[2].state == {"lastmodifieddate": T + 9, "ids_at": ["8"], "archivedAt": T + 50}


def test_the_search_starts_again_from_the_last_instant_at_the_10000_limit(
    router: respx.MockRouter,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = body_of(request)
        since = int(body["filterGroups"][0]["filters"][0]["value"])
        if since == T:
            results = [contact(1, T), contact(2, T + 1)]
            return httpx.Response(
                200, json={"results": results, "paging": {"next": {"after": "10000"}}}
            )
        assert since == T + 1 and "after" not in body
        return httpx.Response(200, json={"results": [contact(2, T + 1), contact(3, T + 2)]})

    search = router.post(SEARCH).mock(side_effect=answer)
    archived_route(router, [])
    state = {"lastmodifieddate": T, "ids_at": [], "archivedAt": None}
    read = list(connector(router, page_size=2).read("contacts", state))
    assert [r["id"] for p in read for r in p.records] == ["1", "2", "3"]
    assert search.call_count == 2


def test_a_state_from_state_since_asks_from_that_moment(router: respx.MockRouter) -> None:
    since = datetime(2024, 5, 1, 10, tzinfo=UTC)
    hubspot = connector(router)
    assert hubspot.state_since("contacts", since) == {
        "lastmodifieddate": T,
        "ids_at": [],
        "archivedAt": T,
    }


# ---------------------------------------------------------------------- write


def test_write_sends_batch_update_and_upsert_bodies_and_matches_the_answers(
    router: respx.MockRouter,
) -> None:
    update = router.post(f"{CONTACTS}/batch/update").mock(
        return_value=httpx.Response(
            207,
            json={
                "status": "COMPLETE",
                "results": [contact(123, T, lastname="Smith")],  # no trace id: matched by id
                "numErrors": 1,
                "errors": [
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "message": "Could not get some CONTACT objects",
                        "context": {"ids": ["456"]},
                    }
                ],
            },
        )
    )
    upsert = router.post(f"{CONTACTS}/batch/upsert").mock(
        return_value=httpx.Response(
            200,
            json={
                "status": "COMPLETE",
                "results": [
                    {**contact(789, T, email="new@example.org"), "objectWriteTraceId": "k3"}
                ],
            },
        )
    )
    changes = [
        Change("123", {"lastname": "Smith", "date_of_birth": date(1980, 1, 2)}, "k1"),
        Change("456", {"phone": None}, "k2"),
        Change(None, {"email": "New@Example.org", "firstname": "Nia"}, "k3"),
        Change(None, {"firstname": "No email"}, "k4"),
    ]
    results = {r.idempotency_key: r for r in connector(router).write("contacts", changes)}

    assert body_of(update.calls.last.request) == {
        "inputs": [
            {
                "id": "123",
                "properties": {"lastname": "Smith", "date_of_birth": "1980-01-02"},
                "objectWriteTraceId": "k1",
            },
            {"id": "456", "properties": {"phone": ""}, "objectWriteTraceId": "k2"},
        ]
    }
    assert body_of(upsert.calls.last.request) == {
        "inputs": [
            {
                "idProperty": "email",
                "id": "New@Example.org",
                "properties": {"email": "New@Example.org", "firstname": "Nia"},
                "objectWriteTraceId": "k3",
            }
        ]
    }
    assert set(results) == {"k1", "k2", "k3", "k4"}
    assert results["k1"].ok and results["k1"].external_id == "123"
    assert not results["k2"].ok and not results["k2"].retriable
    assert results["k3"].ok and results["k3"].external_id == "789"
    assert not results["k4"].ok and "email" in (results["k4"].error or "")


def test_write_batches_at_most_100_and_never_one_id_twice(router: respx.MockRouter) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        inputs = body_of(request)["inputs"]
        return httpx.Response(200, json={"results": [contact(int(i["id"]), T) for i in inputs]})

    route = router.post(f"{CONTACTS}/batch/update").mock(side_effect=echo)
    changes = [Change(str(n), {"city": "Leeds"}, f"k{n}") for n in range(1, 151)]
    changes.append(Change("120", {"city": "York"}, "again"))  # 120 waits in the 2nd batch
    results = list(connector(router).write("contacts", changes))
    sizes = [len(body_of(call.request)["inputs"]) for call in route.calls]
    assert sizes == [100, 50, 1]
    assert len(results) == 151 and all(r.ok for r in results)


def test_a_batch_refused_whole_is_sent_again_change_by_change(router: respx.MockRouter) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        inputs = body_of(request)["inputs"]
        if len(inputs) > 1 or inputs[0]["properties"].get("email") == "not-an-email":
            return error(400, "VALIDATION_ERROR", "Property values were not valid: not-an-email")
        return httpx.Response(200, json={"results": [contact(int(inputs[0]["id"]), T)]})

    route = router.post(f"{CONTACTS}/batch/update").mock(side_effect=answer)
    changes = [
        Change("1", {"email": "good@example.org"}, "good"),
        Change("2", {"email": "not-an-email"}, "bad"),
    ]
    results = {r.idempotency_key: r for r in connector(router).write("contacts", changes)}
    assert route.call_count == 3
    assert results["good"].ok
    assert not results["bad"].ok and not results["bad"].retriable
    assert "VALIDATION_ERROR" in (results["bad"].error or "")
    assert "not-an-email" not in (results["bad"].error or "")


def test_a_write_failing_after_retries_is_retriable(router: respx.MockRouter) -> None:
    router.post(f"{CONTACTS}/batch/update").mock(return_value=error(503, "INTERNAL_ERROR"))
    changes = [Change("1", {"city": "Leeds"}, "k1")]
    [result] = connector(router, max_attempts=2).write("contacts", changes)
    assert not result.ok and result.retriable


def test_a_write_with_a_refused_token_stops_with_auth_error(router: respx.MockRouter) -> None:
    router.post(f"{CONTACTS}/batch/update").mock(return_value=error(401, "INVALID_AUTHENTICATION"))
    with pytest.raises(AuthError) as caught:
        list(connector(router).write("contacts", [Change("1", {"city": "Leeds"}, "k1")]))
    assert TOKEN not in str(caught.value)


# ---------------------------------------------------------------------- erase


def test_erase_gdpr_deletes_and_counts_404_as_already_gone(router: respx.MockRouter) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        object_id = body_of(request)["objectId"]
        return httpx.Response(204) if object_id != "2" else error(404, "OBJECT_NOT_FOUND")

    route = router.post(f"{CONTACTS}/gdpr-delete").mock(side_effect=answer)
    results = list(connector(router).erase(["1", "2", "someone@example.org"]))
    assert [body_of(call.request) for call in route.calls] == [
        {"objectId": "1"},
        {"objectId": "2"},
        {"objectId": "someone@example.org", "idProperty": "email"},
    ]
    assert [r.status for r in results] == ["erased", "already_gone", "erased"]
    assert all(r.done for r in results)


def test_erase_failing_after_retries_is_retriable(router: respx.MockRouter) -> None:
    router.post(f"{CONTACTS}/gdpr-delete").mock(return_value=error(500, "INTERNAL_ERROR"))
    [result] = connector(router, max_attempts=2).erase(["1"])
    assert result.status == "failed" and result.retriable and not result.done

"""The typeform connector's requests, against respx: the bearer token, oldest-first paging with
``sort`` then ``after``, incremental ``since`` with ties at one second, errors and retries,
erasure across forms, and signed webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import respx

from crmhub.connector import Page
from crmhub.connectors.typeform import TypeformConfig, TypeformConnector, answers_by_ref
from crmhub.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    RetriableError,
    WebhookSignatureError,
)
from crmhub.plugins import Plugins

BASE = "https://api.typeform.test"
TOKEN = "tfp_9Xq2secretTOKENvalue"
SECRET = "whsec-typeform-test"


def _item(token: str, submitted_at: str, **answers: Any) -> dict[str, Any]:
    kinds = {
        "email": "email",
        "newsletter": "boolean",
        "country": "choice",
        "phone": "phone_number",
    }
    listed = []
    for ref, value in answers.items():
        kind = kinds.get(ref, "text")
        listed.append(
            {
                "field": {"id": f"id_{ref}", "type": "short_text", "ref": ref},
                "type": kind,
                kind: {"label": value} if kind == "choice" else value,
            }
        )
    return {
        "landing_id": token,
        "token": token,
        "response_id": token,
        "landed_at": submitted_at,
        "submitted_at": submitted_at,
        "metadata": {"platform": "other"},
        "hidden": {},
        "answers": listed,
    }


def _page(*items: dict[str, Any], total: int | None = None) -> httpx.Response:
    count = len(items) if total is None else total
    return httpx.Response(200, json={"total_items": count, "page_count": 1, "items": list(items)})


def _connector(
    router: respx.MockRouter,
    sleep: Callable[[float], None] | None = None,
    **settings: Any,
) -> TypeformConnector:
    values: dict[str, Any] = {"base_url": BASE, "token": TOKEN, "forms": ["F1"], "page_size": 2}
    values.update(settings)
    options: dict[str, Any] = {"transport": httpx.MockTransport(router.handler)}
    options["sleep"] = sleep or (lambda seconds: None)
    return TypeformConnector(TypeformConfig(**values), http_options=options)


def _form(router: respx.MockRouter, form_id: str = "F1", title: str = "Contact us") -> None:
    router.get(f"/forms/{form_id}").mock(
        return_value=httpx.Response(200, json={"id": form_id, "title": title, "fields": []})
    )


def test_registered_as_a_plugin_that_reads_erases_and_takes_webhooks_but_never_writes() -> None:
    assert Plugins().connector("typeform") is TypeformConnector
    assert TypeformConnector.capabilities() == ("read", "erase", "webhook")
    assert TypeformConnector.streams["responses"].primary_key == "token"
    assert TypeformConnector.streams["submissions"].kind == "activity"


def test_page_size_is_bounded_by_the_api_limit() -> None:
    with pytest.raises(ValueError):
        TypeformConfig(token=TOKEN, page_size=1001)
    assert TypeformConfig(token=TOKEN).base_url == "https://api.typeform.com"


def test_answers_by_ref_takes_each_answer_by_its_type() -> None:
    answers = [
        {"field": {"id": "a", "ref": "email"}, "type": "email", "email": "a@example.com"},
        {"field": {"id": "b", "ref": "country"}, "type": "choice", "choice": {"label": "GB"}},
        {"field": {"id": "c", "ref": "opt"}, "type": "boolean", "boolean": False},
        {"field": {"id": "d"}, "type": "choices", "choices": {"labels": ["x", "y"]}},
        {"field": {"id": "e", "ref": "n"}, "type": "number", "number": 7},
    ]
    assert answers_by_ref(answers) == {
        "email": "a@example.com",
        "country": "GB",
        "opt": False,
        "d": ["x", "y"],
        "n": 7,
    }
    assert answers_by_ref(None) == {}


def test_full_read_pages_oldest_first_with_sort_then_after_and_the_bearer_token() -> None:
    router = respx.MockRouter(base_url=BASE, assert_all_called=True)
    _form(router)
    responses = router.get("/forms/F1/responses")
    responses.side_effect = [
        _page(
            _item("t1", "2024-05-01T09:00:00Z", email="a@example.com"),
            _item("t2", "2024-05-01T09:30:00Z", email="b@example.com"),
            total=3,
        ),
        _page(_item("t3", "2024-05-01T10:00:00Z", email="c@example.com", country="GB")),
    ]
    pages = list(_connector(router).read("responses", None))

    first, second = (call.request for call in responses.calls)
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert dict(first.url.params) == {"page_size": "2", "sort": "submitted_at,asc"}
    assert dict(second.url.params) == {"page_size": "2", "after": "t2"}  # no sort with after
    assert [[r["token"] for r in page.records] for page in pages] == [["t1", "t2"], ["t3"]]
    record = pages[1].records[0]
    assert record["form_id"] == "F1" and record["form_title"] == "Contact us"
    assert record["answers_by_ref"] == {"email": "c@example.com", "country": "GB"}
    assert record["answers"][0]["field"]["ref"] == "email"  # the raw item is kept
    # Each page's state covers exactly the records up to it.
    assert pages[0].state == {"forms": {"F1": {"since": "2024-05-01T09:30:00Z", "seen": ["t2"]}}}
    assert pages[1].state == {"forms": {"F1": {"since": "2024-05-01T10:00:00Z", "seen": ["t3"]}}}


def test_a_full_last_page_ends_when_the_total_is_reached() -> None:
    router = respx.MockRouter(base_url=BASE)
    _form(router)
    responses = router.get("/forms/F1/responses")
    responses.mock(
        return_value=_page(
            _item("t1", "2024-05-01T09:00:00Z"), _item("t2", "2024-05-01T09:00:01Z"), total=2
        )
    )
    pages = list(_connector(router).read("submissions", None))
    assert responses.call_count == 1
    assert sum(len(page.records) for page in pages) == 2


def test_incremental_read_asks_since_the_saved_second_and_skips_the_tokens_seen_there() -> None:
    router = respx.MockRouter(base_url=BASE)
    _form(router)
    responses = router.get("/forms/F1/responses")
    responses.mock(
        return_value=_page(
            _item("t2", "2024-05-01T10:00:00Z"),  # read by the last run
            _item("t3", "2024-05-01T10:00:00Z"),  # same second, new
            _item("t4", "2024-05-01T10:00:05Z"),
            total=3,
        )
    )
    state = {"forms": {"F1": {"since": "2024-05-01T10:00:00Z", "seen": ["t1", "t2"]}}}
    pages = list(_connector(router, page_size=10).read("responses", state))

    params = responses.calls.last.request.url.params
    assert params["since"] == "2024-05-01T10:00:00"
    assert params["sort"] == "submitted_at,asc"
    assert [r["token"] for r in pages[0].records] == ["t3", "t4"]
    assert pages[0].state == {"forms": {"F1": {"since": "2024-05-01T10:00:05Z", "seen": ["t4"]}}}


def test_ties_at_the_last_second_are_remembered_together() -> None:
    router = respx.MockRouter(base_url=BASE)
    _form(router)
    router.get("/forms/F1/responses").mock(
        return_value=_page(_item("b", "2024-05-01T10:00:00Z"), _item("a", "2024-05-01T10:00:00Z"))
    )
    [page] = list(_connector(router, page_size=10).read("responses", None))
    assert page.state == {"forms": {"F1": {"since": "2024-05-01T10:00:00Z", "seen": ["a", "b"]}}}


def test_nothing_new_yields_no_page_and_keeps_the_state() -> None:
    router = respx.MockRouter(base_url=BASE)
    form = router.get("/forms/F1")
    router.get("/forms/F1/responses").mock(return_value=_page(_item("t2", "2024-05-01T10:00:00Z")))
    state = {"forms": {"F1": {"since": "2024-05-01T10:00:00Z", "seen": ["t2"]}}}
    assert list(_connector(router).read("responses", state)) == []
    assert not form.called  # the title is fetched only for records


def test_without_configured_forms_every_form_is_listed_and_its_title_reused() -> None:
    router = respx.MockRouter(base_url=BASE)
    forms = router.get("/forms")
    forms.mock(
        return_value=httpx.Response(
            200,
            json={
                "total_items": 2,
                "page_count": 1,
                "items": [{"id": "F1", "title": "Contact us"}, {"id": "F2", "title": "Feedback"}],
            },
        )
    )
    router.get("/forms/F1/responses").mock(return_value=_page(_item("t1", "2024-05-01T10:00:00Z")))
    router.get("/forms/F2/responses").mock(return_value=_page(_item("t9", "2024-04-01T10:00:00Z")))
    pages = list(_connector(router, forms=[]).read("submissions", None))

    assert dict(forms.calls.last.request.url.params) == {"page": "1", "page_size": "200"}
    assert [(r["form_id"], r["form_title"]) for p in pages for r in p.records] == [
        ("F1", "Contact us"),
        ("F2", "Feedback"),
    ]
    # The second form's page carries the first form's finished position too.
    assert pages[1].state is not None and set(pages[1].state["forms"]) == {"F1", "F2"}


def test_a_missing_form_stops_the_read_naming_the_form() -> None:
    router = respx.MockRouter(base_url=BASE)
    router.get("/forms/NOPE/responses").mock(
        return_value=httpx.Response(
            404, json={"code": "FORM_NOT_FOUND", "description": "Non existing form"}
        )
    )
    with pytest.raises(FatalError, match="'NOPE' does not exist"):
        list(_connector(router, forms=["NOPE"]).read("responses", None))


def test_429_is_retried_after_the_retry_after_seconds() -> None:
    router = respx.MockRouter(base_url=BASE)
    _form(router)
    router.get("/forms/F1/responses").side_effect = [
        httpx.Response(429, headers={"Retry-After": "7"}, json={"code": "RATE_LIMIT"}),
        _page(_item("t1", "2024-05-01T10:00:00Z")),
    ]
    waits: list[float] = []
    pages = list(_connector(router, sleep=waits.append).read("responses", None))
    assert waits == [7.0]
    assert [r["token"] for r in pages[0].records] == ["t1"]


def test_check_reports_a_refused_token_clearly_without_the_token() -> None:
    router = respx.MockRouter(base_url=BASE)
    router.get("/forms").mock(
        return_value=httpx.Response(
            401,
            json={
                "code": "AUTHENTICATION_FAILED",
                "description": "Authentication credentials not found on the Request Headers",
            },
        )
    )
    with pytest.raises(AuthError) as caught:
        _connector(router).check()
    message = str(caught.value)
    assert "refused the personal access token" in message and "HTTP 401" in message
    assert TOKEN not in message
    assert caught.value.connector == "typeform"


def test_check_fetches_each_configured_form() -> None:
    router = respx.MockRouter(base_url=BASE)
    router.get("/forms").mock(return_value=httpx.Response(200, json={"items": []}))
    router.get("/forms/F1").mock(
        return_value=httpx.Response(404, json={"code": "FORM_NOT_FOUND", "description": "x"})
    )
    with pytest.raises(FatalError, match="'F1' does not exist"):
        _connector(router).check()


def test_check_says_when_the_host_cannot_be_reached() -> None:
    router = respx.MockRouter(base_url=BASE)
    router.get("/forms").mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(ConnectorError) as caught:
        _connector(router, max_attempts=2).check()
    assert "cannot reach the Typeform API at api.typeform.test" in str(caught.value)
    assert not isinstance(caught.value, RetriableError)


def test_erase_looks_in_each_form_deletes_what_it_finds_and_reports_the_rest_gone() -> None:
    router = respx.MockRouter(base_url=BASE)
    found = {"F1": ["a"], "F2": ["b"]}

    def listed(request: httpx.Request, form_id: str) -> httpx.Response:
        asked = request.url.params["included_response_ids"].split(",")
        return _page(*(_item(t, "2024-05-01T10:00:00Z") for t in found[form_id] if t in asked))

    router.get(path__regex=r"^/forms/(?P<form_id>F\d)/responses$").mock(side_effect=listed)
    deletes = router.delete(path__regex=r"^/forms/F\d/responses$")
    deletes.mock(return_value=httpx.Response(200))

    connector = _connector(router, forms=["F1", "F2"])
    results = list(connector.erase(["a", "b", "c"]))

    assert [(r.external_id, r.status) for r in results] == [
        ("a", "erased"),
        ("b", "erased"),
        ("c", "already_gone"),
    ]
    looked = [call.request.url for call in router.calls if call.request.method == "GET"]
    assert looked[0].params["included_response_ids"] == "a,b,c"
    assert looked[1].params["included_response_ids"] == "b,c"  # only what F1 did not hold
    assert [
        (c.request.url.path, c.request.url.params["included_response_ids"]) for c in deletes.calls
    ] == [
        ("/forms/F1/responses", "a"),
        ("/forms/F2/responses", "b"),
    ]


def test_erase_skips_a_deleted_form_and_fails_retriably_when_the_api_is_down() -> None:
    router = respx.MockRouter(base_url=BASE)
    router.get("/forms/GONE/responses").mock(
        return_value=httpx.Response(404, json={"code": "FORM_NOT_FOUND", "description": "x"})
    )
    router.get("/forms/DOWN/responses").mock(
        return_value=httpx.Response(503, json={"code": "INTERNAL", "description": "x"})
    )
    gone = list(_connector(router, forms=["GONE"]).erase(["a"]))
    assert [(r.status, r.done) for r in gone] == [("already_gone", True)]

    down = list(_connector(router, forms=["GONE", "DOWN"], max_attempts=2).erase(["a"]))
    assert [(r.status, r.retriable) for r in down] == [("failed", True)]
    assert down[0].error is not None and TOKEN not in down[0].error


# --------------------------------------------------------------------------- webhooks


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {"Typeform-Signature": "sha256=" + base64.b64encode(digest).decode()}


_SUBMITTED = 1_714_557_600  # 2024-05-01T10:00:00Z


def _delivery() -> bytes:
    return orjson.dumps(
        {
            "event_id": "01HEVENT",
            "event_type": "form_response",
            "form_response": {
                "form_id": "F1",
                "token": "t7",
                "landed_at": "2024-05-01T09:58:00Z",
                "submitted_at": "2024-05-01T10:00:00Z",
                "hidden": {"person_key": "P1"},
                "definition": {"id": "F1", "title": "Contact us", "fields": []},
                "answers": _item("t7", "x", email="ann@example.com")["answers"],
            },
        }
    )


def test_a_signed_delivery_becomes_a_response_and_a_submission() -> None:
    body = _delivery()
    connector = _connector(respx.MockRouter(base_url=BASE), webhook_secret=SECRET)
    deliveries = connector.webhook(
        {"typeform-signature": _signed(body)["Typeform-Signature"]}, body, now=_SUBMITTED + 60
    )
    assert [(d.stream, d.event_id) for d in deliveries] == [
        ("responses", "01HEVENT"),
        ("submissions", "01HEVENT"),
    ]
    record = deliveries[0].page.records[0]
    assert record["token"] == "t7" and record["form_title"] == "Contact us"
    assert record["answers_by_ref"] == {"email": "ann@example.com"}
    assert record["hidden"] == {"person_key": "P1"}
    assert deliveries[1].page.state is None and isinstance(deliveries[1].page, Page)


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (_signed(_delivery(), "another-secret"), _delivery(), "does not match"),
        (_signed(_delivery()), _delivery().replace(b"ann@", b"eve@"), "does not match"),
        ({}, _delivery(), "no Typeform-Signature"),
        ({"Typeform-Signature": "sha256=bm90IGl0"}, _delivery(), "does not match"),
    ],
    ids=["wrong-secret", "tampered-body", "missing-header", "garbage"],
)
def test_unverified_deliveries_are_refused(
    headers: dict[str, str], body: bytes, reason: str
) -> None:
    connector = _connector(respx.MockRouter(base_url=BASE), webhook_secret=SECRET)
    with pytest.raises(WebhookSignatureError, match=reason):
        connector.webhook(headers, body, now=_SUBMITTED)


def test_an_old_submission_is_refused_as_a_replay_unless_the_tolerance_is_off() -> None:
    body = _delivery()
    connector = _connector(respx.MockRouter(base_url=BASE), webhook_secret=SECRET)
    with pytest.raises(WebhookSignatureError, match="beyond the tolerance of 300 s"):
        connector.webhook(_signed(body), body, now=_SUBMITTED + 301)
    relaxed = _connector(
        respx.MockRouter(base_url=BASE), webhook_secret=SECRET, webhook_tolerance=None
    )
    assert len(relaxed.webhook(_signed(body), body, now=_SUBMITTED + 86_400)) == 2


def test_without_a_secret_no_delivery_is_accepted_and_other_events_are_ignored() -> None:
    body = _delivery()
    with pytest.raises(WebhookSignatureError, match="no webhook_secret"):
        _connector(respx.MockRouter(base_url=BASE)).webhook(_signed(body), body)
    other = orjson.dumps({"event_id": "e", "event_type": "form_deleted"})
    connector = _connector(respx.MockRouter(base_url=BASE), webhook_secret=SECRET)
    assert connector.webhook(_signed(other), other) == []


def test_retriable_errors_surface_as_retriable() -> None:
    router = respx.MockRouter(base_url=BASE)
    router.get("/forms/F1/responses").mock(return_value=httpx.Response(500))
    with pytest.raises(RetriableError):
        list(_connector(router, max_attempts=2).read("responses", None))

"""Unit tests of the ``stripe`` connector's requests (crmhub.connectors.stripe), against respx."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest
import respx
from pydantic import SecretStr

from crmhub.connector import Change, Page
from crmhub.connectors.stripe import StripeConfig, StripeConnector, form_fields
from crmhub.errors import AuthError, ConnectorError, FatalError, WebhookSignatureError
from crmhub.mapping import load_mapping
from crmhub.model import Activity, Person

BASE = "https://api.stripe.test"
KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
SECRET = "whsec_test_secret"
EVENT_TYPES = ["customer.updated", "customer.deleted"]


def stripe_list(data: list[dict[str, Any]], has_more: bool = False) -> httpx.Response:
    return httpx.Response(
        200, json={"object": "list", "data": data, "has_more": has_more, "url": "/v1/x"}
    )


def stripe_error(
    status: int, kind: str, message: str, code: str | None = None, **extra: Any
) -> httpx.Response:
    error: dict[str, Any] = {"type": kind, "message": message, **extra}
    if code:
        error["code"] = code
    return httpx.Response(status, json={"error": error})


def customer(object_id: str, created: int, **fields: Any) -> dict[str, Any]:
    return {"id": object_id, "object": "customer", "created": created, **fields}


def event(event_id: str, kind: str, obj: dict[str, Any], created: int = 1) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "created": created,
        "type": kind,
        "data": {"object": obj},
    }


def params(request: httpx.Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in request.url.params.multi_items():
        out.setdefault(name, []).append(value)
    return out


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(base_url=BASE, assert_all_called=False)


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def make(router: respx.MockRouter, waits: list[float]) -> Callable[..., StripeConnector]:
    def build(**settings: Any) -> StripeConnector:
        settings.setdefault("api_key", SecretStr(KEY))
        settings.setdefault("base_url", BASE)
        config = StripeConfig(**settings)
        return StripeConnector(
            config,
            name="billing",
            http_options={"transport": httpx.MockTransport(router.handler), "sleep": waits.append},
        )

    return build


def fresh_state(**overrides: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "created": 400,
        "at": ["cus_a"],
        "events": {"after": "evt_1", "checked": time.time()},
    }
    state.update(overrides)
    return state


# --------------------------------------------------------------------------- check


def test_requests_carry_the_key_as_a_bearer_token(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    route = router.get("/v1/customers").mock(return_value=stripe_list([]))
    make().check()
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert params(request) == {"limit": ["1"]}


def test_check_with_a_wrong_key_is_an_auth_error_that_does_not_show_the_key(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    router.get("/v1/customers").mock(
        return_value=stripe_error(401, "invalid_request_error", f"Invalid API Key provided: {KEY}")
    )
    with pytest.raises(AuthError) as caught:
        make().check()
    message = str(caught.value)
    assert "api_key" in message and "401" in message
    assert KEY not in message and KEY[-8:] not in message


def test_check_of_an_unreachable_host_says_so(
    router: respx.MockRouter, make: Callable[..., StripeConnector], waits: list[float]
) -> None:
    router.get("/v1/customers").mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(ConnectorError) as caught:
        make(max_attempts=2).check()
    assert not isinstance(caught.value, AuthError)
    assert "cannot reach" in str(caught.value) and "api.stripe.test" in str(caught.value)
    assert len(waits) == 1  # retried once before giving up


def test_rate_limit_is_retried_after_the_time_stripe_asks_for(
    router: respx.MockRouter, make: Callable[..., StripeConnector], waits: list[float]
) -> None:
    router.get("/v1/customers").mock(
        side_effect=[
            httpx.Response(
                429,
                headers={"Retry-After": "7"},
                json={"error": {"type": "invalid_request_error", "code": "rate_limit"}},
            ),
            stripe_list([]),
        ]
    )
    make().check()
    assert waits == [7.0]


# --------------------------------------------------------------------------- read


def test_full_read_takes_the_newest_event_then_pages_and_moves_the_mark_only_at_the_end(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    events = router.get("/v1/events").mock(
        return_value=stripe_list([event("evt_9", "customer.updated", customer("cus_z", 1))], True)
    )
    everyone = [
        customer("cus_e", 500),
        customer("cus_d", 400),
        customer("cus_c", 400),
        customer("cus_b", 300),
        customer("cus_a", 200),
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("starting_after")
        start = 0 if after is None else [c["id"] for c in everyone].index(after) + 1
        limit = int(request.url.params["limit"])
        page = everyone[start : start + limit]
        return stripe_list(page, has_more=start + limit < len(everyone))

    customers = router.get("/v1/customers").mock(side_effect=answer)
    pages = list(make(page_size=2).read("customers", None))

    assert params(events.calls.last.request) == {"limit": ["1"], "types[]": EVENT_TYPES}
    sent = [params(call.request) for call in customers.calls]
    assert sent == [
        {"limit": ["2"]},
        {"limit": ["2"], "starting_after": ["cus_d"]},
        {"limit": ["2"], "starting_after": ["cus_b"]},
    ]
    assert [[r["id"] for r in page.records] for page in pages] == [
        ["cus_e", "cus_d"],
        ["cus_c", "cus_b"],
        ["cus_a"],
    ]
    assert [page.state["created"] for page in pages if page.state] == [None, None, 500]
    assert pages[0].state and pages[0].state["pass"] == {
        "before": 400,
        "skip": ["cus_d"],
        "high": 500,
        "high_ids": ["cus_e"],
    }
    last = pages[-1].state
    assert last is not None and "pass" not in last
    assert last["at"] == ["cus_e"] and last["events"]["after"] == "evt_9"


def test_a_read_resumed_after_a_crash_continues_at_the_last_stored_second(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    router.get("/v1/events").mock(return_value=stripe_list([]))
    customers = router.get("/v1/customers").mock(
        return_value=stripe_list(
            [customer("cus_d", 400), customer("cus_c", 400), customer("cus_b", 300)]
        )
    )
    running = {"before": 400, "skip": ["cus_d"], "high": 500, "high_ids": ["cus_e"]}
    state = fresh_state(created=None, at=[], **{"pass": running})
    pages = list(make().read("customers", state))

    assert params(customers.calls.last.request) == {"limit": ["100"], "created[lte]": ["400"]}
    assert [r["id"] for r in pages[-1].records] == ["cus_c", "cus_b"]  # cus_d was stored
    assert pages[-1].state is not None
    assert pages[-1].state["created"] == 500 and pages[-1].state["at"] == ["cus_e"]


def test_incremental_read_applies_events_oldest_first_then_lists_new_customers(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    blocks = {
        # Each ending_before page is the block just newer than its anchor, newest first.
        "evt_1": stripe_list(
            [
                event("evt_3", "customer.deleted", customer("cus_x", 100)),
                event("evt_2", "customer.updated", customer("cus_y", 100, name="Old")),
            ],
            has_more=True,
        ),
        "evt_3": stripe_list([event("evt_4", "customer.updated", customer("cus_y", 100))]),
    }
    events = router.get("/v1/events").mock(
        side_effect=lambda request: blocks[request.url.params["ending_before"]]
    )
    customers = router.get("/v1/customers").mock(
        return_value=stripe_list(
            [customer("cus_new", 450), customer("cus_b", 400), customer("cus_a", 400)]
        )
    )
    pages = list(make().read("customers", fresh_state()))

    assert [params(call.request) for call in events.calls] == [
        {"limit": ["100"], "types[]": EVENT_TYPES, "ending_before": ["evt_1"]},
        {"limit": ["100"], "types[]": EVENT_TYPES, "ending_before": ["evt_3"]},
    ]
    assert params(customers.calls.last.request) == {"limit": ["100"], "created[gte]": ["400"]}
    first, second, listed = pages
    assert [r["id"] for r in first.records] == ["cus_y"] and first.deleted == ["cus_x"]
    assert first.state and first.state["events"]["after"] == "evt_3"
    assert second.state and second.state["events"]["after"] == "evt_4"
    assert [r["id"] for r in listed.records] == ["cus_new", "cus_b"]  # cus_a was stored
    assert listed.state == {
        "created": 450,
        "at": ["cus_new"],
        "events": {"after": "evt_4", "checked": pytest.approx(time.time(), abs=60)},
    }


def test_invoices_follow_the_invoice_events(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    paid = {"id": "in_1", "object": "invoice", "created": 10, "status": "paid"}
    events = router.get("/v1/events").mock(
        return_value=stripe_list(
            [
                event("evt_3", "invoice.deleted", {"id": "in_2", "object": "invoice"}),
                event("evt_2", "invoice.paid", paid),
            ]
        )
    )
    router.get("/v1/invoices").mock(return_value=stripe_list([]))
    pages = list(make().read("invoices", fresh_state()))
    types = params(events.calls.last.request)["types[]"]
    assert "invoice.paid" in types and "invoice.deleted" in types
    assert not any(t.startswith("customer.") for t in types)
    assert pages[0].records == [paid] and pages[0].deleted == ["in_2"]


def test_events_older_than_stripe_keeps_them_mean_a_full_read(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    events = router.get("/v1/events").mock(return_value=stripe_list([]))
    customers = router.get("/v1/customers").mock(return_value=stripe_list([customer("c", 5)]))
    stale = fresh_state(events={"after": "evt_1", "checked": time.time() - 40 * 86_400})
    pages = list(make().read("customers", stale))
    assert params(events.calls.last.request) == {"limit": ["1"], "types[]": EVENT_TYPES}
    assert params(customers.calls.last.request) == {"limit": ["100"]}  # no created filter
    assert pages[-1].state and pages[-1].state["created"] == 5


def test_an_anchor_event_stripe_no_longer_knows_means_a_full_read(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if "ending_before" in request.url.params:
            return stripe_error(
                404,
                "invalid_request_error",
                "No such event: 'evt_1'",
                "resource_missing",
                param="ending_before",
            )
        return stripe_list([])

    events = router.get("/v1/events").mock(side_effect=answer)
    customers = router.get("/v1/customers").mock(return_value=stripe_list([customer("c", 5)]))
    pages = list(make().read("customers", fresh_state()))
    assert len(events.calls) == 2
    assert "ending_before" not in events.calls.last.request.url.params
    assert params(customers.calls.last.request) == {"limit": ["100"]}
    assert [r["id"] for page in pages for r in page.records] == ["c"]


def test_a_state_since_a_recent_time_asks_objects_and_events_from_it(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    events = router.get("/v1/events").mock(
        return_value=stripe_list(
            [
                event("evt_2", "customer.updated", customer("cus_b", 10)),
                event("evt_1", "customer.updated", customer("cus_a", 10)),
            ]
        )
    )
    customers = router.get("/v1/customers").mock(return_value=stripe_list([]))
    connector = make()
    since = datetime.now(UTC) - timedelta(days=2, microseconds=500)
    state = connector.state_since("customers", since)
    second = math.ceil(since.timestamp())
    pages = list(connector.read("customers", state))
    assert params(events.calls.last.request) == {
        "limit": ["100"],
        "types[]": EVENT_TYPES,
        "created[gte]": [str(second)],
    }
    assert params(customers.calls.last.request) == {
        "limit": ["100"],
        "created[gte]": [str(second)],
    }
    assert [r["id"] for r in pages[0].records] == ["cus_a", "cus_b"]  # oldest event first
    assert pages[-1].state and pages[-1].state["events"]["after"] == "evt_2"


def test_a_state_since_beyond_the_event_retention_is_a_full_read(
    make: Callable[..., StripeConnector],
) -> None:
    old = datetime.now(UTC) - timedelta(days=45)
    assert make().state_since("invoices", old) == {}


def test_an_unknown_stream_is_refused(make: Callable[..., StripeConnector]) -> None:
    with pytest.raises(FatalError, match="unknown stream"):
        list(make().read("charges", None))


def test_page_size_is_bounded_by_stripes_limit() -> None:
    with pytest.raises(ValueError):
        StripeConfig(api_key=SecretStr(KEY), page_size=101)


# --------------------------------------------------------------------------- write


def test_form_fields_nest_with_brackets_and_unset_with_empty_values() -> None:
    assert form_fields(
        {
            "id": "cus_1",
            "name": "Ann Lee",
            "address": {"line1": "1 Main St", "city": None},
            "metadata.company": "Acme",
            "preferred_locales": ["en", "fr"],
            "tax_exempt": False,
        }
    ) == {
        "name": "Ann Lee",
        "address[line1]": "1 Main St",
        "address[city]": "",
        "metadata[company]": "Acme",
        "preferred_locales[0]": "en",
        "preferred_locales[1]": "fr",
        "tax_exempt": "false",
    }


def test_write_updates_form_encoded_with_the_idempotency_key(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    route = router.post("/v1/customers/cus_1").mock(
        return_value=httpx.Response(200, json=customer("cus_1", 1))
    )
    change = Change("cus_1", {"name": "Ann Lee", "address.line1": "1 Main St"}, "push-key-1")
    results = list(make().write("customers", [change]))

    request = route.calls.last.request
    assert request.headers["Idempotency-Key"] == "push-key-1"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(request.content.decode())) == {
        "name": "Ann Lee",
        "address[line1]": "1 Main St",
    }
    assert results[0].ok and results[0].external_id == "cus_1"
    assert results[0].idempotency_key == "push-key-1"


def test_write_without_an_id_creates_and_reports_the_new_id(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    route = router.post("/v1/customers").mock(
        return_value=httpx.Response(200, json=customer("cus_new", 1))
    )
    [result] = make().write("customers", [Change(None, {"email": "a@x.org"}, "k-2")])
    assert route.calls.last.request.headers["Idempotency-Key"] == "k-2"
    assert result.ok and result.external_id == "cus_new"


def test_write_to_a_deleted_customer_fails_for_good(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    router.post("/v1/customers/cus_gone").mock(
        return_value=stripe_error(
            404, "invalid_request_error", "No such customer: 'cus_gone'", "resource_missing"
        )
    )
    [result] = make().write("customers", [Change("cus_gone", {"name": "X"}, "k-3")])
    assert not result.ok and not result.retriable
    assert result.error and "not in Stripe" in result.error


def test_write_errors_name_the_code_never_the_value(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    router.post("/v1/customers/cus_1").mock(
        return_value=stripe_error(
            400,
            "invalid_request_error",
            "Invalid email address: ann.lee@example.org",
            "email_invalid",
            param="email",
        )
    )
    [result] = make().write("customers", [Change("cus_1", {"email": "ann.lee@example.org"}, "k")])
    assert not result.ok and not result.retriable
    assert result.error and "email_invalid" in result.error and "(parameter email)" in result.error
    assert "ann.lee" not in result.error


def test_write_server_errors_are_retriable_and_later_changes_still_go(
    router: respx.MockRouter, make: Callable[..., StripeConnector], waits: list[float]
) -> None:
    router.post("/v1/customers/cus_1").mock(
        return_value=stripe_error(500, "api_error", "Something went wrong")
    )
    router.post("/v1/customers/cus_2").mock(
        return_value=httpx.Response(200, json=customer("cus_2", 1))
    )
    changes = [Change("cus_1", {"name": "A"}, "k1"), Change("cus_2", {"name": "B"}, "k2")]
    first, second = make(max_attempts=2).write("customers", changes)
    assert not first.ok and first.retriable and "500" in (first.error or "")
    assert second.ok
    assert len(waits) == 1


def test_write_refused_key_stops_the_push(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    router.post("/v1/customers/cus_1").mock(
        return_value=stripe_error(401, "invalid_request_error", "Invalid API Key provided")
    )
    with pytest.raises(AuthError):
        list(make().write("customers", [Change("cus_1", {"name": "A"}, "k1")]))


def test_only_customers_can_be_written(make: Callable[..., StripeConnector]) -> None:
    with pytest.raises(FatalError):
        list(make().write("invoices", [Change("in_1", {"status": "paid"}, "k")]))


# --------------------------------------------------------------------------- mapping


def test_the_mapping_reads_customers_and_pushes_stripe_parameters() -> None:
    raw = customer(
        "cus_1",
        1_714_557_600,
        name="Ann Lee",
        email="Ann.Lee@Example.org",
        phone="+44 20 7946 0958",
        address={
            "line1": "1 Main St",
            "line2": None,
            "city": "London",
            "state": None,
            "postal_code": "e1 6an",
            "country": "GB",
        },
        metadata={"company": "Acme Ltd", "person_key": "P1"},
    )
    mapping = load_mapping("stripe").stream("customers")
    result = mapping.apply(raw, source="billing", stream="customers")
    person = result.record
    assert isinstance(person, Person), result.problems
    assert (person.first_name, person.last_name, person.full_name) == ("Ann", "Lee", "Ann Lee")
    assert person.emails == ["ann.lee@example.org"] and person.phones == ["+442079460958"]
    assert person.address and person.address.postal_code == "E1 6AN"
    assert person.company == "Acme Ltd" and person.attributes["person_key"] == "P1"
    assert person.updated_at and person.updated_at.year == 2024
    assert form_fields(mapping.to_source(person)) == {
        "name": "Ann Lee",
        "email": "ann.lee@example.org",
        "phone": "+442079460958",
        "address[line1]": "1 Main St",
        "address[line2]": "",
        "address[city]": "London",
        "address[state]": "",
        "address[postal_code]": "E1 6AN",
        "address[country]": "GB",
        "metadata[company]": "Acme Ltd",
        "metadata[job_title]": "",
    }


def test_the_mapping_reads_invoices_as_activities_of_customers() -> None:
    raw = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_1",
        "created": 1_714_557_600,
        "amount_due": 12_345,
        "amount_paid": 0,
        "amount_remaining": 12_345,
        "currency": "eur",
        "status": "open",
        "number": "ABCD1234-0001",
        "description": None,
    }
    result = load_mapping("stripe").stream("invoices").apply(raw, source="b", stream="invoices")
    activity = result.record
    assert isinstance(activity, Activity), result.problems
    assert (activity.kind, activity.amount, activity.currency) == ("invoice", 12_345, "EUR")
    assert (activity.person_external_id, activity.person_stream) == ("cus_1", "customers")
    assert activity.status == "open" and activity.subject == "ABCD1234-0001"


# --------------------------------------------------------------------------- erase


def test_erase_deletes_customers_and_counts_missing_ones_as_already_gone(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    deleted = router.delete("/v1/customers/cus_1").mock(
        return_value=httpx.Response(
            200, json={"id": "cus_1", "object": "customer", "deleted": True}
        )
    )
    router.delete("/v1/customers/cus_2").mock(
        return_value=stripe_error(
            404, "invalid_request_error", "No such customer: 'cus_2'", "resource_missing"
        )
    )
    results = list(make().erase(["cus_1", "cus_2"]))
    assert [(r.external_id, r.status) for r in results] == [
        ("cus_1", "erased"),
        ("cus_2", "already_gone"),
    ]
    assert all(r.done for r in results)
    assert deleted.calls.last.request.headers["Authorization"] == f"Bearer {KEY}"


def test_erase_of_a_failing_api_is_a_retriable_failure(
    router: respx.MockRouter, make: Callable[..., StripeConnector]
) -> None:
    router.delete("/v1/customers/cus_1").mock(return_value=stripe_error(503, "api_error", "down"))
    [result] = make(max_attempts=1).erase(["cus_1"])
    assert result.status == "failed" and result.retriable and not result.done


# --------------------------------------------------------------------------- webhooks

NOW = 1_714_557_600


def sign(body: bytes, secret: str = SECRET, stamp: int = NOW) -> str:
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def delivery(kind: str, obj: dict[str, Any]) -> bytes:
    return orjson.dumps(event("evt_w1", kind, obj, NOW))


@pytest.fixture
def hooked(make: Callable[..., StripeConnector]) -> StripeConnector:
    return make(webhook_secret=SecretStr(SECRET))


def test_a_signed_customer_update_becomes_a_record(hooked: StripeConnector) -> None:
    obj = customer("cus_1", 5, name="Ann Lee")
    body = delivery("customer.updated", obj)
    [found] = hooked.webhook({"stripe-signature": sign(body)}, body, now=NOW + 10)
    assert found.stream == "customers" and found.event_id == "evt_w1"
    assert found.page.records == [obj] and found.page.deleted == [] and found.page.state is None


def test_deletions_and_invoice_events_are_delivered_to_their_streams(
    hooked: StripeConnector,
) -> None:
    body = delivery("customer.deleted", customer("cus_1", 5))
    [gone] = hooked.webhook({"Stripe-Signature": sign(body)}, body, now=NOW)
    assert gone.stream == "customers" and gone.page == Page(deleted=["cus_1"])
    invoice = {"id": "in_1", "object": "invoice", "status": "paid"}
    body = delivery("invoice.paid", invoice)
    [paid] = hooked.webhook({"Stripe-Signature": sign(body)}, body, now=NOW)
    assert paid.stream == "invoices" and paid.page.records == [invoice]


def test_other_events_give_nothing(hooked: StripeConnector) -> None:
    body = delivery("charge.succeeded", {"id": "ch_1", "object": "charge"})
    assert hooked.webhook({"Stripe-Signature": sign(body)}, body, now=NOW) == []


def test_one_matching_signature_of_several_is_enough(hooked: StripeConnector) -> None:
    body = delivery("customer.created", customer("cus_1", 5))
    good = sign(body).split(",")[1]
    header = f"t={NOW},v1={'0' * 64},{good},v0=abc"
    assert len(hooked.webhook({"Stripe-Signature": header}, body, now=NOW)) == 1


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong secret", "does not match"),
        ("tampered body", "does not match"),
        ("too old", "tolerated"),
        ("no header", "no Stripe-Signature"),
        ("no v1", "no timestamp or no v1"),
        ("no timestamp", "no timestamp or no v1"),
    ],
)
def test_bad_signatures_are_refused(hooked: StripeConnector, case: str, reason: str) -> None:
    body = delivery("customer.updated", customer("cus_1", 5))
    headers = {"Stripe-Signature": sign(body)}
    now = NOW + 5
    if case == "wrong secret":
        headers["Stripe-Signature"] = sign(body, secret="whsec_other")
    elif case == "tampered body":
        body = body.replace(b"cus_1", b"cus_2")
    elif case == "too old":
        now = NOW + 301
    elif case == "no header":
        headers = {}
    elif case == "no v1":
        headers["Stripe-Signature"] = f"t={NOW}"
    elif case == "no timestamp":
        headers["Stripe-Signature"] = sign(body).split(",")[1]
    with pytest.raises(WebhookSignatureError, match=reason) as caught:
        hooked.webhook(headers, body, now=now)
    assert SECRET not in str(caught.value)


def test_the_tolerance_is_a_setting(make: Callable[..., StripeConnector]) -> None:
    connector = make(webhook_secret=SecretStr(SECRET), webhook_tolerance=1000)
    body = delivery("customer.updated", customer("cus_1", 5))
    assert connector.webhook({"Stripe-Signature": sign(body)}, body, now=NOW + 900)


def test_webhooks_without_a_configured_secret_are_refused(
    make: Callable[..., StripeConnector],
) -> None:
    body = delivery("customer.updated", customer("cus_1", 5))
    with pytest.raises(WebhookSignatureError, match="webhook_secret"):
        make().webhook({"Stripe-Signature": sign(body)}, body, now=NOW)

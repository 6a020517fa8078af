"""The Stripe sandbox app (crmhub.sandbox.stripe) and the ``stripe`` connector end to end."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from crmhub.connectors.stripe import StripeConfig, StripeConnector
from crmhub.errors import WebhookSignatureError
from crmhub.sandbox import Faults, Sandbox
from crmhub.sandbox.people import WorldOptions, iter_world
from crmhub.sandbox.stripe import RETENTION, StripeSandbox

BASE = "https://api.stripe.sandbox"
DAY = 86_400


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = 1_750_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rows(people: int = 60) -> list[dict[str, str]]:
    return [row for _, row in iter_world(people, WorldOptions(sources=("billing",)))]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock: Clock) -> StripeSandbox:
    stripe = StripeSandbox(clock=clock)
    stripe.seed_random(1)
    stripe.seed(rows())
    return stripe


def client(app: StripeSandbox, key: str | None = None) -> httpx.Client:
    return httpx.Client(
        transport=httpx.MockTransport(app),
        base_url=BASE,
        headers={"Authorization": f"Bearer {key or app.credentials}"},
    )


def list_all(http: httpx.Client, path: str, **query: Any) -> list[dict[str, Any]]:
    """Every object of a list, following starting_after."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 7, **query}
    while True:
        body = http.get(path, params=params).json()
        found.extend(body["data"])
        if not body["has_more"]:
            return found
        params["starting_after"] = body["data"][-1]["id"]


# --------------------------------------------------------------------------- the app


def test_a_wrong_key_is_refused_in_stripes_error_shape(app: StripeSandbox) -> None:
    response = client(app, "sk_test_wrong").get("/v1/customers")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "API Key" in error["message"]
    assert "sk_test_wrong" not in response.text
    assert client(app).get("/v1/customers").status_code == 200
    basic = httpx.Client(
        transport=httpx.MockTransport(app), base_url=BASE, auth=(app.credentials, "")
    )
    assert basic.get("/v1/customers").status_code == 200


def test_lists_end_and_give_every_customer_once_newest_first(app: StripeSandbox) -> None:
    found = list_all(client(app), "/v1/customers")
    ids = [c["id"] for c in found]
    assert len(ids) == len(set(ids)) == len(app.customers.by_id) > 7
    created = [c["created"] for c in found]
    assert created == sorted(created, reverse=True)
    assert all(i.startswith("cus_") and len(i) == 18 for i in ids)
    body = client(app).get("/v1/customers").json()
    assert body["object"] == "list" and body["url"] == "/v1/customers"
    assert len(body["data"]) == 10 and body["has_more"] is True  # Stripe's default limit


def test_invoices_belong_to_customers_and_use_minor_units(app: StripeSandbox) -> None:
    invoices = list_all(client(app), "/v1/invoices", limit=100)
    assert len(invoices) == len(app.invoices.by_id) > 0
    for invoice in invoices:
        assert invoice["customer"] in app.customers.by_id
        assert isinstance(invoice["amount_due"], int) and invoice["currency"].islower()
        assert invoice["status"] in ("paid", "open", "void", "uncollectible", "draft")


def test_created_filters_select_by_creation_second(app: StripeSandbox) -> None:
    http = client(app)
    everyone = list_all(http, "/v1/customers")
    middle = sorted(c["created"] for c in everyone)[len(everyone) // 2]
    gte = list_all(http, "/v1/customers", **{"created[gte]": middle})
    gt = list_all(http, "/v1/customers", **{"created[gt]": middle})
    lt = list_all(http, "/v1/customers", **{"created[lt]": middle})
    lte = list_all(http, "/v1/customers", **{"created[lte]": middle})
    assert {c["id"] for c in gte} == {c["id"] for c in everyone if c["created"] >= middle}
    assert {c["id"] for c in gt} == {c["id"] for c in everyone if c["created"] > middle}
    assert len(gte) + len(lt) == len(everyone) == len(gt) + len(lte)
    exact = http.get("/v1/customers", params={"created": middle}).json()["data"]
    assert exact and all(c["created"] == middle for c in exact)


def test_ending_before_gives_the_block_just_newer_still_newest_first(app: StripeSandbox) -> None:
    http = client(app)
    everyone = list_all(http, "/v1/customers")
    anchor = everyone[10]["id"]
    body = http.get("/v1/customers", params={"ending_before": anchor, "limit": 3}).json()
    assert [c["id"] for c in body["data"]] == [c["id"] for c in everyone[7:10]]
    assert body["has_more"] is True
    last = http.get("/v1/customers", params={"ending_before": everyone[2]["id"]}).json()
    assert [c["id"] for c in last["data"]] == [c["id"] for c in everyone[:2]]
    assert last["has_more"] is False


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"page": 2}, "page"),
        ({"created[gte]": "yesterday"}, "created[gte]"),
        ({"starting_after": "cus_nobody"}, "starting_after"),
    ],
)
def test_bad_list_parameters_are_refused(
    app: StripeSandbox, query: dict[str, Any], param: str
) -> None:
    response = client(app).get("/v1/customers", params=query)
    assert response.status_code in (400, 404)
    assert response.json()["error"]["param"] == param


def test_a_deleted_customer_is_gone_and_a_second_delete_is_404(app: StripeSandbox) -> None:
    http = client(app)
    victim = next(iter(app.customers.by_id))
    first = http.delete(f"/v1/customers/{victim}")
    assert first.status_code == 200
    assert first.json() == {"id": victim, "object": "customer", "deleted": True}
    again = http.delete(f"/v1/customers/{victim}")
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "resource_missing"
    assert http.get(f"/v1/customers/{victim}").json()["deleted"] is True
    assert victim not in {c["id"] for c in list_all(http, "/v1/customers")}
    assert http.post(f"/v1/customers/{victim}", data={"name": "X"}).status_code == 404
    assert http.get("/v1/customers/cus_never").status_code == 404


def test_updates_merge_form_fields_and_record_events(app: StripeSandbox, clock: Clock) -> None:
    http = client(app)
    victim = next(iter(app.customers.by_id))
    before = dict(app.customers.by_id[victim])
    clock.now += 60
    response = http.post(
        f"/v1/customers/{victim}",
        data={"name": "Ann Lee", "address[city]": "Paris", "metadata[tier]": "gold", "phone": ""},
    )
    assert response.status_code == 200
    after = response.json()
    assert after["name"] == "Ann Lee" and after["phone"] is None
    assert after["address"]["city"] == "Paris"
    if before["address"]:
        assert after["address"]["line1"] == before["address"]["line1"]  # merged, not replaced
    assert after["metadata"]["tier"] == "gold" and after["created"] == before["created"]
    event = app.last_event()
    assert event is not None and event["type"] == "customer.updated"
    assert event["created"] == clock.now and event["data"]["object"] == after
    assert event["data"]["previous_attributes"]["name"] == before["name"]
    unknown = http.post(f"/v1/customers/{victim}", data={"nickname": "x"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "parameter_unknown"
    bad = http.post(f"/v1/customers/{victim}", data={"email": "not-an-email"})
    assert bad.json()["error"]["code"] == "email_invalid"
    assert app.customers.by_id[victim]["email"] == before["email"]  # nothing half applied


def test_idempotency_keys_replay_and_refuse_other_parameters(app: StripeSandbox) -> None:
    http = client(app)
    first = http.post("/v1/customers", data={"name": "Ann"}, headers={"Idempotency-Key": "k1"})
    again = http.post("/v1/customers", data={"name": "Ann"}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    created = [e for e in app.events.by_id.values() if e["type"] == "customer.created"]
    assert len(created) == 1 and created[0]["request"]["idempotency_key"] == "k1"
    other = http.post("/v1/customers", data={"name": "Bob"}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"


def test_events_filter_by_type_and_are_kept_30_days(app: StripeSandbox, clock: Clock) -> None:
    http = client(app)
    ids = list(app.customers.by_id)
    http.post(f"/v1/customers/{ids[0]}", data={"name": "Old Change"})
    old = app.last_event()
    clock.now += 10 * DAY
    http.post(f"/v1/customers/{ids[1]}", data={"name": "New Change"})
    http.delete(f"/v1/customers/{ids[2]}")
    app.add_record("customers")

    def types(**query: Any) -> list[str]:
        body = http.get("/v1/events", params={"limit": 100, **query}).json()
        return [e["type"] for e in body["data"]]

    newest_first = ["customer.created", "customer.deleted", "customer.updated", "customer.updated"]
    assert types() == newest_first
    assert types(**{"types[]": ["customer.updated", "customer.deleted"]}) == [
        "customer.deleted",
        "customer.updated",
        "customer.updated",
    ]
    assert types(type="customer.*") == types()
    assert types(type="invoice.*") == []
    assert old is not None
    newer = http.get("/v1/events", params={"ending_before": old["id"]}).json()
    assert len(newer["data"]) == 3
    clock.now += 25 * DAY  # the first change is now 35 days old
    assert len(types()) == 3
    assert old["created"] < clock.now - RETENTION
    pruned = http.get("/v1/events", params={"ending_before": old["id"]})
    assert pruned.status_code == 404 and pruned.json()["error"]["code"] == "resource_missing"
    assert http.get(f"/v1/events/{old['id']}").status_code == 404


def test_paying_an_invoice_records_its_events(app: StripeSandbox) -> None:
    invoice_id = app.add_record("invoices")
    response = client(app).post(f"/v1/invoices/{invoice_id}/pay")
    assert response.status_code == 200 and response.json()["status"] == "paid"
    paid = app.last_event("invoice.paid")
    assert paid is not None and paid["data"]["object"]["amount_paid"] > 0
    assert client(app).post(f"/v1/invoices/{invoice_id}/pay").status_code == 400


def test_faults_answer_429_with_retry_after(app: StripeSandbox) -> None:
    app.faults = Faults(burst_every=1, burst_length=1, retry_after=3)
    response = client(app).get("/v1/customers")
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == "rate_limit"
    assert app.faults_sent[429] == 1


def stripe_app(sandbox: Sandbox) -> StripeSandbox:
    app = sandbox.apps["stripe"]
    assert isinstance(app, StripeSandbox)
    return app


def test_equal_seeds_give_equal_systems() -> None:
    one = stripe_app(Sandbox(people=40, systems=("stripe",)))
    two = stripe_app(Sandbox(people=40, systems=("stripe",)))
    assert one.customers.by_id == two.customers.by_id
    assert one.invoices.by_id == two.invoices.by_id


def test_signed_deliveries_pass_the_connectors_verification(app: StripeSandbox) -> None:
    http = client(app)
    victim = next(iter(app.customers.by_id))
    http.post(f"/v1/customers/{victim}", data={"name": "Ann Lee"})
    event = app.last_event()
    assert event is not None
    connector = StripeConnector(
        StripeConfig(
            api_key=SecretStr(app.credentials),
            base_url=BASE,
            webhook_secret=SecretStr(app.webhook_secret),
        )
    )
    headers, body = app.signed_delivery(event["id"])
    [delivered] = connector.webhook(headers, body, now=app.now())
    assert delivered.event_id == event["id"] and delivered.page.records[0]["name"] == "Ann Lee"
    headers, body = app.signed_delivery(event, secret="whsec_other")
    with pytest.raises(WebhookSignatureError):
        connector.webhook(headers, body, now=app.now())


# --------------------------------------------------------------------------- end to end


def count(hub: Any, table: str, where: str = "") -> int:
    with hub.engine.connect() as conn:
        sql = f"SELECT COUNT(*) FROM {table} WHERE connector = 'stripe' {where}"
        return int(conn.execute(text(sql)).scalar_one())


def by_stream(results: list[Any]) -> dict[str, Any]:
    assert all(r.ok for r in results), [r.error for r in results]
    return {r.stream: r.counts for r in results}


def test_sync_through_the_hub(tmp_path: Path, database_url: str) -> None:
    sandbox = Sandbox(people=300, systems=("stripe",))
    app = stripe_app(sandbox)
    hub = sandbox.open_hub(tmp_path, database_url, sleep=lambda s: None)
    try:
        customers, invoices = len(app.customers.by_id), len(app.invoices.by_id)
        first = by_stream(hub.sync(["stripe"]))
        assert first["customers"].inserted == customers > 300
        assert first["invoices"].inserted == invoices > 0
        assert first["customers"].quarantined == first["invoices"].quarantined == 0
        assert count(hub, "source_records") == customers
        assert count(hub, "activities") == invoices
        assert count(hub, "quarantine") == 0

        app.reset_counters()
        second = by_stream(hub.sync(["stripe"]))
        assert second["customers"].read == second["invoices"].read == 0
        assert app.calls == Counter(
            {"GET /v1/events": 2, "GET /v1/customers": 1, "GET /v1/invoices": 1}
        )

        http = client(app)
        changed, removed = list(app.customers.by_id)[:2]
        http.post(f"/v1/customers/{changed}", data={"name": "Zoe Quinn"})
        http.delete(f"/v1/customers/{removed}")
        added = app.add_record("customers")
        unpaid = next(i for i, inv in app.invoices.by_id.items() if inv["status"] == "open")
        http.post(f"/v1/invoices/{unpaid}/pay")
        third = by_stream(hub.sync(["stripe"]))
        assert third["customers"].updated == 1 and third["customers"].inserted == 1
        assert third["customers"].deleted == 1
        assert third["invoices"].updated == 1
        with hub.engine.connect() as conn:
            deleted: dict[str, bool] = dict(
                conn.execute(
                    text(
                        "SELECT external_id, deleted_at IS NOT NULL FROM source_records "
                        "WHERE external_id IN (:a, :b, :c)"
                    ),
                    {"a": changed, "b": removed, "c": added},
                ).all()
            )
            status = conn.execute(
                text("SELECT status FROM activities WHERE external_id = :i"), {"i": unpaid}
            ).scalar_one()
        assert deleted == {changed: False, removed: True, added: False}
        assert status == "paid"
        assert count(hub, "source_records") == customers + 1
    finally:
        hub.close()


def test_events_past_retention_fall_back_to_a_full_read(tmp_path: Path, sqlite_url: str) -> None:
    sandbox = Sandbox(people=40, systems=("stripe",))
    app = stripe_app(sandbox)
    clock = Clock(app.now())
    app.clock = clock
    hub = sandbox.open_hub(tmp_path, sqlite_url, sleep=lambda s: None)
    try:
        http = client(app)
        first, second = list(app.customers.by_id)[:2]
        by_stream(hub.sync(["stripe"]))
        http.post(f"/v1/customers/{first}", data={"name": "Anchor Change"})
        by_stream(hub.sync(["stripe"]))  # the anchor is now that event
        clock.now += RETENTION + DAY  # Stripe forgets it; our clock does not know
        http.post(f"/v1/customers/{second}", data={"name": "Late Change"})
        app.reset_counters()
        counts = by_stream(hub.sync(["stripe"]))["customers"]
        assert counts.read == len(app.customers.by_id)  # everything, once more
        assert counts.updated == 1 and counts.inserted == 0
        assert app.calls["GET /v1/customers"] >= 1
        with hub.engine.connect() as conn:
            data = conn.execute(
                text("SELECT data FROM source_records WHERE external_id = :i"), {"i": second}
            ).scalar_one()
        assert "Late Change" in str(data)
    finally:
        hub.close()

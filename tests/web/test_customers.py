"""The customer 360 pages and their JSON API, on a hub synced from the sandbox systems
(Stripe customers and invoices, Zendesk users and tickets, Typeform responses and
submissions, Mailchimp members, HubSpot contacts): search, provenance, timeline and traits,
overrides, unmerge, merged ids, roles and CSRF."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crmhub.hub import Hub
from crmhub.resolution.steward import Steward, override_value_hash
from crmhub.sandbox.world import Sandbox
from crmhub.store.schema import activities, audit_log, customers, overrides, source_records

from .conftest import sign_in

HTML = {"accept": "text/html"}


@pytest.fixture
def web_hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    """A hub synced from the sandbox systems (200 people, with duplicates), on each backend."""
    hub = Sandbox(200).open_hub(tmp_path / "hub", database_url, sleep=lambda _s: None)
    hub.sync()
    yield hub
    hub.close()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------- the hub's data


def _members(hub: Hub) -> dict[str, list[tuple[int, str, str, str]]]:
    """Live records by customer: (id, connector, stream, external id)."""
    s = source_records.c
    found: dict[str, list[tuple[int, str, str, str]]] = defaultdict(list)
    with hub.engine.connect() as conn:
        for rid, customer, connector, stream, external in conn.execute(
            select(s.id, s.customer_id, s.connector, s.stream, s.external_id)
            .where(s.deleted_at.is_(None))
            .order_by(s.id)
        ):
            found[customer].append((rid, connector, stream, external))
    return found


def _activities_by_customer(hub: Hub) -> dict[str, list[dict[str, Any]]]:
    """Every activity, given to the customer of the record it belongs to (worked out here
    from the raw rows, apart from the library)."""
    owner = {
        (connector, stream, external): customer
        for customer, records in _members(hub).items()
        for _, connector, stream, external in records
    }
    a = activities.c
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with hub.engine.connect() as conn:
        rows = conn.execute(
            select(a.id, a.connector, a.person_stream, a.person_external_id, a.kind, a.status)
            .add_columns(a.amount, a.currency, a.occurred_at)
            .where(a.deleted_at.is_(None))
        ).mappings()
        for row in rows:
            customer = owner.get(
                (row["connector"], row["person_stream"], row["person_external_id"])
            )
            if customer is not None:
                found[customer].append(dict(row))
    return found


def _golden(hub: Hub, customer_id: str) -> dict[str, Any]:
    with hub.engine.connect() as conn:
        data: dict[str, Any] = conn.execute(
            select(customers.c.data).where(customers.c.id == customer_id)
        ).scalar_one()
    return data


def _audit_rows(hub: Hub) -> list[dict[str, Any]]:
    with hub.engine.connect() as conn:
        return [
            dict(r) for r in conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings()
        ]


def _counts(hub: Hub) -> tuple[int, int, int]:
    """(audit events, overrides, customers): what a refused change must leave alone."""
    with hub.engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(audit_log)).scalar_one(),
            conn.execute(select(func.count()).select_from(overrides)).scalar_one(),
            conn.execute(select(func.count()).select_from(customers)).scalar_one(),
        )


def _with_members(hub: Hub, at_least: int = 2) -> str:
    """A customer with several source records."""
    return next(c for c, records in sorted(_members(hub).items()) if len(records) >= at_least)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# ---------------------------------------------------------------------- search


def test_search_finds_a_customer_by_email_and_by_name(
    client: TestClient, tokens: dict[str, str], web_hub: Hub
) -> None:
    customer = _with_members(web_hub)
    golden = _golden(web_hub, customer)
    email = golden["emails"]["value"][0]
    surname = golden["last_name"]["value"]
    sign_in(client, tokens["steward"])

    page = client.get("/customers", params={"q": email.upper()}, headers=HTML)
    assert page.status_code == 200
    assert f'href="/customers/{customer}"' in page.text
    found = client.get("/api/customers", params={"q": email}).json()
    assert [row["id"] for row in found] == [customer]
    assert email in found[0]["emails"]

    by_name = client.get("/api/customers", params={"q": surname, "limit": 200}).json()
    assert customer in [row["id"] for row in by_name]

    empty = client.get("/customers", headers=HTML)
    assert empty.status_code == 200 and "result" not in empty.text
    assert client.get("/api/customers", params={"q": "\x00"}).json() == []
    nobody = client.get("/api/customers", params={"q": "nobody-at-all@nowhere.example"})
    assert nobody.status_code == 200 and nobody.json() == []


# ---------------------------------------------------------------------- the 360


def test_traits_add_up_the_sandbox_invoices_tickets_and_submissions(
    client: TestClient, tokens: dict[str, str], web_hub: Hub
) -> None:
    by_customer = _activities_by_customer(web_hub)
    members = _members(web_hub)
    kinds = Counter(act["kind"] for acts in by_customer.values() for act in acts)
    assert {"invoice", "ticket", "form_submission"} <= set(kinds)
    auth = bearer(tokens["auditor"])
    open_seen = paid_seen = 0
    for customer, acts in sorted(by_customer.items()):
        view = client.get(f"/api/customers/{customer}", headers=auth).json()
        traits = view["traits"]
        paid: Counter[str] = Counter()
        for act in acts:
            if act["kind"] == "invoice" and act["status"] == "paid":
                paid[act["currency"]] += act["amount"]
        still_open = sum(
            1
            for act in acts
            if act["kind"] == "ticket" and act["status"] not in ("solved", "closed")
        )
        assert {m["currency"]: m["amount"] for m in traits["lifetime_value"]} == dict(paid)
        assert traits["open_tickets"] == still_open
        assert traits["tickets"] == sum(1 for act in acts if act["kind"] == "ticket")
        assert traits["activities"] == len(acts) == view["timeline"]["total"]
        newest = max(_utc(act["occurred_at"]) for act in acts)
        assert datetime.fromisoformat(traits["last_activity"]) == newest
        assert traits["sources"] == len({m[1] for m in members[customer]})
        assert traits["members"] == len(members[customer])
        open_seen += still_open
        paid_seen += len(paid)
    assert open_seen > 0 and paid_seen > 0  # the data exercised both


def test_the_360_page_shows_provenance_members_timeline_and_traits(
    client: TestClient, tokens: dict[str, str], web_hub: Hub
) -> None:
    by_customer = _activities_by_customer(web_hub)
    richest = max(by_customer, key=lambda c: (len({a["kind"] for a in by_customer[c]}), c))
    acts = by_customer[richest]
    assert {"invoice", "ticket", "form_submission"} <= {a["kind"] for a in acts}
    members = {m[0]: m for m in _members(web_hub)[richest]}
    golden = _golden(web_hub, richest)
    sign_in(client, tokens["compliance"])

    page = client.get(f"/customers/{richest}", headers=HTML)
    assert page.status_code == 200
    text = page.text
    for name, value in golden.items():  # each value with the record and rule it came from
        record = members[value["source_record_id"]]
        row = text[text.index(f'data-field="{name}"') :]
        row = row[: row.index("</tr>")]
        assert f"{record[1]}/{record[2]}" in row and record[3] in row
        assert f"record {record[0]}" in row and value["rule"].replace("_", " ") in row
    for rid in members:
        assert f'data-record="{rid}"' in text
    assert f"Interactions ({len(acts)})" in text
    assert text.count('data-kind="invoice"') == sum(1 for a in acts if a["kind"] == "invoice")
    assert text.count('data-kind="ticket"') == sum(1 for a in acts if a["kind"] == "ticket")
    assert "Save override" not in text and "Unmerge" not in text  # compliance reads only

    api = client.get(f"/api/customers/{richest}").json()
    paid = sum(a["amount"] for a in acts if a["kind"] == "invoice" and a["status"] == "paid")
    money = api["traits"]["lifetime_value"]
    assert sum(m["amount"] for m in money) == paid > 0 and money[0]["display"] in text
    stamps = [item["occurred_at"] for item in api["timeline"]["items"]]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    linked = {m["record_id"]: m for m in api["members"]}
    assert set(linked) == set(members)
    assert all(m["link_method"] in {"auto", "steward", "new", "rule"} for m in linked.values())
    assert all(m["first_seen"] and m["last_seen"] for m in linked.values())

    first = client.get(f"/api/customers/{richest}/timeline", params={"per_page": 2}).json()
    second = client.get(
        f"/api/customers/{richest}/timeline", params={"per_page": 2, "page": 2}
    ).json()
    assert first["total"] == len(acts) and first["pages"] == (len(acts) + 1) // 2
    assert [i["id"] for i in first["items"]] == [i["id"] for i in api["timeline"]["items"][:2]]
    assert [i["id"] for i in second["items"]] == [i["id"] for i in api["timeline"]["items"][2:4]]
    assert len(acts) <= 25  # one page on the 360 page: a second one is empty
    paged = client.get(f"/customers/{richest}", params={"page": 2}, headers=HTML)
    assert paged.status_code == 200 and "No interactions on this page" in paged.text


# ---------------------------------------------------------------------- overrides


def test_an_override_with_a_reason_changes_the_golden_value_and_is_audited_without_it(
    client: TestClient, tokens: dict[str, str], web_hub: Hub
) -> None:
    customer = _with_members(web_hub)
    before = _golden(web_hub, customer)
    csrf = sign_in(client, tokens["steward"])
    typed = "  Ana.Override@Example.COM , second.one@example.org"
    response = client.post(
        f"/customers/{customer}/override",
        data={
            "csrf_token": csrf,
            "field": "emails",
            "value": typed,
            "reason": "confirmed by phone",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/customers/{customer}?done=override")
    wanted = ["ana.override@example.com", "second.one@example.org"]  # normalised by the model
    after = _golden(web_hub, customer)
    assert after["emails"] == {
        "value": wanted,
        "source_record_id": None,
        "rule": "steward_override",
    }
    assert {k: v for k, v in after.items() if k != "emails"} == {
        k: v for k, v in before.items() if k != "emails"
    }
    with web_hub.engine.connect() as conn:
        row = conn.execute(select(overrides)).mappings().one()
        version = conn.execute(
            select(customers.c.version).where(customers.c.id == customer)
        ).scalar_one()
    assert row["value"] == wanted and row["reason"] == "confirmed by phone"
    assert row["set_by"] == "steward:steward" and version == 2

    event = _audit_rows(web_hub)[-1]
    assert event["action"] == "customer.override_set" and event["subject_id"] == customer
    assert event["details"]["field"] == "emails"
    assert event["details"]["value_hash"] == override_value_hash(customer, "emails", wanted)
    flat = json.dumps(event, default=str).lower()
    assert "ana.override" not in flat and "second.one" not in flat
    assert "confirmed by phone" not in flat  # the reason stays with the override

    page = client.get(response.headers["location"], headers=HTML)
    row_html = page.text[page.text.index('data-field="emails"') :]
    row_html = row_html[: row_html.index("</tr>")]
    assert "steward override" in row_html and "confirmed by phone" in row_html
    assert "ana.override@example.com" in row_html and "steward:steward" in row_html
    assert "Override saved" in page.text

    cleared = client.post(f"/customers/{customer}/override/emails/clear", data={"csrf_token": csrf})
    assert cleared.status_code == 303
    assert _golden(web_hub, customer) == before
    event = _audit_rows(web_hub)[-1]
    assert event["action"] == "customer.override_cleared"
    assert event["details"]["value_hash"] == override_value_hash(customer, "emails", wanted)
    assert "ana.override" not in json.dumps(event, default=str).lower()
    again = client.post(f"/customers/{customer}/override/emails/clear", data={"csrf_token": csrf})
    assert again.status_code == 422 and "no override" in again.text


def test_an_override_without_a_reason_or_with_a_bad_value_is_refused(
    client: TestClient, tokens: dict[str, str], web_hub: Hub
) -> None:
    customer = _with_members(web_hub)
    csrf = sign_in(client, tokens["steward"])  # (an audit event of its own)
    before, counts = _golden(web_hub, customer), _counts(web_hub)
    form = {"csrf_token": csrf, "field": "company", "value": "Acme Ltd", "reason": "  "}

    refused = client.post(f"/customers/{customer}/override", data=form)
    assert refused.status_code == 422
    assert "An override needs a reason." in refused.text
    assert ">Acme Ltd</textarea>" in refused.text  # what was typed is kept
    bad = client.post(
        f"/customers/{customer}/override",
        data={**form, "field": "emails", "value": "not-an-email", "reason": "typo"},
    )
    assert bad.status_code == 422 and "not a valid emails" in bad.text
    unknown = client.post(
        f"/customers/{customer}/override", data={**form, "field": "shoe_size", "reason": "x"}
    )
    assert unknown.status_code == 422 and "not a golden field" in unknown.text

    api = bearer(tokens["steward"])
    body = {"field": "company", "value": "Acme Ltd", "reason": ""}
    assert (
        client.post(f"/api/customers/{customer}/override", json=body, headers=api).status_code
        == 422
    )
    body = {"field": "birth_date", "value": "not a date", "reason": "x"}
    refusal = client.post(f"/api/customers/{customer}/override", json=body, headers=api)
    assert refusal.status_code == 422 and "birth_date" in refusal.json()["detail"][0]["msg"]
    body = {"field": "company", "value": "Acme Ltd", "reason": "x"}
    missing = client.post("/api/customers/no-such-customer/override", json=body, headers=api)
    assert missing.status_code == 404
    assert _golden(web_hub, customer) == before and _counts(web_hub) == counts

    done = client.post(f"/api/customers/{customer}/override", json=body, headers=api)
    assert done.status_code == 200 and done.json()["action"] == "customer.override_set"
    assert _golden(web_hub, customer)["company"]["value"] == "Acme Ltd"


# ---------------------------------------------------------------------- unmerge and merged ids


def test_unmerge_splits_the_customer_and_rebuilds_both_golden_records(
    client: TestClient, tokens: dict[str, str], web_hub: Hub
) -> None:
    by_customer = _activities_by_customer(web_hub)
    members = _members(web_hub)
    customer = next(c for c in sorted(members) if len(members[c]) >= 2 and by_customer.get(c))
    owners = {(a["connector"], a["person_external_id"]) for a in by_customer[customer]}
    record = next(m for m in members[customer] if (m[1], m[3]) in owners)
    keep = [m[0] for m in members[customer] if m[0] != record[0]]
    csrf = sign_in(client, tokens["steward"])

    page = client.get(f"/customers/{customer}", headers=HTML).text
    assert f'name="record_id" value="{record[0]}"' in page
    response = client.post(
        f"/customers/{customer}/unmerge",
        data={"csrf_token": csrf, "record_id": str(record[0]), "reason": "different person"},
    )
    assert response.status_code == 303
    after = _members(web_hub)
    assert [m[0] for m in after[customer]] == keep
    split = next(c for c, records in after.items() if record[0] in [m[0] for m in records])
    assert split != customer and [m[0] for m in after[split]] == [record[0]]
    assert f"split={split}" in response.headers["location"]
    assert {v["source_record_id"] for v in _golden(web_hub, customer).values()} <= set(keep)
    assert {v["source_record_id"] for v in _golden(web_hub, split).values()} == {record[0]}
    event = _audit_rows(web_hub)[-1]
    assert event["action"] == "customer.unmerged" and event["subject_id"] == customer
    assert event["details"]["record"] == record[0] and event["details"]["new_customer"] == split

    moved = [
        a
        for a in by_customer[customer]
        if (a["connector"], a["person_external_id"]) == (record[1], record[3])
    ]
    split_view = client.get(f"/api/customers/{split}").json()
    assert split_view["timeline"]["total"] == len(moved) > 0
    old_view = client.get(f"/api/customers/{customer}").json()
    assert old_view["timeline"]["total"] == len(by_customer[customer]) - len(moved)

    single = client.post(
        f"/customers/{split}/unmerge", data={"csrf_token": csrf, "record_id": str(record[0])}
    )
    assert single.status_code == 422 and "only member" in single.text
    stranger = client.post(
        f"/api/customers/{customer}/unmerge",
        json={"record_id": record[0]},
        headers=bearer(tokens["steward"]),
    )
    assert stranger.status_code == 422 and "not a member" in stranger.json()["detail"][0]["msg"]


def test_a_merged_away_id_redirects_to_the_surviving_customer(
    client: TestClient, tokens: dict[str, str], web_hub: Hub
) -> None:
    singles = sorted(c for c, records in _members(web_hub).items() if len(records) == 1)
    survivor, merged = singles[0], singles[1]
    Steward(web_hub.resolver(), "steward:test").merge(survivor, merged, "same person")
    sign_in(client, tokens["auditor"])

    page = client.get(f"/customers/{merged}", headers=HTML)
    assert page.status_code == 303
    assert page.headers["location"] == f"/customers/{survivor}?from={merged}"
    shown = client.get(page.headers["location"], headers=HTML)
    assert (
        shown.status_code == 200 and f"<code>{merged}</code> was merged into this one" in shown.text
    )
    api = client.get(f"/api/customers/{merged}").json()
    assert api["id"] == survivor and api["requested_id"] == merged
    assert len(api["members"]) == 2

    assert client.get("/customers/no-such-customer", headers=HTML).status_code == 404
    assert client.get("/api/customers/no-such-customer").status_code == 404
    assert client.get("/api/customers/no such customer").status_code == 422


# ---------------------------------------------------------------------- roles and CSRF


READ_ROUTES = ("/customers", "/customers/{id}", "/api/customers?q=a", "/api/customers/{id}",
               "/api/customers/{id}/timeline")  # fmt: skip


@pytest.mark.parametrize("role", ["steward", "auditor", "compliance", "ops"])
def test_who_may_read_and_who_may_change_customers(
    client: TestClient, tokens: dict[str, str], web_hub: Hub, role: str
) -> None:
    customer = _with_members(web_hub)
    record = _members(web_hub)[customer][-1][0]
    auth = bearer(tokens[role])
    reads = role in ("steward", "auditor", "compliance")
    for route in READ_ROUTES:
        response = client.get(route.format(id=customer), headers=auth)
        assert response.status_code == (200 if reads else 403), (role, route)
        if not reads:
            assert customer not in response.text
    before = _counts(web_hub), _members(web_hub)[customer]
    changes = [
        (f"/api/customers/{customer}/override", {"field": "title", "value": "CEO", "reason": "x"}),
        (f"/api/customers/{customer}/unmerge", {"record_id": record, "reason": "x"}),
    ]
    if role != "steward":
        for url, body in changes:
            assert client.post(url, json=body, headers=auth).status_code == 403, (role, url)
        url = f"/api/customers/{customer}/override/title/clear"
        assert client.post(url, headers=auth).status_code == 403
        assert (_counts(web_hub), _members(web_hub)[customer]) == before
        return
    for url, body in changes:
        assert client.post(url, json=body, headers=auth).status_code == 200, url
    cleared = client.post(f"/api/customers/{customer}/override/title/clear", headers=auth)
    assert cleared.status_code == 200
    page = client.get(f"/customers/{customer}", headers={**auth, **HTML})
    assert "Save override" in page.text


def test_without_a_token_nothing_is_shown(client: TestClient, web_hub: Hub) -> None:
    customer = _with_members(web_hub)
    for route in READ_ROUTES:
        assert client.get(route.format(id=customer)).status_code == 401
    assert client.get(f"/customers/{customer}", headers=HTML).status_code == 303  # to sign in
    body = {"field": "title", "value": "CEO", "reason": "x"}
    assert client.post(f"/api/customers/{customer}/override", json=body).status_code == 401


def test_forms_and_api_calls_from_a_browser_session_need_the_csrf_token(
    client: TestClient, tokens: dict[str, str], web_hub: Hub
) -> None:
    customer = _with_members(web_hub)
    record = _members(web_hub)[customer][-1][0]
    csrf = sign_in(client, tokens["steward"])
    before = _counts(web_hub), _members(web_hub)[customer]
    form = {"field": "title", "value": "CEO", "reason": "promoted"}
    for token in (None, "forged"):
        extra = {"csrf_token": token} if token else {}
        assert (
            client.post(f"/customers/{customer}/override", data={**form, **extra}).status_code
            == 403
        )
        assert (
            client.post(
                f"/customers/{customer}/unmerge", data={"record_id": str(record), **extra}
            ).status_code
            == 403
        )
        assert (
            client.post(f"/customers/{customer}/override/title/clear", data=extra).status_code
            == 403
        )
    assert client.post(f"/api/customers/{customer}/override", json=form).status_code == 403
    assert (_counts(web_hub), _members(web_hub)[customer]) == before

    done = client.post(
        f"/api/customers/{customer}/override", json=form, headers={"x-csrf-token": csrf}
    )
    assert done.status_code == 200
    assert _golden(web_hub, customer)["title"]["value"] == "CEO"

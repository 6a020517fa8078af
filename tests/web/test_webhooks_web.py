"""Webhook routes: ``POST /webhooks/{connector}`` is authenticated by the connector's signature
(no token, no CSRF), feeds the normal pipeline, and answers 401 to a delivery that is not
signed right (nothing stored; a rejected run shows on the runs page), 404 to an unknown
connector, 400 to one that takes no webhooks, and never 500 to a garbage body.

Deliveries come from the Stripe and Typeform sandbox apps, signed as those systems sign.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crmhub.auth import create_token
from crmhub.hub import Hub
from crmhub.sandbox.world import Sandbox
from crmhub.store.schema import activities, source_records, sync_runs
from crmhub.web import create_app
from crmhub.web.webhooks import MAX_BODY, UNAUTHENTICATED

from .conftest import sign_in


@pytest.fixture
def sandbox(crmhub_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return crmhub_sandbox(20, systems=("stripe", "typeform", "zendesk"))


@pytest.fixture
def hook_hub(sandbox: Sandbox, crmhub_hub: Callable[..., Hub], database_url: str) -> Hub:
    return crmhub_hub(sandbox, database_url)


@pytest.fixture
def hook_client(hook_hub: Hub) -> Iterator[TestClient]:
    with TestClient(create_app(hook_hub), follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def ops_token(hook_hub: Hub) -> str:
    with hook_hub.engine.begin() as conn:
        return create_token(conn, "ops", "ops")


def _records(hub: Hub, connector: str) -> int:
    with hub.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(source_records)
                .where(source_records.c.connector == connector)
            ).scalar_one()
        )


def _runs(hub: Hub) -> list[tuple[str, str, str, int]]:
    with hub.engine.connect() as conn:
        rows = conn.execute(
            select(
                sync_runs.c.connector, sync_runs.c.mode, sync_runs.c.status, sync_runs.c.rejected
            )
        )
        return [(r.connector, r.mode, r.status, r.rejected) for r in rows]


def _stripe_delivery(sandbox: Sandbox) -> tuple[dict[str, str], bytes]:
    app: Any = sandbox.app("stripe")
    app.add_record("customers")
    created = app.last_event("customer.created")
    headers: dict[str, str]
    headers, body = app.signed_delivery(created["id"])
    return headers, body


def _stripe_sign(sandbox: Sandbox, body: bytes, stamp: int | None = None) -> dict[str, str]:
    """Sign any bytes as Stripe would (to send a signed body that is not an event)."""
    app: Any = sandbox.app("stripe")
    stamp = int(time.time()) if stamp is None else stamp
    digest = hmac.new(
        app.webhook_secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return {"Stripe-Signature": f"t={stamp},v1={digest}", "Content-Type": "application/json"}


def test_a_signed_stripe_delivery_is_stored_without_a_token(
    sandbox: Sandbox, hook_hub: Hub, hook_client: TestClient
) -> None:
    headers, body = _stripe_delivery(sandbox)
    response = hook_client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["accepted"] is True and data["connector"] == "stripe"
    assert [(r["stream"], r["status"], r["inserted"]) for r in data["runs"]] == [
        ("customers", "succeeded", 1)
    ]
    assert data["counts"]["inserted"] == 1 and data["counts"]["read"] == 1
    assert _records(hook_hub, "stripe") == 1
    # Delivered again (webhooks come at least once): nothing changes.
    again = hook_client.post("/webhooks/stripe", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["counts"]["unchanged"] == 1
    assert _records(hook_hub, "stripe") == 1


def test_a_tampered_delivery_is_401_stores_nothing_and_shows_as_a_rejected_run(
    sandbox: Sandbox, hook_hub: Hub, hook_client: TestClient, ops_token: str
) -> None:
    headers, body = _stripe_delivery(sandbox)
    tampered = body.replace(b'"customer', b'"kustomer', 1)
    assert tampered != body
    response = hook_client.post("/webhooks/stripe", content=tampered, headers=headers)
    assert response.status_code == 401
    assert "signature does not match" in response.json()["detail"]
    assert _records(hook_hub, "stripe") == 0
    assert _runs(hook_hub) == [("stripe", "webhook", "rejected", 1)]
    bearer = {"authorization": f"Bearer {ops_token}"}
    page = hook_client.get("/runs", headers={**bearer, "accept": "text/html"})
    assert page.status_code == 200
    assert "stripe / webhook" in page.text and '<span class="pill neg">rejected</span>' in page.text
    assert "signature does not match" in page.text
    rejected = hook_client.get("/api/runs?status=rejected", headers=bearer).json()["runs"]
    assert [(r["connector"], r["counts"]["rejected"]) for r in rejected] == [("stripe", 1)]


def test_a_missing_or_old_signature_is_401(
    sandbox: Sandbox, hook_hub: Hub, hook_client: TestClient
) -> None:
    headers, body = _stripe_delivery(sandbox)
    unsigned = {k: v for k, v in headers.items() if k != "Stripe-Signature"}
    missing = hook_client.post("/webhooks/stripe", content=body, headers=unsigned)
    assert missing.status_code == 401 and "no Stripe-Signature" in missing.json()["detail"]
    old = _stripe_sign(sandbox, body, stamp=int(time.time()) - 3600)
    replay = hook_client.post("/webhooks/stripe", content=body, headers=old)
    assert replay.status_code == 401 and "tolerated" in replay.json()["detail"]
    wrong = _stripe_sign(sandbox, body + b" ")
    assert hook_client.post("/webhooks/stripe", content=body, headers=wrong).status_code == 401
    assert _records(hook_hub, "stripe") == 0
    assert [run[2] for run in _runs(hook_hub)] == ["rejected"] * 3


@pytest.mark.parametrize(
    "body",
    [b"", b"not json at all", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b'{"type": 7}', b"{" * 5000],
)
def test_garbage_is_never_a_server_error(
    sandbox: Sandbox, hook_hub: Hub, hook_client: TestClient, body: bytes
) -> None:
    for connector in ("stripe", "typeform"):
        unsigned = hook_client.post(f"/webhooks/{connector}", content=body)
        assert unsigned.status_code == 401, (connector, unsigned.text)
    # Signed garbage: the sender holds the secret but sent something unreadable.
    signed = hook_client.post("/webhooks/stripe", content=body, headers=_stripe_sign(sandbox, body))
    assert signed.status_code in (200, 400), signed.text
    if signed.status_code == 200:  # valid JSON, not an event the hub takes: nothing stored
        assert signed.json()["runs"] == []
    else:
        assert "cannot be read" in signed.json()["detail"]
    assert _records(hook_hub, "stripe") == 0


def test_unknown_connectors_are_404_and_one_without_webhooks_is_400(
    sandbox: Sandbox, hook_hub: Hub, hook_client: TestClient
) -> None:
    headers, body = _stripe_delivery(sandbox)
    unknown = hook_client.post("/webhooks/nope", content=body, headers=headers)
    assert unknown.status_code == 404 and "no enabled connector" in unknown.json()["detail"]
    # The type name is not an instance name: only configured instances take deliveries.
    assert hook_client.post("/webhooks/csv", content=body).status_code == 404
    no_hooks = hook_client.post("/webhooks/zendesk", content=body, headers=headers)
    assert no_hooks.status_code == 400 and "takes no webhooks" in no_hooks.json()["detail"]
    assert _runs(hook_hub) == []  # neither is a delivery the hub records


def test_a_body_over_the_limit_is_413(hook_hub: Hub, hook_client: TestClient) -> None:
    big = b"{" + b" " * MAX_BODY + b"}"
    response = hook_client.post("/webhooks/stripe", content=big)
    assert response.status_code == 413
    assert _runs(hook_hub) == []


def test_a_typeform_response_arrives_as_a_person_and_a_submission(
    sandbox: Sandbox, hook_hub: Hub, hook_client: TestClient
) -> None:
    app: Any = sandbox.app("typeform")
    token = app.add_record("responses")
    headers, body = app.webhook_delivery(token)
    wrong_headers, _ = app.webhook_delivery(token, "not-the-secret")
    refused = hook_client.post("/webhooks/typeform", content=body, headers=wrong_headers)
    assert refused.status_code == 401 and _records(hook_hub, "typeform") == 0
    response = hook_client.post("/webhooks/typeform", content=body, headers=headers)
    assert response.status_code == 200, response.text
    runs = response.json()["runs"]
    assert sorted((r["stream"], r["inserted"]) for r in runs) == [
        ("responses", 1),
        ("submissions", 1),
    ]
    with hook_hub.engine.connect() as conn:
        assert conn.execute(select(activities.c.kind)).scalars().all() == ["form_submission"]


def test_webhooks_need_no_csrf_token_even_beside_a_session_and_no_role(
    sandbox: Sandbox, hook_hub: Hub, hook_client: TestClient
) -> None:
    with hook_hub.engine.begin() as conn:
        steward = create_token(conn, "ana", "steward")
    sign_in(hook_client, steward)  # a browser session cookie rides along, without a CSRF token
    headers, body = _stripe_delivery(sandbox)
    response = hook_client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 200 and _records(hook_hub, "stripe") == 1
    # A session is no substitute for the signature.
    unsigned = hook_client.post("/webhooks/stripe", content=body)
    assert unsigned.status_code == 401


def test_the_webhook_route_is_documented_and_listed_as_taking_no_token(
    hook_client: TestClient,
) -> None:
    paths = hook_client.get("/api/openapi.json").json()["paths"]
    operation = paths["/webhooks/{connector}"]
    assert set(operation) == {"post"}
    assert {"200", "400", "401", "404"} <= set(operation["post"]["responses"])
    assert UNAUTHENTICATED.issubset(paths)

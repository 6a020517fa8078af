"""Webhook deliveries through the hub: a verified delivery is stored by the normal pipeline;
a refused one stores nothing and is counted. Uses the pytest plugin's sandbox fixtures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from crmhub.hub import Hub
from crmhub.sandbox.world import Sandbox
from crmhub.store.schema import activities, source_records, sync_runs


def _records(hub: Hub, connector: str) -> int:
    with hub.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(source_records)
                .where(source_records.c.connector == connector)
            ).scalar_one()
        )


def _rejected_runs(hub: Hub) -> list[tuple[str, int, str]]:
    with hub.engine.connect() as conn:
        rows = conn.execute(
            select(sync_runs.c.connector, sync_runs.c.rejected, sync_runs.c.status).where(
                sync_runs.c.mode == "webhook", sync_runs.c.status != "succeeded"
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_a_signed_stripe_event_is_stored_and_a_tampered_one_is_rejected(
    crmhub_sandbox: Callable[..., Sandbox], crmhub_hub: Callable[..., Hub]
) -> None:
    sandbox = crmhub_sandbox(30, systems=("stripe",))
    hub = crmhub_hub(sandbox)
    hub.sync()
    before = _records(hub, "stripe")
    app: Any = sandbox.app("stripe")
    app.add_record("customers")
    headers, body = app.signed_delivery(app.last_event("customer.created")["id"])

    tampered = hub.ingest_webhook("stripe", headers, body.replace(b'"customer', b'"kustomer', 1))
    assert not tampered.accepted and tampered.error and "signature" in tampered.error.lower()
    assert _records(hub, "stripe") == before
    assert _rejected_runs(hub) == [("stripe", 1, "rejected")]

    delivered = hub.ingest_webhook("stripe", headers, body)
    assert delivered.accepted
    assert [(r.stream, r.mode, r.counts.inserted) for r in delivered.results] == [
        ("customers", "webhook", 1)
    ]
    assert _records(hub, "stripe") == before + 1
    # The same delivery again (webhooks are delivered at least once): nothing changes.
    again = hub.ingest_webhook("stripe", headers, body)
    assert [r.counts.unchanged for r in again.results] == [1]


def test_a_typeform_response_arrives_as_a_person_and_a_submission(
    crmhub_sandbox: Callable[..., Sandbox], crmhub_hub: Callable[..., Hub]
) -> None:
    sandbox = crmhub_sandbox(20, systems=("typeform",))
    hub = crmhub_hub(sandbox)
    app: Any = sandbox.app("typeform")
    token = app.add_record("responses")
    headers, body = app.webhook_delivery(token)

    wrong = hub.ingest_webhook("typeform", headers, body + b" ")
    assert not wrong.accepted and _records(hub, "typeform") == 0

    delivered = hub.ingest_webhook("typeform", headers, body)
    assert delivered.accepted
    assert sorted((r.stream, r.counts.inserted) for r in delivered.results) == [
        ("responses", 1),
        ("submissions", 1),
    ]
    with hub.engine.connect() as conn:
        kinds = conn.execute(select(activities.c.kind)).scalars().all()
    assert kinds == ["form_submission"]
    assert _rejected_runs(hub) == [("typeform", 1, "rejected")]

"""Webhook endpoints: ``POST /webhooks/{connector}`` takes a delivery from a connected
system (Stripe, Typeform, ...) and feeds it through the normal pipeline.

There is no token and no CSRF check here: the sender is a system, not a browser, and the
connector's signature over the raw body is the authentication. The body is handed on
byte for byte with the headers to :meth:`crmhub.hub.Hub.ingest_webhook`:

- 200 with the counts when the delivery was verified and stored;
- 401 when the signature is missing, wrong or too old: nothing is stored, and the hub
  records a ``rejected`` run (it shows on the runs page);
- 404 for a connector instance that is not configured (or is disabled);
- 400 for one that takes no webhooks, or a signed body the connector cannot read;
- 413 for a body over :data:`MAX_BODY` bytes; 503 when storing failed (the sender retries;
  a repeated delivery changes nothing).

Neither bodies nor headers are logged: they carry personal data and signatures.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from crmhub.errors import ConnectorError, CrmhubError
from crmhub.hub import Hub, WebhookOutcome
from crmhub.store.runs import Counts
from crmhub.web.deps import get_hub
from crmhub.web.ops import RunCounts

__all__ = ["MAX_BODY", "UNAUTHENTICATED", "router"]

log = structlog.get_logger("crmhub.web.webhooks")

MAX_BODY = 5 * 1024 * 1024
"""The largest delivery taken, in bytes (Stripe's and Typeform's events are far smaller)."""

router = APIRouter(tags=["webhooks"])

UNAUTHENTICATED = frozenset({"/webhooks/{connector}"})
"""Routes that take no token (the signature authenticates the sender): a review of the roles
of every route leaves these out."""

_NOT_HANDED_ON = frozenset({"authorization", "cookie"})
"""Request headers the connector has no business seeing."""


class WebhookRun(RunCounts):
    """The run that stored one stream's records of the delivery, with its counts."""

    stream: str
    run_id: int | None
    status: str


class WebhookAccepted(BaseModel):
    """A verified delivery and what it stored (an event of a kind the hub does not take is
    verified and stores nothing: no runs)."""

    accepted: bool = True
    connector: str
    runs: list[WebhookRun]
    counts: dict[str, int] = Field(description="the runs' counts added up")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The connector takes no webhooks, or the signed body is unreadable"},
    401: {"description": "The signature is missing, wrong or too old; nothing was stored"},
    404: {"description": "No enabled connector instance of that name"},
    413: {"description": "The body is too large"},
    503: {"description": "The delivery could not be stored now; send it again"},
}
_BODY = {
    "requestBody": {
        "required": True,
        "description": "The delivery exactly as the system sent it (signed over these bytes).",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


async def _body(request: Request) -> bytes:
    """The raw body, refused past MAX_BODY (without reading much more than that)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise HTTPException(413, f"the delivery is larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPException(413, f"the delivery is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _ingest(hub: Hub, name: str, headers: dict[str, str], body: bytes) -> WebhookOutcome:
    """Hand the delivery to the hub, turning what can go wrong into an HTTP answer."""
    try:
        return hub.ingest_webhook(name, headers, body)
    except ConnectorError as exc:  # signed, but the connector cannot read it
        log.warning("webhook.unreadable", connector=name, error=type(exc).__name__)
        raise HTTPException(400, f"the delivery cannot be read: {exc}") from None
    except CrmhubError as exc:  # config, mapping, store: not the sender's fault
        log.error("webhook.failed", connector=name, error=type(exc).__name__)
        raise HTTPException(503, "the hub could not take the delivery now") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        # A signed body of an unexpected shape that the connector did not foresee.
        log.warning("webhook.unreadable", connector=name, error=type(exc).__name__)
        raise HTTPException(400, "the delivery cannot be read") from None


@router.post(
    "/webhooks/{connector}",
    response_model=WebhookAccepted,
    responses=_ERRORS,
    openapi_extra=_BODY,
)
async def receive_webhook(
    request: Request,
    connector: Annotated[str, Path(min_length=1, max_length=64)],
    hub: Hub = Depends(get_hub),
) -> WebhookAccepted:
    """Take a signed delivery for connector instance ``connector`` (authenticated by its
    signature, not by a token) and store its records through the normal pipeline."""
    if connector not in hub.connector_names():
        raise HTTPException(404, f"no enabled connector named {connector!r}")
    entry = hub.config.connectors[connector]
    if "webhook" not in hub.plugins.connector(entry.type).capabilities():
        raise HTTPException(400, f"connector {connector!r} takes no webhooks")
    body = await _body(request)
    headers = {k: v for k, v in request.headers.items() if k not in _NOT_HANDED_ON}
    outcome = await run_in_threadpool(_ingest, hub, connector, headers, body)
    if not outcome.accepted:
        raise HTTPException(401, outcome.error or "the webhook signature is not valid")
    runs = [
        WebhookRun(stream=r.stream, run_id=r.run_id, status=r.status, **r.counts.as_dict())
        for r in outcome.results
    ]
    failed = [r for r in outcome.results if not r.ok]
    if failed:
        ids = ", ".join(str(r.run_id) for r in failed)
        raise HTTPException(503, f"storing the delivery failed (run {ids}); send it again")
    total = Counts()
    for r in outcome.results:
        total.add(r.counts)
    return WebhookAccepted(connector=connector, runs=runs, counts=total.as_dict())

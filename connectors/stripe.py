"""The ``stripe`` connector: customers and invoices from Stripe's API v1, customer pushes and
erasure, and verified webhooks.

::

    [connectors.billing]
    type = "stripe"
    api_key = "env:STRIPE_API_KEY"                # a secret (sk_...) or restricted (rk_...) key
    webhook_secret = "env:STRIPE_WEBHOOK_SECRET"  # whsec_..., for webhook deliveries

**Reading.** Stripe lists objects newest first, with ``starting_after`` cursors and ``created``
filters, and keeps no modification time. A stream is therefore read in two parts:

1. *changes*, from the events API (``GET /v1/events`` with ``types[]``): ``customer.updated``
   gives a customer's new version, ``customer.deleted`` its deletion (``Page.deleted``);
   likewise the ``invoice.*`` events. The saved event id is the anchor: ``ending_before`` pages
   walk forward in time from it, so every page's state may move the anchor and still lose
   nothing on a crash.
2. *new objects*, ``created[gte]`` the saved high-water mark. Newest first means the mark can
   only move with the pass's last page; the pages before carry a resume point instead
   (``created[lte]`` of the last object stored plus the ids of that second already stored),
   so a rerun after a crash continues there. Ids seen at the mark's second are kept with it:
   the next pass asks for that second again (an object created in it later is not lost) and
   drops only those ids.

A full read (no state) takes the newest event as its anchor first (when there is none yet,
every event listed later is newer than the read), then lists every object.
:meth:`StripeConnector.state_since` starts both parts at a time instead.

Stripe lists events for 30 days only. When the last event read is older than that
(``events.checked`` in the state, with a day's margin for clock skew), or Stripe no longer
knows the anchor event (404 ``resource_missing``), events may have been missed: the stream is
read in full again instead. A full re-read cannot see deletions made in the gap: records
deleted in Stripe then stay in the hub until erased.

The state of a stream::

    {"created": 1714557600, "at": ["cus_..."],             # high-water mark, ids at that second
     "events": {"after": "evt_..." | null, "checked": 1714560000.0},  # + "since" (no anchor)
     "pass": {"before": ..., "skip": [...], "high": ..., "high_ids": [...]}}   # mid-pass only
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import orjson
import structlog
from pydantic import Field, SecretStr

from crmhub.connector import (
    Change,
    Connector,
    EraseResult,
    HttpConnectorConfig,
    Page,
    Stream,
    WebhookDelivery,
    WriteResult,
)
from crmhub.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    RetriableError,
    SkippableRecordError,
    WebhookSignatureError,
)
from crmhub.hookspecs import hookimpl
from crmhub.paginators import CursorPaginator, json_body

__all__ = ["StripeConfig", "StripeConnector"]

log = structlog.get_logger("crmhub.connectors.stripe")

EVENT_RETENTION = 30 * 86_400
"""Seconds Stripe lists events for."""
_RETENTION_MARGIN = 86_400  # our clock and Stripe's may differ: re-read a day early
_READ_ONLY = frozenset({"id", "object", "created", "deleted", "livemode"})


class StripeConfig(HttpConnectorConfig):
    """Settings of the ``stripe`` connector."""

    base_url: str = "https://api.stripe.com"
    api_key: SecretStr
    """A secret key (``sk_...``) or a restricted key (``rk_...``) that may read customers,
    invoices and events (and write and delete customers, to push and erase)."""
    page_size: int = Field(100, ge=1, le=100)
    """Objects per list request (Stripe's ``limit``: 1 to 100)."""
    webhook_secret: SecretStr | None = None
    """The webhook endpoint's signing secret (``whsec_...``); webhooks are refused without it."""
    webhook_tolerance: int = Field(300, ge=1)
    """Seconds a webhook delivery's signed timestamp may be old (Stripe's default: 300)."""
    stripe_version: str | None = None
    """Pin the API version (``Stripe-Version`` header); None: the account's default."""


@dataclass(frozen=True)
class _Kind:
    """How one stream is read: its list path and the events that change its objects."""

    path: str
    noun: str
    updates: tuple[str, ...]
    deletes: tuple[str, ...]

    @property
    def types(self) -> list[str]:
        return [*self.updates, *self.deletes]


_KINDS = {
    "customers": _Kind("/v1/customers", "customer", ("customer.updated",), ("customer.deleted",)),
    "invoices": _Kind(
        "/v1/invoices",
        "invoice",
        (
            "invoice.updated",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_failed",
            "invoice.payment_succeeded",
            "invoice.marked_uncollectible",
            "invoice.voided",
        ),
        ("invoice.deleted",),
    ),
}
_WEBHOOK_STREAMS = {"customer": "customers", "invoice": "invoices"}


@dataclass
class _Pass:
    """Progress of a pass over new objects, newest first: resume at ``created <= before``
    without the ``skip`` ids; ``high`` / ``high_ids``: the newest second seen and its ids."""

    before: int | None = None
    skip: list[str] = field(default_factory=list)
    high: int | None = None
    high_ids: list[str] = field(default_factory=list)


@dataclass
class _Cursor:
    """The state of one stream (see the module docstring)."""

    created: int | None = None
    at: list[str] = field(default_factory=list)
    events: bool = True  # whether the state follows events at all
    after: str | None = None
    since: int | None = None  # without an anchor: the events created from this second on
    checked: float | None = None
    running: _Pass | None = None

    @classmethod
    def load(cls, state: Mapping[str, Any] | None) -> _Cursor | None:
        """The cursor of a saved state; None for no state or one this version cannot read."""
        if not state:
            return None
        try:
            created = state.get("created")
            cursor = cls(
                created=None if created is None else int(created),
                at=[str(i) for i in state.get("at") or []],
                events="events" in state,
            )
            events = state.get("events") or {}
            cursor.after = None if events.get("after") is None else str(events["after"])
            cursor.since = None if events.get("since") is None else int(events["since"])
            checked = events.get("checked")
            cursor.checked = None if checked is None else float(checked)
            running = state.get("pass")
            if running is not None:
                cursor.running = _Pass(
                    before=None if running.get("before") is None else int(running["before"]),
                    skip=[str(i) for i in running.get("skip") or []],
                    high=None if running.get("high") is None else int(running["high"]),
                    high_ids=[str(i) for i in running.get("high_ids") or []],
                )
        except (AttributeError, TypeError, ValueError):
            log.warning("stripe.state_unreadable")
            return None
        return cursor

    def dump(self) -> dict[str, Any]:
        """The state to save."""
        state: dict[str, Any] = {"created": self.created, "at": list(self.at)}
        if self.events:
            state["events"] = {"after": self.after, "checked": self.checked}
            if self.after is None and self.since is not None:
                state["events"]["since"] = self.since
        if self.running is not None:
            p = self.running
            state["pass"] = {
                "before": p.before,
                "skip": list(p.skip),
                "high": p.high,
                "high_ids": list(p.high_ids),
            }
        return state


class _EventsExpired(Exception):
    """The saved event anchor is past Stripe's retention: events may have been missed."""


def _data(body: Any, path: str) -> list[dict[str, Any]]:
    """The ``data`` list of a Stripe list body."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise FatalError(f"GET {path}: the answer is not a Stripe list (no `data` array)")
    return [item for item in data if isinstance(item, dict)]


def _last_id(body: Any) -> Any:
    data = body.get("data") if isinstance(body, dict) else None
    return data[-1].get("id") if isinstance(data, list) and data else None


def _first_id(body: Any) -> Any:
    data = body.get("data") if isinstance(body, dict) else None
    return data[0].get("id") if isinstance(data, list) and data else None


def _stripe_error(error: ConnectorError) -> dict[str, Any]:
    """The ``error`` object of a Stripe error response (empty when there is none)."""
    response = error.response
    if not isinstance(response, httpx.Response):
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    found = body.get("error") if isinstance(body, dict) else None
    return found if isinstance(found, dict) else {}


def _status(error: ConnectorError) -> int | None:
    response = error.response
    return response.status_code if isinstance(response, httpx.Response) else None


def _describe(error: ConnectorError) -> str:
    """What went wrong, from the status and Stripe's error type, code and parameter, never
    its message (Stripe's messages quote values: an email, a name)."""
    status = _status(error)
    if status is None:
        return f"the Stripe API could not be reached ({type(error).__name__})"
    details = _stripe_error(error)
    text = f"HTTP {status}"
    for name in ("type", "code"):
        value = details.get(name)
        if isinstance(value, str) and value.replace("_", "").isalnum():
            text += f" {value}"
    param = details.get("param")
    if isinstance(param, str) and len(param) <= 60:
        text += f" (parameter {param})"
    return text


def _form_value(value: Any) -> str:
    if value is None:
        return ""  # Stripe unsets a field given an empty value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def form_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    """``Change.fields`` as Stripe's form parameters: nested dicts and dotted keys become
    ``address[line1]``, lists ``key[0]``; None becomes ``""`` (unset); read-only fields
    (``id``, ``object``, ``created``, ...) are left out."""
    out: dict[str, str] = {}

    def put(parts: list[str], value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                put([*parts, str(key)], item)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                put([*parts, str(i)], item)
        else:
            out[parts[0] + "".join(f"[{part}]" for part in parts[1:])] = _form_value(value)

    for key, value in fields.items():
        parts = str(key).split(".")
        if parts[0] not in _READ_ONLY:
            put(parts, value)
    return out


class StripeConnector(Connector):
    """Stripe: ``customers`` (people) and ``invoices`` (activities); pushes and erases
    customers; verifies webhooks. See the module docstring for how reads stay crash-safe."""

    name = "stripe"
    description = "Stripe billing: customers and their invoices"
    Config = StripeConfig
    config: StripeConfig
    default_mapping = "stripe"
    streams: ClassVar[dict[str, Stream]] = {
        "customers": Stream(
            primary_key="id",
            cursor="created",
            kind="person",
            description="customers; updates and deletions through the events API",
        ),
        "invoices": Stream(
            primary_key="id",
            cursor="created",
            kind="activity",
            description="invoices of the customers (amounts in minor units)",
        ),
    }

    def http_settings(self) -> dict[str, Any]:
        """The hub's client settings plus the API key as a bearer token."""
        options = super().http_settings()
        headers = {"Authorization": f"Bearer {self.config.api_key.get_secret_value()}"}
        if self.config.stripe_version:
            headers["Stripe-Version"] = self.config.stripe_version
        options["headers"] = headers
        return options

    # ------------------------------------------------------------------ check
    def check(self) -> None:
        """List one customer: proves the host answers and the key may read.

        Raises:
            AuthError: Stripe refused the key (401) or its permissions (403).
            ConnectorError: the API cannot be reached or keeps failing.
        """
        try:
            self.http.get("/v1/customers", params={"limit": 1})
        except AuthError as exc:
            status = _status(exc)
            reason = (
                "Stripe refused the API key"
                if status == 401
                else "the API key may not read customers"
            )
            raise AuthError(
                f"{reason} (HTTP {status}): check `api_key` (a secret key sk_... or a "
                "restricted key rk_... with read access to customers, invoices and events)",
                connector=self.instance_name,
            ) from None
        except RetriableError as exc:
            host = httpx.URL(self.config.base_url).host
            if exc.response is None:
                raise ConnectorError(
                    f"cannot reach the Stripe API at {host}: check `base_url` and the network",
                    connector=self.instance_name,
                ) from None
            raise ConnectorError(
                f"the Stripe API at {host} keeps failing (HTTP {_status(exc)}): try again later",
                connector=self.instance_name,
            ) from None

    # ------------------------------------------------------------------ read
    def _kind(self, stream: str) -> _Kind:
        kind = _KINDS.get(stream)
        if kind is None:
            raise FatalError(
                f"unknown stream {stream!r} (streams: {', '.join(_KINDS)})",
                connector=self.instance_name,
            )
        return kind

    def state_since(self, stream: str, since: datetime) -> dict[str, Any]:
        """The state from which :meth:`read` returns the objects of ``stream`` created or
        changed at or after ``since``: objects ``created[gte]`` it, events ``created[gte]``
        it. Stripe lists events for 30 days only: from an earlier time, changes cannot be
        asked for, so the state is empty and the read is a full one."""
        self._kind(stream)
        moment = since if since.tzinfo else since.replace(tzinfo=UTC)
        second = math.ceil(moment.timestamp())  # `created` counts whole seconds
        now = self._now()
        if second < now - (EVENT_RETENTION - _RETENTION_MARGIN):
            return {}
        return {
            "created": second,
            "at": [],
            "events": {"after": None, "since": second, "checked": now},
        }

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        """Yield pages of ``stream``: changes since the saved event anchor, then objects
        created since the saved mark (everything, without state). Each page's state is safe
        to commit with it. See the module docstring."""
        kind = self._kind(stream)
        cursor = _Cursor.load(state)
        if cursor is None:
            yield from self._full(kind)
            return
        if cursor.events:
            if cursor.checked is None or cursor.checked < self._now() - (
                EVENT_RETENTION - _RETENTION_MARGIN
            ):
                log.warning("stripe.events_expired", connector=self.instance_name, stream=stream)
                yield from self._full(kind)
                return
            try:
                yield from self._changes(kind, cursor)
            except _EventsExpired:
                log.warning("stripe.events_expired", connector=self.instance_name, stream=stream)
                yield from self._full(kind)
                return
        yield from self._new_objects(kind, cursor)

    @staticmethod
    def _now() -> float:
        return time.time()

    def _full(self, kind: _Kind) -> Iterator[Page]:
        """Everything: the newest event becomes the anchor first, so that whatever changes
        while the objects are listed is read as a change next time."""
        checked = self._now()
        response = self.http.get("/v1/events", params={"limit": 1, "types[]": kind.types})
        newest = _data(json_body(response), "/v1/events")
        cursor = _Cursor(
            after=str(newest[0]["id"]) if newest and newest[0].get("id") else None,
            checked=checked,
        )
        yield from self._new_objects(kind, cursor)

    def _changes(self, kind: _Kind, cursor: _Cursor) -> Iterator[Page]:
        """Pages of the objects the events since the anchor changed or deleted, oldest
        first (so the newest version of an object is stored last)."""
        checked = self._now()
        size = self.config.page_size
        params: dict[str, Any] = {"limit": size, "types[]": kind.types}
        if cursor.after is None:
            # No anchor: no event of these types existed at the full read (or the state starts
            # at `since`); all there are now came after it. Few: read them newest first, then
            # emit them oldest first.
            if cursor.since is not None:
                params["created[gte]"] = cursor.since
            events: list[dict[str, Any]] = []
            paginator = CursorPaginator(
                param="starting_after", cursor=_last_id, has_more="has_more"
            )
            for _, body in paginator.pages(self.http, "/v1/events", params):
                events.extend(_data(body, "/v1/events"))
            events.reverse()
            chunks = [events[i : i + size] for i in range(0, len(events), size)] or [[]]
            for chunk in chunks:
                if chunk:
                    cursor.after = str(chunk[-1].get("id"))
                cursor.checked = checked
                yield self._change_page(kind, chunk, cursor)
            return
        params["ending_before"] = cursor.after
        paginator = CursorPaginator(param="ending_before", cursor=_first_id, has_more="has_more")
        pages = paginator.pages(self.http, "/v1/events", params)
        try:
            _, body = next(pages)
        except (SkippableRecordError, FatalError) as exc:
            if _stripe_error(exc).get("code") == "resource_missing":
                raise _EventsExpired from None
            raise
        while True:
            chunk = _data(body, "/v1/events")
            chunk.reverse()  # an ending_before page is the block just newer, newest first
            if chunk:
                cursor.after = str(chunk[-1].get("id"))
            cursor.checked = checked
            yield self._change_page(kind, chunk, cursor)
            try:
                _, body = next(pages)
            except StopIteration:
                return

    def _change_page(self, kind: _Kind, events: list[dict[str, Any]], cursor: _Cursor) -> Page:
        records: list[dict[str, Any]] = []
        deleted: list[str] = []
        for event in events:
            data = event.get("data")
            obj = data.get("object") if isinstance(data, dict) else None
            if not isinstance(obj, dict) or obj.get("object") != kind.noun:
                continue
            if event.get("type") in kind.deletes:
                if obj.get("id"):
                    deleted.append(str(obj["id"]))
            else:
                records.append(obj)
        return Page(records=records, deleted=deleted, state=cursor.dump())

    def _new_objects(self, kind: _Kind, cursor: _Cursor) -> Iterator[Page]:
        """Pages of the objects created since the mark, newest first; only the last page
        moves the mark, the others carry a resume point."""
        running = cursor.running or _Pass()
        params: dict[str, Any] = {"limit": self.config.page_size}
        if cursor.created is not None:
            params["created[gte]"] = cursor.created
        if running.before is not None:
            params["created[lte]"] = running.before
        known = set(cursor.at)  # stored by an earlier pass, at the mark's second
        resumed = set(running.skip)  # stored by this pass before a crash, at `before`
        resume_at = running.before
        paginator = CursorPaginator(param="starting_after", cursor=_last_id, has_more="has_more")
        for _, body in paginator.pages(self.http, kind.path, params):
            records: list[dict[str, Any]] = []
            for obj in _data(body, kind.path):
                created, object_id = obj.get("created"), str(obj.get("id"))
                if not isinstance(created, int) or isinstance(created, bool):
                    records.append(obj)  # no usable `created`: stored, cursor untouched
                    continue
                if (created == cursor.created and object_id in known) or (
                    created == resume_at and object_id in resumed
                ):
                    continue
                records.append(obj)
                if running.high is None or created > running.high:
                    running.high, running.high_ids = created, [object_id]
                elif created == running.high:
                    running.high_ids.append(object_id)
                if created == running.before:
                    running.skip.append(object_id)
                else:
                    running.before, running.skip = created, [object_id]
            if body.get("has_more") is True:
                cursor.running = running
            else:
                cursor.running = None
                if running.high is not None:
                    if running.high == cursor.created:
                        cursor.at = [*cursor.at, *running.high_ids]
                    else:
                        cursor.created, cursor.at = running.high, list(running.high_ids)
            yield Page(records=records, state=cursor.dump())

    # ------------------------------------------------------------------ write
    def write(self, stream: str, changes: Iterable[Change]) -> Iterator[WriteResult]:
        """Update (``POST /v1/customers/{id}``) or create (``POST /v1/customers``) customers,
        form-encoded, each with its ``Idempotency-Key``: a retried push is applied once.

        Raises:
            FatalError: for a stream other than ``customers``.
            AuthError: Stripe refused the key: no later change could be pushed either.
        """
        if stream != "customers":
            raise FatalError(
                f"stream {stream!r} cannot be written (only customers)",
                connector=self.instance_name,
            )
        for change in changes:
            yield self._write_one(change)

    def _write_one(self, change: Change) -> WriteResult:
        key, external_id = change.idempotency_key, change.external_id
        path = "/v1/customers"
        if external_id is not None:
            path += "/" + quote(external_id, safe="")
        try:
            response = self.http.post(
                path, data=form_fields(change.fields), headers={"Idempotency-Key": key}
            )
        except AuthError:
            raise
        except SkippableRecordError as exc:
            error = _describe(exc)
            if _status(exc) in (404, 410):
                error = f"the customer is not in Stripe (deleted?): {error}"
            return WriteResult(key, ok=False, external_id=external_id, error=error)
        except RetriableError as exc:
            return WriteResult(
                key, ok=False, external_id=external_id, error=_describe(exc), retriable=True
            )
        except ConnectorError as exc:
            # 409: a request with this key is still running at Stripe: try again later.
            return WriteResult(
                key,
                ok=False,
                external_id=external_id,
                error=_describe(exc),
                retriable=_status(exc) == 409,
            )
        body = json_body(response)
        new_id = body.get("id") if isinstance(body, dict) else None
        return WriteResult(key, ok=True, external_id=str(new_id) if new_id else external_id)

    # ------------------------------------------------------------------ erase
    def erase(self, external_ids: Iterable[str]) -> Iterator[EraseResult]:
        """Delete customers (``DELETE /v1/customers/{id}``); one Stripe no longer has
        (404) is ``already_gone``. Stripe keeps its invoices, with the name and email copied
        on them: Stripe offers no API to redact those.

        Raises:
            AuthError: Stripe refused the key: no later erasure could succeed either.
        """
        for external_id in external_ids:
            try:
                self.http.delete("/v1/customers/" + quote(external_id, safe=""))
            except AuthError:
                raise
            except SkippableRecordError as exc:
                if _status(exc) in (404, 410):
                    yield EraseResult(external_id, "already_gone")
                else:
                    yield EraseResult(external_id, "failed", error=_describe(exc))
            except RetriableError as exc:
                yield EraseResult(external_id, "failed", error=_describe(exc), retriable=True)
            except ConnectorError as exc:
                yield EraseResult(external_id, "failed", error=_describe(exc))
            else:
                yield EraseResult(external_id, "erased")

    # ------------------------------------------------------------------ webhooks
    def webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> list[WebhookDelivery]:
        """Verify ``Stripe-Signature`` and turn a ``customer.*`` or ``invoice.*`` event into
        records (``*.deleted``: a deleted id); other events give nothing.

        The signature is ``t=<seconds>,v1=<hex>[,v1=...]``: the HMAC-SHA256 of
        ``"<t>.<body>"`` under ``webhook_secret``; one matching ``v1`` suffices (Stripe sends
        several while a secret is rolled). A ``t`` older than ``webhook_tolerance`` seconds is
        refused (a replay).

        Raises:
            WebhookSignatureError: no secret configured, or the signature is missing,
                malformed, wrong or too old.
        """
        secret = self.config.webhook_secret
        if secret is None:
            raise WebhookSignatureError(
                "no `webhook_secret` is configured: webhooks cannot be verified",
                connector=self.instance_name,
            )
        header = next(
            (value for name, value in headers.items() if name.lower() == "stripe-signature"), None
        )
        if not header:
            raise WebhookSignatureError(
                "the delivery has no Stripe-Signature header", connector=self.instance_name
            )
        stamp: int | None = None
        signatures: list[str] = []
        for item in header.split(","):
            name, _, value = item.strip().partition("=")
            if name == "t":
                try:
                    stamp = int(value)
                except ValueError:
                    stamp = None
            elif name == "v1":
                signatures.append(value)
        if stamp is None or not signatures:
            raise WebhookSignatureError(
                "the Stripe-Signature header has no timestamp or no v1 signature",
                connector=self.instance_name,
            )
        key = secret.get_secret_value().encode()
        expected = hmac.new(key, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        # Compare with every signature given (constant time each), not stopping at a match.
        matches = [hmac.compare_digest(expected.encode(), s.encode()) for s in signatures]
        if not any(matches):
            raise WebhookSignatureError(
                "the webhook signature does not match (wrong secret or altered body)",
                connector=self.instance_name,
            )
        current = self._now() if now is None else now
        if current - stamp > self.config.webhook_tolerance:
            raise WebhookSignatureError(
                f"the webhook was signed {int(current - stamp)} s ago, more than the "
                f"{self.config.webhook_tolerance} s tolerated (a replay?)",
                connector=self.instance_name,
            )
        return self._deliveries(body)

    def _deliveries(self, body: bytes) -> list[WebhookDelivery]:
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise FatalError("the webhook body is not JSON", connector=self.instance_name) from None
        if not isinstance(event, dict):
            return []
        kind, event_id = event.get("type"), event.get("id")
        data = event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(kind, str) or not isinstance(obj, dict) or not obj.get("id"):
            return []
        noun, _, action = kind.partition(".")
        stream = _WEBHOOK_STREAMS.get(noun)
        if stream is None or obj.get("object") != noun:
            return []
        if noun == "customer" and action not in ("created", "updated", "deleted"):
            return []  # customer.subscription.*, customer.source.*, ...: other objects
        page = Page(deleted=[str(obj["id"])]) if action == "deleted" else Page(records=[obj])
        return [WebhookDelivery(stream, page, str(event_id) if isinstance(event_id, str) else None)]


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    """Register the ``stripe`` connector."""
    register(StripeConnector)

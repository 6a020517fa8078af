"""The Stripe sandbox: customers, invoices and events as Stripe's API v1 serves them.

The routes the ``stripe`` connector and the tests use, with Stripe's parameter names, limits,
shapes and status codes:

- ``GET /v1/customers`` and ``GET /v1/invoices``: lists newest first, ``limit`` 1..100 (default
  10), ``starting_after`` / ``ending_before`` cursors (object ids), ``created`` filters
  (``created[gt|gte|lt|lte]`` or an exact value), answered as
  ``{"object": "list", "data": [...], "has_more": bool, "url": ...}``;
- ``GET /v1/customers/{id}`` (a deleted customer answers ``{"id", "object", "deleted": true}``),
  ``POST /v1/customers`` (create) and ``POST /v1/customers/{id}`` (update) with form-encoded
  bodies (``address[line1]=...``, ``metadata[key]=...``, an empty value unsets), honouring
  ``Idempotency-Key`` (same key and parameters: the first response replayed; same key and other
  parameters: 400 ``idempotency_error``); ``DELETE /v1/customers/{id}`` (once more: 404
  ``resource_missing``);
- ``GET /v1/invoices/{id}`` and ``POST /v1/invoices/{id}/pay``;
- ``GET /v1/events`` (``type``, with a trailing ``*`` wildcard, or ``types[]``; ``created``;
  cursors) and ``GET /v1/events/{id}``: one event for every create, update and delete made
  through the API or :meth:`StripeSandbox.add_record`, listed for 30 days as Stripe does.

Errors are ``{"error": {"type", "code", "message", "param", "doc_url"}}``. Every list request
costs O(page + log n): objects live in dicts, their list order in sorted lists of
``(created, seq, id)`` keys searched with bisect. :meth:`StripeSandbox.signed_delivery` signs an
event as a webhook delivery (``Stripe-Signature``), for the web tests.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import heapq
import hmac
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import islice
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
import orjson

from crmhub.errors import NormalizationError
from crmhub.normalize import normalize_country
from crmhub.sampledata import FIRST_NAMES, LAST_NAMES
from crmhub.sandbox.app import SandboxApp, SandboxRequest, basic_credentials, bearer_token, route

__all__ = ["StripeSandbox"]

RETENTION = 30 * 86_400
"""Seconds Stripe lists events for."""

_API_VERSION = "2024-06-20"
_ALPHABET = string.ascii_letters + string.digits
# Random bytes -> id characters in one C call (the slight bias of 256 % 62 does not matter).
_ID_CHARS = bytes(ord(_ALPHABET[i % len(_ALPHABET)]) for i in range(256))
_PREFIX_CHARS = bytes(ord((string.ascii_uppercase + string.digits)[i % 36]) for i in range(256))
_LIST_PARAMS = frozenset(
    {"limit", "starting_after", "ending_before", "expand[]", "created", "created[gt]",
     "created[gte]", "created[lt]", "created[lte]"}
)  # fmt: skip
_CUSTOMER_LIST_PARAMS = _LIST_PARAMS | {"email"}
_INVOICE_LIST_PARAMS = _LIST_PARAMS | {"customer", "status"}
_EVENT_LIST_PARAMS = _LIST_PARAMS | {"type", "types[]", "delivery_success"}
_CUSTOMER_PARAMS = frozenset({"name", "email", "phone", "description", "address", "metadata"})
_ADDRESS_PARTS = ("city", "country", "line1", "line2", "postal_code", "state")
_CURRENCY = {"GB": "gbp", "US": "usd", "CA": "cad", "AU": "aud", "CH": "chf", "SE": "sek",
             "DK": "dkk", "NO": "nok", "PL": "pln", "JP": "jpy"}  # fmt: skip
_STATUSES = ("paid", "open", "void", "uncollectible", "draft")
_STATUS_CUMULATIVE = (0.72, 0.84, 0.90, 0.94, 1.0)
_INVOICE_COUNT_CUMULATIVE = (0.3, 0.65, 0.85, 1.0)  # 0, 1, 2 or 3 invoices per customer

Key = tuple[int, int, str]
"""Where an object sits in its list: (created, insertion sequence, id)."""


class _StripeError(Exception):
    """An error answered in Stripe's shape (``param`` and ``type`` included)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind


def _missing(noun: str, object_id: str, param: str = "id") -> _StripeError:
    return _StripeError(404, f"No such {noun}: '{object_id}'", code="resource_missing", param=param)


def _answers(handler: Callable[..., httpx.Response]) -> Callable[..., httpx.Response]:
    """Turn a :class:`_StripeError` raised by a handler into Stripe's error response."""

    @functools.wraps(handler)
    def wrapper(self: StripeSandbox, request: SandboxRequest) -> httpx.Response:
        try:
            return handler(self, request)
        except _StripeError as exc:
            return self.error_response(exc)

    return wrapper


@functools.lru_cache(maxsize=512)
def _country_code(value: str) -> str | None:
    try:
        return normalize_country(value) if value.strip() else None
    except NormalizationError:
        return None


def _epoch(stamp: str, default: int) -> int:
    """Seconds since the epoch of an ISO-8601 time (``default`` when blank or unreadable)."""
    try:
        return int(datetime.fromisoformat(stamp).timestamp()) if stamp else default
    except ValueError:
        return default


def _copy(obj: Any) -> Any:
    """A deep copy of a JSON object (events keep the object as it was)."""
    return orjson.loads(orjson.dumps(obj))


class _Collection:
    """Objects of one kind: a dict by id plus their list order, a sorted list of keys. Keys
    of deleted objects are kept, so a cursor naming one still has a place in the list."""

    __slots__ = ("by_id", "index", "keys", "noun")

    def __init__(self, noun: str) -> None:
        self.noun = noun
        self.by_id: dict[str, dict[str, Any]] = {}
        self.index: list[Key] = []
        self.keys: dict[str, Key] = {}

    def add(self, obj: dict[str, Any], key: Key, *, sort: bool = True) -> None:
        """Add an object at ``key``; ``sort=False`` appends (call :meth:`sort` after)."""
        self.by_id[key[2]] = obj
        self.keys[key[2]] = key
        if not sort or not self.index or key > self.index[-1]:
            self.index.append(key)  # the usual case: the newest object
        else:
            bisect.insort(self.index, key)

    def sort(self) -> None:
        self.index.sort()

    def remove(self, object_id: str) -> dict[str, Any]:
        obj = self.by_id.pop(object_id)
        key = self.keys[object_id]
        del self.index[bisect.bisect_left(self.index, key)]
        return obj

    def key(self, object_id: str, param: str) -> Key:
        """The list position of a cursor object; 404 ``resource_missing`` if unknown."""
        key = self.keys.get(object_id)
        if key is None:
            raise _missing(self.noun, object_id, param)
        return key

    def get(self, object_id: str) -> dict[str, Any]:
        obj = self.by_id.get(object_id)
        if obj is None:
            raise _missing(self.noun, object_id)
        return obj


def _created_range(request: SandboxRequest) -> tuple[int | None, int | None]:
    """The ``created`` filters as [low, high) seconds (None: open)."""
    low: int | None = None
    high: int | None = None
    for name, text in request.query.items():
        if name != "created" and not name.startswith("created["):
            continue
        try:
            value = int(text)
        except ValueError:
            raise _StripeError(
                400, f"Invalid integer: {text}", code="parameter_invalid_integer", param=name
            ) from None
        op = name[8:-1] if name != "created" else "eq"
        if op in ("gt", "gte", "eq"):
            bound = value + 1 if op == "gt" else value
            low = bound if low is None else max(low, bound)
        if op in ("lt", "lte", "eq"):
            bound = value if op == "lt" else value + 1
            high = bound if high is None else min(high, bound)
    return low, high


def _bounds(index: Sequence[Key], low: int | None, high: int | None) -> tuple[int, int]:
    """Positions [lo, hi) of the keys created in [low, high)."""
    # (t,) sorts before every key of second t and after every key of the seconds before.
    lo = bisect.bisect_left(index, (low,)) if low is not None else 0
    hi = bisect.bisect_left(index, (high,)) if high is not None else len(index)
    return lo, max(lo, hi)


def _ascending(index: Sequence[Key], start: int, stop: int) -> Iterator[Key]:
    for i in range(start, stop):
        yield index[i]


def _descending(index: Sequence[Key], start: int, stop: int) -> Iterator[Key]:
    for i in range(stop - 1, start - 1, -1):
        yield index[i]


class StripeSandbox(SandboxApp):
    """Stripe's customers, invoices and events (see the module docstring).

    Attributes:
        customers, invoices, events: the objects by id, with their list order.
        webhook_secret: the endpoint secret :meth:`signed_delivery` signs with.
    """

    system: ClassVar[str] = "stripe"
    host: ClassVar[str] = "api.stripe.sandbox"
    default_credentials: ClassVar[str] = "sk_test_sandbox"
    default_webhook_secret: ClassVar[str] = "whsec_sandbox"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.webhook_secret = self.default_webhook_secret
        self.customers = _Collection("customer")
        self.invoices = _Collection("invoice")
        self.events = _Collection("event")
        self._event_types: dict[str, list[Key]] = {}
        self._deleted: set[str] = set()
        self._idempotency: dict[str, tuple[Any, int, bytes]] = {}
        self._seq = 0

    # ------------------------------------------------------------------ the SandboxApp contract
    def authorized(self, request: SandboxRequest) -> bool:
        """A secret key as a bearer token, or as the basic-auth user name (``curl -u sk_...:``)."""
        key = bearer_token(request)
        if key is None:
            basic = basic_credentials(request)
            key = basic[0] if basic else None
        return key is not None and hmac.compare_digest(key.encode(), self.credentials.encode())

    def error_body(self, status: int, message: str, code: str | None) -> Any:
        """Stripe's ``{"error": {...}}`` for the base class's errors (auth, faults, no route)."""
        if status == 401:
            message = "Invalid API Key provided. Find your API keys in the Dashboard."
            code = None
        elif status == 429:
            message = "Request rate limit exceeded. Learn more about rate limits here."
            code = "rate_limit"
        elif status == 404 and code is None:
            message = f"Unrecognized request URL. {message}"
        kind = "api_error" if status >= 500 else "invalid_request_error"
        return self._error_json(_StripeError(status, message, code=code, kind=kind))

    def error_response(self, error: _StripeError) -> httpx.Response:
        """The response of one Stripe error."""
        return self.json(self._error_json(error), error.status)

    @staticmethod
    def _error_json(error: _StripeError) -> dict[str, Any]:
        body: dict[str, Any] = {"type": error.kind, "message": error.message}
        if error.code:
            body["code"] = error.code
            body["doc_url"] = f"https://stripe.com/docs/error-codes/{error.code.replace('_', '-')}"
        if error.param:
            body["param"] = error.param
        return {"error": body}

    def environ(self) -> dict[str, str]:
        """The API key and the webhook secret, as environment variables."""
        return {**super().environ(), self.webhook_env_name: self.webhook_secret}

    @property
    def webhook_env_name(self) -> str:
        """The environment variable the webhook secret is handed over in."""
        return f"CRMHUB_SANDBOX_{self.system.upper()}_WEBHOOK_SECRET"

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        """The API key and the webhook secret as ``env:`` references."""
        return {
            **super().connector_settings(base_url),
            "webhook_secret": f"env:{self.webhook_env_name}",
        }

    # ------------------------------------------------------------------ seeding
    def seed(self, rows: Iterable[Mapping[str, str]]) -> None:
        """One customer per row (created at its ``updated_at``) and 0 to 3 invented invoices
        each, drawn from :attr:`random`; no events (Stripe keeps them 30 days only)."""
        now = self.now()
        with self._lock:
            for row in rows:
                created = _epoch(row.get("updated_at", ""), now)
                customer = self._new_customer(created)
                name = " ".join(p for p in (row.get("first_name"), row.get("last_name")) if p)
                address = {
                    "city": row.get("city") or None,
                    "country": row.get("country") or None,
                    "line1": row.get("street") or None,
                    "line2": None,
                    "postal_code": row.get("postcode") or None,
                    "state": None,
                }
                metadata = {
                    field: row[source]
                    for field, source in (
                        ("company", "company"),
                        ("job_title", "job_title"),
                        ("birth_date", "birth_date"),
                        ("person_key", "person_key"),
                    )
                    if row.get(source)
                }
                customer.update(
                    name=name or None,
                    email=row.get("email") or None,
                    phone=row.get("phone") or None,
                    address=address if any(address.values()) else None,
                    metadata=metadata,
                )
                self._store(self.customers, customer, sort=False)
                count = bisect.bisect(_INVOICE_COUNT_CUMULATIVE, self.random.random())
                for _ in range(count):
                    stamp = created + int(self.random.random() * 90 * 86_400)
                    self._store(self.invoices, self._new_invoice(customer, stamp), sort=False)
            # Sorted once: inserting each seeded object in order would cost O(n) apiece.
            self.customers.sort()
            self.invoices.sort()

    def add_record(self, stream: str) -> str:
        """A new customer or invoice, created now (newer than every other), with its
        ``customer.created`` or ``invoice.created`` event."""
        with self._lock:
            if stream == "customers":
                customer = self._new_customer(self._newest(self.customers))
                first, last = self.random.choice(FIRST_NAMES), self.random.choice(LAST_NAMES)
                number = int(self.random.random() * 10_000)
                customer.update(
                    name=f"{first} {last}",
                    email=f"{first}.{last}{number}@example.com".lower(),
                    metadata={},
                )
                self._store(self.customers, customer)
                self._record("customer.created", customer, api=False)
                return str(customer["id"])
            if stream == "invoices":
                if not self.customers.by_id:
                    self.add_record("customers")
                ids = list(self.customers.by_id)  # a test helper: a scan is fine here
                customer = self.customers.by_id[self.random.choice(ids)]
                invoice = self._new_invoice(customer, self._newest(self.invoices), status="open")
                self._store(self.invoices, invoice)
                self._record("invoice.created", invoice, api=False)
                return str(invoice["id"])
        raise KeyError(f"the Stripe sandbox has no stream {stream!r}")

    def _newest(self, collection: _Collection) -> int:
        """Now, or the newest creation time if the clock is behind it (never older)."""
        index = collection.index
        return max(self.now(), index[-1][0] if index else 0)

    # ------------------------------------------------------------------ object builders
    def _new_id(self, prefix: str, length: int, taken: Mapping[str, Any]) -> str:
        while True:
            value = prefix + self.random.randbytes(length).translate(_ID_CHARS).decode()
            if value not in taken:
                return value

    def _new_customer(self, created: int) -> dict[str, Any]:
        return {
            "id": self._new_id("cus_", 14, self.customers.keys),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": created,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "email": None,
            "invoice_prefix": self.random.randbytes(8).translate(_PREFIX_CHARS).decode(),
            "livemode": False,
            "metadata": {},
            "name": None,
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }

    def _new_invoice(
        self, customer: dict[str, Any], created: int, status: str | None = None
    ) -> dict[str, Any]:
        r = self.random
        status = status or _STATUSES[bisect.bisect(_STATUS_CUMULATIVE, r.random())]
        country = _country_code((customer.get("address") or {}).get("country") or "")
        currency = _CURRENCY.get(country or "", "eur")
        due = 500 + int(r.random() * 200) * 250  # 5.00 to 504.75 in steps of 2.50
        paid = due if status == "paid" else 0
        number = None
        if status != "draft":
            number = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
            customer["next_invoice_sequence"] += 1
        finalized = None if status == "draft" else created + 3600
        return {
            "id": self._new_id("in_", 24, self.invoices.keys),
            "object": "invoice",
            "amount_due": due,
            "amount_paid": paid,
            "amount_remaining": due - paid if status in ("open", "draft", "uncollectible") else 0,
            "attempt_count": 1 if status in ("paid", "uncollectible") else 0,
            "billing_reason": "manual",
            "collection_method": "send_invoice",
            "created": created,
            "currency": currency,
            "customer": customer["id"],
            "customer_email": customer.get("email"),
            "customer_name": customer.get("name"),
            "description": None,
            "due_date": created + 30 * 86_400,
            "livemode": False,
            "metadata": {},
            "number": number,
            "paid": status == "paid",
            "period_end": created,
            "period_start": created,
            "status": status,
            "status_transitions": {
                "finalized_at": finalized,
                "marked_uncollectible_at": created + 40 * 86_400
                if status == "uncollectible"
                else None,
                "paid_at": created + 86_400 if status == "paid" else None,
                "voided_at": created + 86_400 if status == "void" else None,
            },
            "subtotal": due,
            "total": due,
        }

    def _store(self, collection: _Collection, obj: dict[str, Any], *, sort: bool = True) -> None:
        self._seq += 1
        collection.add(obj, (int(obj["created"]), self._seq, str(obj["id"])), sort=sort)

    def _record(
        self,
        kind: str,
        obj: dict[str, Any],
        previous: dict[str, Any] | None = None,
        *,
        api: bool = True,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Record one event about ``obj`` (its state now), as Stripe does on every change;
        ``api``: the change came through an API request (else, as from the Dashboard)."""
        data: dict[str, Any] = {"object": _copy(obj)}
        if previous is not None:
            data["previous_attributes"] = _copy(previous)
        request_id = self._new_id("req_", 14, {}) if api else None
        event_id = self._new_id("evt_", 24, self.events.keys)
        event: dict[str, Any] = {
            "id": event_id,
            "object": "event",
            "api_version": _API_VERSION,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": kind,
        }
        self._store(self.events, event)
        key = self.events.keys[event_id]
        per_type = self._event_types.setdefault(kind, [])
        if not per_type or key > per_type[-1]:
            per_type.append(key)
        else:
            bisect.insort(per_type, key)
        return event

    # ------------------------------------------------------------------ webhooks
    def last_event(self, kind: str | None = None) -> dict[str, Any] | None:
        """The newest event (of type ``kind``, if given), or None."""
        with self._lock:
            index = self._event_types.get(kind, []) if kind else self.events.index
            return self.events.by_id[index[-1][2]] if index else None

    def signed_delivery(
        self,
        event: str | Mapping[str, Any],
        *,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """The headers and body of a webhook delivery of ``event`` (an event id recorded here,
        or an event object), signed as Stripe signs: ``Stripe-Signature: t=...,v1=...`` with
        the HMAC-SHA256 of ``"{t}.{body}"`` under :attr:`webhook_secret` (or ``secret``)."""
        if isinstance(event, str):
            with self._lock:
                event = self.events.get(event)
        body = orjson.dumps(event)
        stamp = self.now() if timestamp is None else int(timestamp)
        key = (secret if secret is not None else self.webhook_secret).encode()
        digest = hmac.new(key, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "Stripe-Signature": f"t={stamp},v1={digest}"}
        return headers, body

    # ------------------------------------------------------------------ lists
    def _check_params(self, request: SandboxRequest, allowed: frozenset[str]) -> None:
        for name in request.raw.url.params:
            if name not in allowed:
                raise _StripeError(
                    400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
                )

    def _limit(self, request: SandboxRequest) -> int:
        text = request.query.get("limit", "")
        if text == "":
            return 10
        try:
            value = int(text)
        except ValueError:
            value = 0
        if not 1 <= value <= 100:
            raise _StripeError(
                400,
                f"Invalid limit: must be an integer between 1 and 100, got {text}",
                code="parameter_invalid_integer",
                param="limit",
            )
        return value

    def _cursors(
        self, request: SandboxRequest, collection: _Collection
    ) -> tuple[Key | None, Key | None]:
        after, before = request.query.get("starting_after"), request.query.get("ending_before")
        if after and before:
            raise _StripeError(
                400,
                "You may only specify one of these parameters: ending_before, starting_after.",
                code="parameter_invalid",
            )
        return (
            collection.key(after, "starting_after") if after else None,
            collection.key(before, "ending_before") if before else None,
        )

    def _list(
        self,
        request: SandboxRequest,
        collection: _Collection,
        indexes: Sequence[Sequence[Key]],
        *,
        floor: int | None = None,
    ) -> httpx.Response:
        """One page of the keys in ``indexes`` (merged), newest first, as a Stripe list."""
        limit = self._limit(request)
        after, before = self._cursors(request, collection)
        low, high = _created_range(request)
        if floor is not None:
            low = floor if low is None else max(low, floor)
            for cursor, name in ((after, "starting_after"), (before, "ending_before")):
                if cursor is not None and cursor[0] < floor:
                    raise _missing(collection.noun, cursor[2], name)  # pruned: gone
        streams: list[Iterator[Key]] = []
        for index in indexes:
            lo, hi = _bounds(index, low, high)
            if before is not None:
                streams.append(_ascending(index, max(lo, bisect.bisect_right(index, before)), hi))
            else:
                if after is not None:
                    hi = max(lo, min(hi, bisect.bisect_left(index, after)))
                streams.append(_descending(index, lo, hi))
        merged = heapq.merge(*streams, reverse=before is None) if len(streams) > 1 else streams[0]
        keys = list(islice(merged, limit + 1))
        has_more = len(keys) > limit
        keys = keys[:limit]
        if before is not None:
            keys.reverse()  # ending_before pages are still listed newest first
        by_id = collection.by_id
        return self.json(
            {
                "object": "list",
                "data": [by_id[key[2]] for key in keys],
                "has_more": has_more,
                "url": request.path,
            }
        )

    @route("GET", "/v1/customers")
    @_answers
    def list_customers(self, request: SandboxRequest) -> httpx.Response:
        """List customers, newest first (deleted customers are not listed)."""
        self._check_params(request, _CUSTOMER_LIST_PARAMS)
        if request.query.get("email"):  # rarely used: a scan is acceptable here
            email = request.query["email"]
            wanted = [
                k for k in self.customers.index if self.customers.by_id[k[2]]["email"] == email
            ]
            return self._list(request, self.customers, [wanted])
        return self._list(request, self.customers, [self.customers.index])

    @route("GET", "/v1/invoices")
    @_answers
    def list_invoices(self, request: SandboxRequest) -> httpx.Response:
        """List invoices, newest first."""
        self._check_params(request, _INVOICE_LIST_PARAMS)
        customer, status = request.query.get("customer"), request.query.get("status")
        if customer or status:  # filters the connector does not use: a scan is acceptable
            wanted = [
                k
                for k in self.invoices.index
                if (not customer or self.invoices.by_id[k[2]]["customer"] == customer)
                and (not status or self.invoices.by_id[k[2]]["status"] == status)
            ]
            return self._list(request, self.invoices, [wanted])
        return self._list(request, self.invoices, [self.invoices.index])

    @route("GET", "/v1/events")
    @_answers
    def list_events(self, request: SandboxRequest) -> httpx.Response:
        """List events of the last 30 days, newest first, of the types asked for."""
        self._check_params(request, _EVENT_LIST_PARAMS)
        types, single = request.query_list("types[]"), request.query.get("type")
        if types and single:
            raise _StripeError(
                400,
                "You may only specify one of these parameters: type, types.",
                code="parameter_invalid",
            )
        if len(types) > 20:
            raise _StripeError(
                400, "You may pass at most 20 event types.", code="parameter_invalid"
            )
        if single:
            prefix = single[:-1] if single.endswith("*") else None
            types = [t for t in self._event_types if t.startswith(prefix)] if prefix else [single]
        indexes: list[Sequence[Key]]
        if single or types:  # a wildcard matching no type yet lists nothing
            indexes = [self._event_types.get(t, []) for t in dict.fromkeys(types)] or [[]]
        else:
            indexes = [self.events.index]
        return self._list(request, self.events, indexes, floor=self.now() - RETENTION)

    # ------------------------------------------------------------------ single objects
    @route("GET", "/v1/customers/{id}")
    @_answers
    def get_customer(self, request: SandboxRequest) -> httpx.Response:
        """One customer; a deleted one as ``{"id", "object", "deleted": true}``."""
        object_id = request.params["id"]
        if object_id in self._deleted:
            return self.json({"id": object_id, "object": "customer", "deleted": True})
        return self.json(self.customers.get(object_id))

    @route("GET", "/v1/invoices/{id}")
    @_answers
    def get_invoice(self, request: SandboxRequest) -> httpx.Response:
        """One invoice."""
        return self.json(self.invoices.get(request.params["id"]))

    @route("GET", "/v1/events/{id}")
    @_answers
    def get_event(self, request: SandboxRequest) -> httpx.Response:
        """One event of the last 30 days."""
        event = self.events.get(request.params["id"])
        if event["created"] < self.now() - RETENTION:
            raise _missing("event", request.params["id"])
        return self.json(event)

    # ------------------------------------------------------------------ writes
    def _idempotent(
        self, request: SandboxRequest, handler: Callable[[str | None], httpx.Response]
    ) -> httpx.Response:
        """Run a POST once per ``Idempotency-Key``: a retry with the same parameters gets
        the saved response; other parameters under the same key get a 400."""
        key = request.headers.get("idempotency-key")
        if key is not None and len(key) > 255:
            raise _StripeError(
                400, "Idempotency keys are at most 255 characters.", param="Idempotency-Key"
            )
        fingerprint = (
            request.method,
            request.path,
            tuple(sorted(parse_qsl(request.raw.read().decode(), keep_blank_values=True))),
        )
        if key is not None and key in self._idempotency:
            saved, status, content = self._idempotency[key]
            if saved != fingerprint:
                raise _StripeError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with. Try using a key other than "
                    f"'{key}' if you meant to execute a different request.",
                    kind="idempotency_error",
                )
            return httpx.Response(
                status,
                content=content,
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": key,
                    "Idempotent-Replayed": "true",
                },
            )
        try:
            response = handler(key)
        except _StripeError as exc:
            response = self.error_response(exc)
        # Stripe saves the outcome once the endpoint ran; a request that failed validation
        # (400) did not run and may be retried with the same key.
        if key is not None and response.status_code != 400:
            self._idempotency[key] = (fingerprint, response.status_code, response.content)
        if key is not None:
            response.headers["Idempotency-Key"] = key
        return response

    @staticmethod
    def _form(request: SandboxRequest) -> dict[str, Any]:
        """The form body, ``address[line1]=...`` read into nested dicts."""
        out: dict[str, Any] = {}
        for name, value in parse_qsl(request.raw.read().decode(), keep_blank_values=True):
            head, bracket, rest = name.partition("[")
            if not bracket:
                out[head] = value
                continue
            sub = rest[:-1] if rest.endswith("]") else ""
            node = out.setdefault(head, {})
            if not sub or "[" in sub or not isinstance(node, dict):
                raise _StripeError(400, f"Invalid parameter: {name}", param=name)
            node[sub] = value
        return out

    def _apply(self, customer: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
        """Set the given customer parameters (an empty value unsets); the previous values of
        what changed, as an event's ``previous_attributes``."""
        previous: dict[str, Any] = {}
        for name, value in fields.items():
            if name not in _CUSTOMER_PARAMS:
                raise _StripeError(
                    400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
                )
            current = customer.get(name)
            new: Any
            if name in ("address", "metadata") and value != "" and not isinstance(value, dict):
                raise _StripeError(400, "Invalid object", code="parameter_invalid", param=name)
            if name == "address":
                if value == "":
                    new = None
                else:
                    new = dict(current or dict.fromkeys(_ADDRESS_PARTS))
                    for part, text in value.items():
                        if part not in _ADDRESS_PARTS:
                            param = f"address[{part}]"
                            raise _StripeError(
                                400,
                                f"Received unknown parameter: {param}",
                                code="parameter_unknown",
                                param=param,
                            )
                        new[part] = text or None
            elif name == "metadata":
                new = {} if value == "" else dict(current or {})
                for meta_key, text in (value or {}).items():
                    if text == "":
                        new.pop(meta_key, None)
                    else:
                        new[meta_key] = text
            else:
                if isinstance(value, dict):
                    raise _StripeError(400, "Invalid string", code="parameter_invalid", param=name)
                if name == "email" and value and "@" not in value:
                    raise _StripeError(
                        400, f"Invalid email address: {value}", code="email_invalid", param=name
                    )
                new = value or None
            if new != current:
                previous[name] = current
                customer[name] = new
        return previous

    @route("POST", "/v1/customers")
    @_answers
    def create_customer(self, request: SandboxRequest) -> httpx.Response:
        """Create a customer (``customer.created``)."""

        def create(key: str | None) -> httpx.Response:
            customer = self._new_customer(self._newest(self.customers))
            self._apply(customer, self._form(request))
            self._store(self.customers, customer)
            self._record("customer.created", customer, idempotency_key=key)
            return self.json(customer)

        return self._idempotent(request, create)

    @route("POST", "/v1/customers/{id}")
    @_answers
    def update_customer(self, request: SandboxRequest) -> httpx.Response:
        """Update a customer (``customer.updated`` when something changed)."""

        def update(key: str | None) -> httpx.Response:
            customer = self.customers.get(request.params["id"])
            changes = self._form(request)
            candidate = _copy(customer)  # all or nothing: validate on a copy first
            previous = self._apply(candidate, changes)
            if previous:
                customer.clear()
                customer.update(candidate)
                self._record("customer.updated", customer, previous, idempotency_key=key)
            return self.json(customer)

        return self._idempotent(request, update)

    @route("DELETE", "/v1/customers/{id}")
    @_answers
    def delete_customer(self, request: SandboxRequest) -> httpx.Response:
        """Delete a customer for good (``customer.deleted``); again: 404."""
        object_id = request.params["id"]
        if object_id not in self.customers.by_id:
            raise _missing("customer", object_id)
        customer = self.customers.remove(object_id)
        self._deleted.add(object_id)
        self._record("customer.deleted", customer)
        return self.json({"id": object_id, "object": "customer", "deleted": True})

    @route("POST", "/v1/invoices/{id}/pay")
    @_answers
    def pay_invoice(self, request: SandboxRequest) -> httpx.Response:
        """Mark an open (or uncollectible) invoice paid (``invoice.paid``, ``invoice.updated``)."""

        def pay(key: str | None) -> httpx.Response:
            invoice = self.invoices.get(request.params["id"])
            status = invoice["status"]
            if status in ("paid", "void", "draft"):
                raise _StripeError(
                    400,
                    f"Invoice {invoice['id']} is {status}: only open or uncollectible "
                    "invoices can be paid.",
                    code="invoice_not_editable",
                )
            previous = {
                name: invoice[name]
                for name in ("amount_paid", "amount_remaining", "paid", "status")
            }
            invoice.update(
                amount_paid=invoice["amount_due"], amount_remaining=0, paid=True, status="paid"
            )
            invoice["status_transitions"]["paid_at"] = self.now()
            self._record("invoice.paid", invoice, previous, idempotency_key=key)
            self._record("invoice.updated", invoice, previous, idempotency_key=key)
            return self.json(invoice)

        return self._idempotent(request, pay)

"""The Zendesk Support sandbox: end users and their tickets, behind the real API's shapes.

What the ``zendesk`` connector uses, as Zendesk answers it:

- ``GET /api/v2/incremental/{users,tickets}/cursor.json``: the cursor-based incremental
  export; ``start_time`` (epoch seconds) on the first request, then the opaque ``cursor``;
  ``per_page`` up to 1000; items in ``updated_at`` order; ``after_cursor``, ``after_url``,
  ``before_cursor``, ``before_url`` and ``end_of_stream`` in every page. Soft-deleted users
  appear with ``active: false``, deleted tickets with ``status: "deleted"``.
- ``GET /api/v2/users/me.json``: the authenticated (admin) user, for credential checks.
- ``POST /api/v2/users.json``, ``POST /api/v2/users/create_or_update.json`` (matches on email
  or ``external_id``), ``PUT /api/v2/users/{id}.json``: ``{"user": {...}}`` bodies.
- ``DELETE /api/v2/users/{id}.json`` (soft delete: the user turns inactive and is listed
  under ``/api/v2/deleted_users/{id}``), then ``DELETE /api/v2/deleted_users/{id}.json``
  (permanent: personal data scrubbed, ``/api/v2/deleted_users/{id}`` answers 404).

Authentication is an API token as HTTP Basic auth, ``{email}/token:{token}``. Errors use
Zendesk's bodies (``{"error": "RecordNotFound", "description": "Not found"}``, ...). Every
response carries ``X-Rate-Limit`` / ``X-Rate-Limit-Remaining``, the export also
``ratelimit-limit`` / ``ratelimit-remaining`` / ``ratelimit-reset``; an exhausted minute is
answered with 429 and ``Retry-After``. The quotas are ample unless a test lowers them.

Records live in dicts; each stream also keeps a list of ``(updated_at, sequence, id)`` sorted
by construction (writes append at the end), so an export page costs a bisect and a slice.
"""

from __future__ import annotations

import base64
import binascii
import time
from bisect import bisect_right, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from crmhub.sandbox.app import (
    ApiError,
    SandboxApp,
    SandboxRequest,
    basic_credentials,
    e164,
    int_param,
    route,
)

__all__ = ["ZendeskSandbox"]

_EXPORT_PREFIX = "/api/v2/incremental/"
_LAST = 1 << 62  # larger than any id: bisect past every entry of one (time, sequence) key
_WRITABLE = ("name", "email", "phone", "organization_id", "external_id", "role", "notes")
_PURGED_NAME = "Permanently Deleted User"
_SUBJECTS = (
    "Cannot log in to my account", "Where is my order?", "Refund request",
    "Question about my invoice", "Please update my address", "Password reset not arriving",
    "Delivery is late", "Item arrived damaged", "Cancel my subscription",
    "Upgrade to the annual plan", "Missing item in parcel", "Charged twice",
)  # fmt: skip
_STATUSES = ("new", "open", "pending", "solved", "closed", "deleted")
_STATUS_UPTO = (0.05, 0.20, 0.30, 0.65, 0.98, 1.0)  # cumulative shares of the statuses


def _iso(epoch: int) -> str:
    """Zendesk's timestamp format: ``2024-01-01T00:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _encode_cursor(stamp: int, sequence: int) -> str:
    # Opaque to clients, like Zendesk's (base64 of a time and a position).
    return base64.urlsafe_b64encode(f"{stamp}.0||{sequence}|".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        stamp, _, rest = base64.urlsafe_b64decode(cursor.encode()).decode().partition(".0||")
        return int(stamp), int(rest.rstrip("|"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "cursor is invalid", code="InvalidPaginationParameter") from None


def _user_id(request: SandboxRequest) -> int:
    """The ``{id}`` of ``/users/{id}`` or ``/users/{id}.json``; 404 when it is not a number."""
    text = request.params["id"].removesuffix(".json")
    if not text.isdigit():
        raise ApiError(404, "Not found")
    return int(text)


class _Invalid(Exception):
    """A 422 with Zendesk's per-field details (``ApiError`` bodies have no details)."""

    def __init__(self, field: str, error: str, description: str) -> None:
        super().__init__(description)
        self.details = {field: [{"description": description, "error": error}]}

    def response(self) -> httpx.Response:
        body = {
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": self.details,
        }
        return SandboxApp.json(body, 422)


@dataclass
class _Quota:
    """Requests allowed per minute, counted in fixed one-minute windows of the app's clock."""

    limit: int
    used: int = 0
    window: int = -1

    def take(self, now: int) -> bool:
        """Count one request; False when this minute's quota is spent."""
        if now // 60 != self.window:
            self.window, self.used = now // 60, 0
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    def reset_in(self, now: int) -> int:
        return max((self.window + 1) * 60 - now, 1)


class _Export:
    """One exportable stream: records by id and their positions in ``updated_at`` order."""

    def __init__(self) -> None:
        self.records: dict[int, dict[str, Any]] = {}
        self.keys: dict[int, tuple[int, int, int]] = {}
        self.order: list[tuple[int, int, int]] = []  # (updated_at, sequence, id), ascending

    def place(self, record_id: int, key: tuple[int, int, int]) -> None:
        """Move a record to its new position (its old one, if any, is removed first)."""
        old = self.keys.get(record_id)
        if old is not None:
            del self.order[bisect_right(self.order, old) - 1]
        self.keys[record_id] = key
        if not self.order or key > self.order[-1]:
            self.order.append(key)
        else:
            insort(self.order, key)

    def latest(self) -> int:
        """The newest ``updated_at`` in the stream (0 when empty)."""
        return self.order[-1][0] if self.order else 0


class ZendeskSandbox(SandboxApp):
    """An in-process Zendesk Support account (see the module docstring)."""

    system = "zendesk"
    host = "acme.zendesk.sandbox"
    default_credentials = "sandbox-zendesk-token"
    api_email = "admin@acme.example"
    """The admin whose API token the connector authenticates with."""
    requests_per_minute = 100_000
    """The account's API quota (real accounts: 200 to 2,500); ample, so syncs never wait."""
    export_requests_per_minute = 10_000
    """The incremental export's own quota (real: 10, 30 with the High Volume add-on)."""
    account_country = "GB"
    """Where numbers typed without a country code are read (Zendesk stores phones E.164)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.users = _Export()
        self.tickets = _Export()
        self.quota = _Quota(self.requests_per_minute)
        self.export_quota = _Quota(self.export_requests_per_minute)
        self.rate_limited = 0
        """Requests refused with 429 because a quota was spent (not injected faults)."""
        self.soft_deleted: set[int] = set()
        self.purged: set[int] = set()
        self.organizations: dict[str, int] = {}
        self._by_email: dict[str, int] = {}
        self._by_external_id: dict[str, int] = {}
        self._sequence = 0
        self._next_user = 0
        self._next_ticket = 1

    # ------------------------------------------------------------------ SandboxApp hooks
    def authorized(self, request: SandboxRequest) -> bool:
        """API token auth: Basic ``{email}/token`` with the token as password."""
        return basic_credentials(request) == (f"{self.api_email}/token", self.credentials)

    def error_body(self, status: int, message: str, code: str | None) -> Any:
        """Zendesk's error bodies: ``{"error": ..., "description": ...}``."""
        if status == 401:
            return {"error": "Couldn't authenticate you"}
        if status == 404:
            if message.startswith("no route"):
                return {"error": "InvalidEndpoint", "description": "Not found"}
            return {"error": "RecordNotFound", "description": "Not found"}
        if status == 429:
            return {"error": "TooManyRequests", "description": "Rate limit exceeded"}
        if status >= 500:
            return {"error": "InternalError", "description": message}
        return {"error": code or "InvalidValue", "description": message}

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        """The base URL, the admin's email and the API token (as an ``env:`` reference)."""
        return {"base_url": base_url, "email": self.api_email, "api_token": f"env:{self.env_name}"}

    def seed(self, rows: Iterable[Mapping[str, str]]) -> None:
        """Each row becomes an end user; each user gets 0 to 3 invented tickets."""
        rnd = self.random.random  # plain floats: random.choices per row costs seconds at 100k
        self._next_user = self.random.randrange(360_000_000_000, 380_000_000_000)
        users, tickets = self.users, self.tickets
        for row in rows:
            updated = _epoch(row["updated_at"])
            created = updated - int(rnd() * 400 * 86_400)
            user_id = self._new_user_id()
            user = self._user_record(user_id, row, created, updated)
            users.records[user_id] = user
            self._index_identity(user_id, user)
            users.keys[user_id] = (updated, self._next_sequence(), user_id)
            roll = rnd()
            for _ in range(0 if roll < 0.45 else 1 if roll < 0.8 else 2 if roll < 0.95 else 3):
                opened = created + int(rnd() * (updated - created))
                changed = opened + int(rnd() * 10 * 86_400)
                ticket = self._ticket_record(user_id, opened, changed)
                tickets.records[ticket["id"]] = ticket
                tickets.keys[ticket["id"]] = (changed, self._next_sequence(), ticket["id"])
        # Seeding sorts once; every later write keeps the order by appending.
        for export in (users, tickets):
            export.order = sorted(export.keys.values())

    def add_record(self, stream: str) -> str:
        """A new end user (``users``) or a new ticket of an existing user (``tickets``)."""
        with self._lock:
            if stream == "users":
                n = len(self.users.records) + 1
                user = self._create_user(
                    {"name": f"New User{n}", "email": f"new.user{n}@example.com"}
                )
                return str(user["id"])
            if stream == "tickets":
                requester = next(iter(self.users.records), None)
                if requester is None:
                    requester = int(self.add_record("users"))
                stamp = self._stamp(self.tickets)
                ticket = self._ticket_record(requester, stamp, stamp)
                self.tickets.records[ticket["id"]] = ticket
                self.tickets.place(ticket["id"], (stamp, self._next_sequence(), ticket["id"]))
                return str(ticket["id"])
            raise KeyError(stream)

    # ------------------------------------------------------------------ serving
    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Serve one request within the per-minute quotas, with Zendesk's rate-limit headers."""
        with self._lock:
            now = self.now()
            export = request.url.path.startswith(_EXPORT_PREFIX)
            for quota in (self.quota, self.export_quota) if export else (self.quota,):
                if not quota.take(now):
                    self.rate_limited += 1
                    headers = {"Retry-After": str(quota.reset_in(now))}
                    headers.update(self._quota_headers(export, now))
                    return self.json(self.error_body(429, "rate limited", None), 429, headers)
            response = super().__call__(request)
            response.headers.update(self._quota_headers(export, now))
            return response

    def _quota_headers(self, export: bool, now: int) -> dict[str, str]:
        headers = {
            "X-Rate-Limit": str(self.quota.limit),
            "X-Rate-Limit-Remaining": str(self.quota.remaining()),
        }
        if export:
            headers["ratelimit-limit"] = str(self.export_quota.limit)
            headers["ratelimit-remaining"] = str(self.export_quota.remaining())
            headers["ratelimit-reset"] = str(self.export_quota.reset_in(now))
        return headers

    # ------------------------------------------------------------------ routes: reading
    @route("GET", "/api/v2/incremental/users/cursor.json")
    def export_users(self, request: SandboxRequest) -> httpx.Response:
        """The cursor-based incremental user export."""
        return self._export(request, self.users, "users")

    @route("GET", "/api/v2/incremental/tickets/cursor.json")
    def export_tickets(self, request: SandboxRequest) -> httpx.Response:
        """The cursor-based incremental ticket export."""
        return self._export(request, self.tickets, "tickets")

    def _export(self, request: SandboxRequest, export: _Export, name: str) -> httpx.Response:
        per_page = int_param(request, "per_page", 1000, lo=1, hi=1000)
        cursor = request.query.get("cursor")
        if cursor:
            after = _decode_cursor(cursor)
        else:
            start_time = int_param(request, "start_time", -1, lo=0, hi=_LAST)
            if start_time < 0:
                raise ApiError(400, "start_time or cursor is required", code="InvalidValue")
            after = (start_time, -1)  # everything changed at or after start_time
        order = export.order
        lo = bisect_right(order, (after[0], after[1], _LAST))
        keys = order[lo : lo + per_page]
        records = export.records
        page = [records[key[2]] for key in keys]
        if keys:
            after = keys[-1][0], keys[-1][1]
        after_cursor = _encode_cursor(*after)
        url = f"{request.raw.url.scheme}://{request.raw.url.host}{request.path}"
        return self.json(
            {
                name: page,
                "after_cursor": after_cursor,
                "after_url": f"{url}?cursor={after_cursor}&per_page={per_page}",
                "before_cursor": cursor or None,
                "before_url": f"{url}?cursor={cursor}" if cursor else None,
                "end_of_stream": lo + per_page >= len(order),
            }
        )

    @route("GET", "/api/v2/users/me.json")
    def me(self, request: SandboxRequest) -> httpx.Response:
        """The authenticated user: the account's admin."""
        return self.json(
            {
                "user": {
                    "id": 1,
                    "name": "Sandbox Admin",
                    "email": self.api_email,
                    "role": "admin",
                    "active": True,
                    "created_at": "2020-01-01T00:00:00Z",
                    "updated_at": "2020-01-01T00:00:00Z",
                }
            }
        )

    @route("GET", "/api/v2/users/{id}")
    def show_user(self, request: SandboxRequest) -> httpx.Response:
        """One active user; deleted ones are 404 here (see ``/deleted_users``)."""
        return self.json({"user": self._active_user(_user_id(request))})

    @route("GET", "/api/v2/deleted_users/{id}")
    def show_deleted_user(self, request: SandboxRequest) -> httpx.Response:
        """A soft-deleted user, until it is permanently deleted."""
        user_id = _user_id(request)
        if user_id not in self.soft_deleted:
            raise ApiError(404, "Not found")
        return self.json({"deleted_user": self.users.records[user_id]})

    # ------------------------------------------------------------------ routes: writing
    @route("POST", "/api/v2/users.json")
    def create_user(self, request: SandboxRequest) -> httpx.Response:
        """Create a user: 201 with ``{"user": ...}``."""
        try:
            return self.json({"user": self._create_user(self._user_body(request))}, 201)
        except _Invalid as exc:
            return exc.response()

    @route("POST", "/api/v2/users/create_or_update.json")
    def create_or_update_user(self, request: SandboxRequest) -> httpx.Response:
        """Update the active user with the same email or external_id (200), else create (201)."""
        fields = self._user_body(request)
        email = str(fields.get("email") or "").strip().lower()
        found = self._by_email.get(email) if email else None
        if found is None and fields.get("external_id"):
            found = self._by_external_id.get(str(fields["external_id"]))
        try:
            if found is None:
                return self.json({"user": self._create_user(fields)}, 201)
            return self.json({"user": self._update_user(found, fields)})
        except _Invalid as exc:
            return exc.response()

    @route("PUT", "/api/v2/users/{id}")
    def update_user(self, request: SandboxRequest) -> httpx.Response:
        """Update an active user's fields: 200 with ``{"user": ...}``."""
        user_id = _user_id(request)
        self._active_user(user_id)
        try:
            return self.json({"user": self._update_user(user_id, self._user_body(request))})
        except _Invalid as exc:
            return exc.response()

    @route("DELETE", "/api/v2/users/{id}")
    def delete_user(self, request: SandboxRequest) -> httpx.Response:
        """Soft delete: the user turns inactive and moves to ``/deleted_users``."""
        user_id = _user_id(request)
        user = self._active_user(user_id)
        self._forget_identity(user_id, user)
        user["active"] = False
        self.soft_deleted.add(user_id)
        self._touch(user_id, user)
        return self.json({"user": user})

    @route("DELETE", "/api/v2/deleted_users/{id}")
    def permanently_delete_user(self, request: SandboxRequest) -> httpx.Response:
        """Permanent deletion of a soft-deleted user: personal data scrubbed, then 404."""
        user_id = _user_id(request)
        if user_id not in self.soft_deleted:
            raise ApiError(404, "Not found")
        self.soft_deleted.discard(user_id)
        self.purged.add(user_id)
        user = self.users.records[user_id]
        user.update(name=_PURGED_NAME, email=None, phone=None, external_id=None, user_fields={})
        self._touch(user_id, user)
        return self.json({"deleted_user": user})

    # ------------------------------------------------------------------ state helpers
    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def _new_user_id(self) -> int:
        self._next_user += 1 + int(self.random.random() * 3)  # Zendesk ids grow, with gaps
        return self._next_user

    def _stamp(self, export: _Export) -> int:
        # Never behind the newest record, so a change always lands after saved cursors.
        return max(self.now(), export.latest())

    def _touch(self, user_id: int, user: dict[str, Any]) -> None:
        stamp = self._stamp(self.users)
        user["updated_at"] = _iso(stamp)
        self.users.place(user_id, (stamp, self._next_sequence(), user_id))

    def _active_user(self, user_id: int) -> dict[str, Any]:
        user = self.users.records.get(user_id)
        if user is None or not user["active"]:
            raise ApiError(404, "Not found")
        return user

    def _user_body(self, request: SandboxRequest) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("user"), dict):
            raise ApiError(400, 'expected a JSON body {"user": {...}}', code="InvalidValue")
        fields: dict[str, Any] = body["user"]
        return fields

    def _check_email(self, fields: Mapping[str, Any], user_id: int | None) -> None:
        email = fields.get("email")
        if not email:
            return
        if not isinstance(email, str) or "@" not in email:
            raise _Invalid("email", "InvalidValue", "Email: is invalid")
        owner = self._by_email.get(email.strip().lower())
        if owner is not None and owner != user_id:
            message = "Email: is already being used by another user"
            raise _Invalid("email", "DuplicateValue", message)

    def _create_user(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        if not str(fields.get("name") or "").strip():
            raise _Invalid("name", "BlankValue", "Name: is too short (minimum one character)")
        self._check_email(fields, None)
        user_id = self._new_user_id()
        stamp = self._stamp(self.users)
        user = self._user_record(user_id, {}, stamp, stamp)
        user.update({k: fields[k] for k in _WRITABLE if k in fields})
        if isinstance(fields.get("user_fields"), dict):
            user["user_fields"] = dict(fields["user_fields"])
        self.users.records[user_id] = user
        self._index_identity(user_id, user)
        self.users.place(user_id, (stamp, self._next_sequence(), user_id))
        return user

    def _update_user(self, user_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        self._check_email(fields, user_id)
        user = self.users.records[user_id]
        self._forget_identity(user_id, user)
        user.update({k: fields[k] for k in _WRITABLE if k in fields})
        if isinstance(fields.get("user_fields"), dict):
            user["user_fields"] = {**user["user_fields"], **fields["user_fields"]}
        self._index_identity(user_id, user)
        self._touch(user_id, user)
        return user

    def _index_identity(self, user_id: int, user: Mapping[str, Any]) -> None:
        # The first user with an address keeps it, as imported accounts can hold duplicates.
        if user.get("email"):
            self._by_email.setdefault(str(user["email"]).strip().lower(), user_id)
        if user.get("external_id"):
            self._by_external_id.setdefault(str(user["external_id"]), user_id)

    def _forget_identity(self, user_id: int, user: Mapping[str, Any]) -> None:
        email = str(user.get("email") or "").strip().lower()
        if email and self._by_email.get(email) == user_id:
            del self._by_email[email]
        external = str(user.get("external_id") or "")
        if external and self._by_external_id.get(external) == user_id:
            del self._by_external_id[external]

    def _user_record(
        self, user_id: int, row: Mapping[str, str], created: int, updated: int
    ) -> dict[str, Any]:
        name = " ".join(p for p in (row.get("first_name"), row.get("last_name")) if p)
        email = row.get("email") or None
        if not name and email:
            name = email.partition("@")[0]  # Zendesk names mail-in users after the address
        phone = row.get("phone")
        company = row.get("company")
        org = None
        if company:
            org = self.organizations.setdefault(company, 360_000_000 + len(self.organizations))
        return {
            "id": user_id,
            "url": f"https://{self.host}/api/v2/users/{user_id}.json",
            "name": name,
            "email": email,
            "phone": e164(phone, row.get("country", ""), self.account_country) if phone else None,
            "organization_id": org,
            "external_id": None,
            "role": "end-user",
            "active": True,
            "verified": bool(email),
            "time_zone": "UTC",
            "locale": "en-US",
            "tags": [],
            "notes": "",
            "user_fields": {},
            "created_at": _iso(created),
            "updated_at": _iso(updated),
        }

    def _ticket_record(self, requester: int, opened: int, changed: int) -> dict[str, Any]:
        ticket_id = self._next_ticket
        self._next_ticket += 1
        rnd = self.random.random
        subject = _SUBJECTS[int(rnd() * len(_SUBJECTS))]
        return {
            "id": ticket_id,
            "url": f"https://{self.host}/api/v2/tickets/{ticket_id}.json",
            "type": "question",
            "subject": subject,
            "description": f"{subject}. Please get back to me.",
            "priority": "normal",
            "status": _STATUSES[bisect_right(_STATUS_UPTO, rnd())],
            "requester_id": requester,
            "submitter_id": requester,
            "assignee_id": None,
            "tags": [],
            "created_at": _iso(opened),
            "updated_at": _iso(changed),
        }

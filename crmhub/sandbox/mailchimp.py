"""A sandbox of the Mailchimp Marketing API 3.0: one audience (list) and its members.

It speaks the real shapes the ``mailchimp`` connector uses:

- HTTP Basic auth with any user name and the API key as password; errors as problem+json
  (``type``, ``title``, ``status``, ``detail``, ``instance``), ``401 API Key Invalid``,
  ``404 Resource Not Found``, ``400 Invalid Resource`` with an ``errors`` list;
- ``GET /3.0/ping`` and ``GET /3.0/lists/{list_id}``;
- ``GET /3.0/lists/{list_id}/members`` with ``count`` (default 10, at most 1000), ``offset``,
  ``status``, ``since_last_changed`` / ``before_last_changed`` (strictly after / before),
  ``sort_field=last_changed`` with ``sort_dir``, ``fields`` / ``exclude_fields``; archived
  members are listed only when ``status=archived`` is asked for, as in the real API;
- ``GET``, ``PUT`` (add or update), ``PATCH`` (update) and ``DELETE`` (archive) of
  ``/3.0/lists/{list_id}/members/{subscriber_hash}``, where the hash is the MD5 of the
  lower-cased address (the address itself is accepted too, as the real API does);
- ``POST .../members/{subscriber_hash}/actions/delete-permanent`` (204): the member is gone,
  and the address can never be added again through the API (``400 Forgotten Email Not
  Subscribed``), as Mailchimp does after a GDPR erasure.

Members live in a dict by id, with one sorted list of ``(last_changed, id)`` per status and
one for every member that is not archived, so that a page costs a bisect and a slice: never a
sort or a scan of the audience.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, ClassVar

import httpx

from crmhub.sandbox.app import (
    ApiError,
    SandboxApp,
    SandboxRequest,
    basic_credentials,
    int_param,
    route,
)

__all__ = ["MailchimpSandbox", "subscriber_hash"]

_ERROR_DOCS = "https://mailchimp.com/developer/marketing/docs/errors/"
_TITLES = {
    400: "Invalid Resource",
    401: "API Key Invalid",
    403: "Forbidden",
    404: "Resource Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_DETAILS = {
    401: "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
    404: "The requested resource could not be found.",
    429: "You have exceeded the limit of 10 simultaneous connections.",
}
_ALL = "*"  # the index of every member that is not archived
_WRITABLE_STATUSES = frozenset(
    {"subscribed", "unsubscribed", "cleaned", "pending", "transactional"}
)
_STATUSES = _WRITABLE_STATUSES | {"archived"}
_MERGE_TAGS = frozenset({"FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY"})
_ADDRESS_PARTS = ("addr1", "addr2", "city", "state", "zip", "country")
_OWN_TITLES = frozenset({"Forgotten Email Not Subscribed", "Member Exists"})
_FIRST_KEY = itemgetter(0)


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: the MD5 of the lower-cased address."""
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def _iso(seconds: int) -> str:
    """Mailchimp's timestamp format: ``2024-05-01T10:00:00+00:00`` (through ``gmtime``: a
    tenth of the cost of an aware datetime, and seeding formats two per member)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(seconds))


def _epoch(text: str, name: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "must be an ISO 8601 date-time", code=f"field:{name}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _field_set(text: str | None) -> tuple[set[str], dict[str, set[str]]] | None:
    """``fields`` / ``exclude_fields``: top-level names, and member-level names under them."""
    if not text:
        return None
    top: set[str] = set()
    nested: dict[str, set[str]] = {}
    for path in (part.strip() for part in text.split(",")):
        if not path:
            continue
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, set()).add(rest.partition(".")[0])
        else:
            top.add(head)
    return top, nested


class MailchimpSandbox(SandboxApp):
    """The Mailchimp Marketing API, one audience, in memory (see the module docstring)."""

    system = "mailchimp"
    host = "us1.api.mailchimp.sandbox"
    default_credentials = "0sandbox0key0000000000000000000-us1"
    list_id: ClassVar[str] = "a1b2c3d4e5"
    list_name: ClassVar[str] = "Newsletter"
    archived_share: float = 0.03
    """Share of seeded members that are archived (the deletions an incremental read finds)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.members: dict[str, dict[str, Any]] = {}
        """Members by subscriber hash, each the dict the API returns."""
        self._changed: dict[str, int] = {}  # id -> last_changed in epoch seconds
        self._index: dict[str, list[tuple[int, str]]] = {_ALL: []}
        self.forgotten: set[str] = set()
        """Hashes of permanently deleted addresses: the API refuses to add them again."""
        self._web_id = 100_000
        self._errors = 0

    # ------------------------------------------------------------------ SandboxApp hooks
    def authorized(self, request: SandboxRequest) -> bool:
        """HTTP Basic with any user name and the API key as password."""
        credentials = basic_credentials(request)
        return credentials is not None and credentials[1] == self.credentials

    def error_body(self, status: int, message: str, code: str | None) -> Any:
        """problem+json, as Mailchimp answers every error. ``code`` is a title of its own
        (``Forgotten Email Not Subscribed``) or ``field:<name>`` for a field that failed
        validation (listed in ``errors``, as the API does)."""
        self._errors += 1
        body: dict[str, Any] = {
            "type": _ERROR_DOCS,
            "title": _TITLES.get(status, "Error"),
            "status": status,
            "detail": message,
            "instance": hashlib.md5(f"{self.system}:{self._errors}".encode()).hexdigest(),
        }
        if code in _OWN_TITLES:
            body["title"] = code
        elif code is not None and code.startswith("field:"):
            body["detail"] = (
                "The resource submitted could not be validated. For field-specific details, "
                "see the 'errors' array."
            )
            body["errors"] = [{"field": code.removeprefix("field:"), "message": message}]
        elif status in _DETAILS:
            body["detail"] = _DETAILS[status]
        return body

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        """The API root (with ``/3.0``), the key and the audience id."""
        return {
            "base_url": f"{base_url}/3.0",
            "api_key": f"env:{self.env_name}",
            "list_id": self.list_id,
        }

    def seed(self, rows: Iterable[Mapping[str, str]]) -> None:
        """Members from newsletter rows: the ``newsletter`` answer decides the status (yes:
        subscribed; no: unsubscribed or, now and then, cleaned; blank: pending or
        transactional), a few are archived; ``updated_at`` is ``last_changed``. Rows without
        an address, or with one already on the list, are left out (Mailchimp keys members by
        address)."""
        for row in rows:
            email = (row.get("email") or "").strip()
            if "@" not in email:
                continue
            member_id = subscriber_hash(email)
            if member_id in self.members:
                continue
            changed = int(_epoch(row["updated_at"], "updated_at"))
            answer = (row.get("newsletter") or "").strip().lower()
            draw = self.random.random()
            if answer == "yes":
                status = "subscribed"
            elif answer == "no":
                status = "cleaned" if draw < 0.2 else "unsubscribed"
            else:
                status = "pending" if draw < 0.5 else "transactional"
            if self.random.random() < self.archived_share:
                status = "archived"
            opted = changed - self.random.randrange(86_400 * 400) if status == "subscribed" else 0
            merge_fields = {
                "FNAME": row.get("first_name") or "",
                "LNAME": row.get("last_name") or "",
                "ADDRESS": self._address(row),
                "PHONE": row.get("phone") or "",
                "BIRTHDAY": self._birthday(row.get("birth_date") or ""),
            }
            self._store(
                self._new_member(email, status, merge_fields, changed, opted), changed, bulk=True
            )
        for index in self._index.values():
            index.sort()  # once, after appending: an insort per member would be quadratic

    def add_record(self, stream: str) -> str:
        """A new subscribed member, changed after every other one."""
        if stream != "members":
            raise ValueError(f"the mailchimp sandbox has no stream {stream!r}")
        newest = max(self._changed.values(), default=0)
        changed = max(self.now(), newest + 1)
        email = f"new.member{len(self.members) + 1}@example.org"
        merge_fields = {
            "FNAME": "New",
            "LNAME": "Member",
            "ADDRESS": "",
            "PHONE": "",
            "BIRTHDAY": "",
        }
        member = self._new_member(email, "subscribed", merge_fields, changed, changed)
        self._store(member, changed)
        return str(member["id"])

    # ------------------------------------------------------------------ routes
    @route("GET", "/3.0/ping")
    def ping(self, request: SandboxRequest) -> httpx.Response:
        """The API health check."""
        return self.json({"health_status": "Everything's Chimpy!"})

    @route("GET", "/3.0/lists/{list_id}")
    def get_list(self, request: SandboxRequest) -> httpx.Response:
        """The audience, with its member counts."""
        self._audience(request)
        counts = {status: len(self._index.get(status, ())) for status in _STATUSES}
        body = {
            "id": self.list_id,
            "web_id": 1,
            "name": self.list_name,
            "stats": {
                "member_count": counts["subscribed"],
                "unsubscribe_count": counts["unsubscribed"],
                "cleaned_count": counts["cleaned"],
            },
        }
        return self.json(_select(body, request.query))

    @route("GET", "/3.0/lists/{list_id}/members")
    def list_members(self, request: SandboxRequest) -> httpx.Response:
        """One page of members, oldest change first (see the module docstring)."""
        self._audience(request)
        query = request.query
        count = int_param(request, "count", 10, lo=1, hi=1000)
        offset = int_param(request, "offset", 0, lo=0, hi=10**9)
        status = query.get("status") or _ALL
        if status != _ALL and status not in _STATUSES:
            raise ApiError(400, "is not a valid member status", code="field:status")
        if query.get("sort_field", "last_changed") not in ("last_changed", ""):
            raise ApiError(400, "only last_changed is supported here", code="field:sort_field")
        descending = query.get("sort_dir", "ASC").upper() == "DESC"
        index = self._index.get(status, [])
        start, end = 0, len(index)
        since = query.get("since_last_changed")
        if since:  # strictly after: whole seconds above floor(since)
            start = bisect.bisect_right(
                index, math.floor(_epoch(since, "since_last_changed")), key=_FIRST_KEY
            )
        before = query.get("before_last_changed")
        if before:  # strictly before
            end = bisect.bisect_left(
                index, math.ceil(_epoch(before, "before_last_changed")), key=_FIRST_KEY
            )
        total = max(end - start, 0)
        if descending:
            hi = max(end - offset, start)
            window = index[max(hi - count, start) : hi][::-1]
        else:
            lo = min(start + offset, end)
            window = index[lo : min(lo + count, end)]
        members = self.members
        body = {
            "members": [members[member_id] for _, member_id in window],
            "list_id": self.list_id,
            "total_items": total,
        }
        return self.json(_select(body, query))

    @route("GET", "/3.0/lists/{list_id}/members/{subscriber_hash}")
    def get_member(self, request: SandboxRequest) -> httpx.Response:
        """One member (archived ones too)."""
        return self.json(_select(self._member(request), request.query))

    @route("PUT", "/3.0/lists/{list_id}/members/{subscriber_hash}")
    def put_member(self, request: SandboxRequest) -> httpx.Response:
        """Add or update a member: ``email_address`` is required, and ``status_if_new`` when
        the address is not on the list yet; a permanently deleted address is refused."""
        self._audience(request)
        body = _body(request)
        email = body.get("email_address")
        if not isinstance(email, str) or "@" not in email:
            raise ApiError(400, "Please provide a valid email address.", code="field:email_address")
        member_id = self._hash_of(request)
        if subscriber_hash(email) != member_id:
            raise ApiError(400, "does not match the subscriber hash", code="field:email_address")
        member = self.members.get(member_id)
        if member is None or member["status"] == "archived":
            if member_id in self.forgotten:
                raise _forgotten(email)
            status = body.get("status_if_new") or body.get("status")
            if member is None and not status:
                raise ApiError(400, "is required for a new member", code="field:status_if_new")
        return self._save(member_id, member, body, email)

    @route("PATCH", "/3.0/lists/{list_id}/members/{subscriber_hash}")
    def patch_member(self, request: SandboxRequest) -> httpx.Response:
        """Update a member; a new ``email_address`` moves it to that address's hash."""
        member = self._member(request)
        body = _body(request)
        email = body.get("email_address")
        if email is not None:
            if not isinstance(email, str) or "@" not in email:
                raise ApiError(
                    400, "Please provide a valid email address.", code="field:email_address"
                )
            new_id = subscriber_hash(email)
            if new_id != member["id"]:
                if new_id in self.members:
                    raise ApiError(400, f"{email} is already a list member.", code="Member Exists")
                if new_id in self.forgotten:
                    raise _forgotten(email)
        return self._save(member["id"], member, body, email)

    @route("DELETE", "/3.0/lists/{list_id}/members/{subscriber_hash}")
    def archive_member(self, request: SandboxRequest) -> httpx.Response:
        """Archive a member (Mailchimp's "delete": the member leaves the list, not the
        account)."""
        member = self._member(request)
        if member["status"] != "archived":
            self._unstore(member["id"])
            member["status"] = "archived"
            self._touch(member)
        return self.empty(204)

    @route("POST", "/3.0/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent")
    def delete_permanent(self, request: SandboxRequest) -> httpx.Response:
        """Erase a member for good; the address cannot be added back through the API."""
        member = self._member(request)
        self._unstore(member["id"])
        del self.members[member["id"]]
        self.forgotten.add(member["id"])
        return self.empty(204)

    # ------------------------------------------------------------------ test helpers
    def change_member(self, member_id: str, **merge_fields: Any) -> None:
        """Change merge fields of a member as if edited in Mailchimp (tests, demos)."""
        member = self.members[member_id]
        member["merge_fields"] = {**member["merge_fields"], **merge_fields}
        self._touch(member)

    # ------------------------------------------------------------------ internals
    def _audience(self, request: SandboxRequest) -> None:
        if request.params["list_id"] != self.list_id:
            raise ApiError(404, _DETAILS[404])

    def _hash_of(self, request: SandboxRequest) -> str:
        value = request.params["subscriber_hash"]
        # The real API takes the address in place of its hash, too.
        return subscriber_hash(value) if "@" in value else value.lower()

    def _member(self, request: SandboxRequest) -> dict[str, Any]:
        self._audience(request)
        member = self.members.get(self._hash_of(request))
        if member is None:
            raise ApiError(404, _DETAILS[404])
        return member

    def _new_member(
        self,
        email: str,
        status: str,
        merge_fields: dict[str, Any],
        changed: int,
        opted: int,
    ) -> dict[str, Any]:
        self._web_id += 1 + self.random.randrange(50)
        member_id = subscriber_hash(email)
        return {
            "id": member_id,
            "email_address": email,
            "unique_email_id": hashlib.md5(f"{self.list_id}:{member_id}".encode()).hexdigest()[:10],
            "contact_id": hashlib.md5(f"contact:{member_id}".encode()).hexdigest(),
            "full_name": " ".join(
                part for part in (merge_fields.get("FNAME"), merge_fields.get("LNAME")) if part
            ),
            "web_id": self._web_id,
            "email_type": "html",
            "status": status,
            "merge_fields": merge_fields,
            "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
            "ip_signup": "",
            "timestamp_signup": "",
            "ip_opt": "",
            "timestamp_opt": _iso(opted) if opted else "",
            "member_rating": 2,
            "last_changed": _iso(changed),
            "language": "",
            "vip": False,
            "email_client": "",
            "source": "API - Generic",
            "tags_count": 0,
            "tags": [],
            "list_id": self.list_id,
        }

    def _save(
        self, member_id: str, member: dict[str, Any] | None, body: dict[str, Any], email: Any
    ) -> httpx.Response:
        """Apply a PUT or PATCH body (already checked for the address) and answer with the
        member."""
        merge_fields = body.get("merge_fields")
        if merge_fields is not None:
            _check_merge_fields(merge_fields)
        for name in ("status", "status_if_new"):
            value = body.get(name)
            if value is not None and value not in _WRITABLE_STATUSES:
                raise ApiError(400, "is not a status a member can be given", code=f"field:{name}")
        status = body.get("status")
        if member is None or member["status"] == "archived":
            status = body.get("status_if_new") or status
        if member is None:
            now = self.now()
            empty = {"FNAME": "", "LNAME": "", "ADDRESS": "", "PHONE": "", "BIRTHDAY": ""}
            member = self._new_member(
                email, str(status), empty, now, now if status == "subscribed" else 0
            )
            self.members[member_id] = member
        else:
            self._unstore(member_id)
        if email is not None and subscriber_hash(email) != member["id"]:
            del self.members[member["id"]]  # a new address is a new hash: the member moves
            member["id"] = subscriber_hash(email)
            self.members[member["id"]] = member
        if email is not None:
            member["email_address"] = email
        if status is not None and status != member["status"]:
            member["status"] = status
            if status == "subscribed":
                member["timestamp_opt"] = _iso(self.now())
        if merge_fields:
            merged = {**member["merge_fields"], **merge_fields}
            if isinstance(merge_fields.get("ADDRESS"), dict):
                old = member["merge_fields"].get("ADDRESS")
                merged["ADDRESS"] = {
                    **(old if isinstance(old, dict) else {}),
                    **merge_fields["ADDRESS"],
                }
            member["merge_fields"] = merged
            member["full_name"] = " ".join(
                part for part in (merged.get("FNAME"), merged.get("LNAME")) if part
            )
        self._touch(member)
        return self.json(member)

    def _touch(self, member: dict[str, Any]) -> None:
        """Give a written member a new modification time and re-index it."""
        member_id = member["id"]
        if member_id in self._changed:
            self._unstore(member_id)
        changed = self.now()
        member["last_changed"] = _iso(changed)
        self._store(member, changed)

    def _store(self, member: dict[str, Any], changed: int, *, bulk: bool = False) -> None:
        """Index a member (``bulk``: append only; the caller sorts the indexes after)."""
        member_id = member["id"]
        self.members[member_id] = member
        self._changed[member_id] = changed
        key = (changed, member_id)
        add = list.append if bulk else bisect.insort
        add(self._index.setdefault(member["status"], []), key)
        if member["status"] != "archived":
            add(self._index[_ALL], key)

    def _unstore(self, member_id: str) -> None:
        """Take a member out of the indexes (it stays in :attr:`members`)."""
        changed = self._changed.pop(member_id, None)
        if changed is None:
            return
        status = self.members[member_id]["status"]
        key = (changed, member_id)
        for name in (status, _ALL) if status != "archived" else (status,):
            index = self._index[name]
            at = bisect.bisect_left(index, key)
            if at < len(index) and index[at] == key:
                del index[at]

    @staticmethod
    def _address(row: Mapping[str, str]) -> dict[str, str] | str:
        parts = {
            "addr1": row.get("street") or "",
            "addr2": "",
            "city": row.get("city") or "",
            "state": "",
            "zip": row.get("postcode") or "",
            "country": row.get("country") or "",
        }
        # An empty address merge field is an empty string in the API, not an object.
        return parts if any(parts.values()) else ""

    @staticmethod
    def _birthday(birth_date: str) -> str:
        # Mailchimp's birthday merge field has no year: "MM/DD".
        return f"{birth_date[5:7]}/{birth_date[8:10]}" if len(birth_date) >= 10 else ""


def _body(request: SandboxRequest) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _forgotten(email: str) -> ApiError:
    return ApiError(
        400,
        f"{email} was permanently deleted and cannot be re-imported. The contact must "
        "re-subscribe to get back on the list.",
        code="Forgotten Email Not Subscribed",
    )


def _check_merge_fields(merge_fields: Any) -> None:
    if not isinstance(merge_fields, dict):
        raise ApiError(400, "must be an object", code="field:merge_fields")
    for tag, value in merge_fields.items():
        if tag not in _MERGE_TAGS:
            raise ApiError(400, "is not a merge field of this audience", code=f"field:{tag}")
        if tag == "ADDRESS":
            if value != "" and not (isinstance(value, dict) and set(value) <= set(_ADDRESS_PARTS)):
                raise ApiError(400, "must be an address object", code="field:ADDRESS")
        elif tag == "BIRTHDAY":
            text = value if isinstance(value, str) else None
            if text is None or (text and not _is_birthday(text)):
                raise ApiError(400, "must be MM/DD", code="field:BIRTHDAY")
        elif not isinstance(value, str):
            raise ApiError(400, "must be text", code=f"field:{tag}")


def _is_birthday(text: str) -> bool:
    month, slash, day = text.partition("/")
    return (
        bool(slash)
        and month.isdigit()
        and day.isdigit()
        and 1 <= int(month) <= 12
        and (1 <= int(day) <= 31)
    )


def _select(body: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``fields`` and ``exclude_fields`` (one level below the top, which covers
    ``members.id``; deeper paths select their first level)."""
    keep = _field_set(query.get("fields"))
    drop = _field_set(query.get("exclude_fields"))
    if keep is None and drop is None:
        return body
    out: dict[str, Any] = {}
    for key, value in body.items():
        if keep is not None and key not in keep[0] and key not in keep[1]:
            continue
        if drop is not None and key in drop[0]:
            continue
        inner_keep = keep[1].get(key) if keep is not None and key not in keep[0] else None
        inner_drop = drop[1].get(key) if drop is not None else None
        if inner_keep is not None or inner_drop is not None:
            value = _select_inner(value, inner_keep, inner_drop)
        out[key] = value
    return out


def _select_inner(value: Any, keep: set[str] | None, drop: set[str] | None) -> Any:
    def one(item: Any) -> Any:
        if not isinstance(item, dict) or (
            keep is None and drop is not None and drop.isdisjoint(item)
        ):
            return item  # nothing to drop: the stored dict as it is
        return {
            k: v
            for k, v in item.items()
            if (keep is None or k in keep) and (drop is None or k not in drop)
        }

    if not isinstance(value, list):
        return one(value)
    if keep is None and drop is not None and value and drop.isdisjoint(value[0]):
        return value  # members all have one shape: nothing to drop from any of them
    return [one(item) for item in value]

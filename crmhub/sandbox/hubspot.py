"""The HubSpot sandbox: CRM API v3 contacts, in memory.

Speaks the shapes the ``hubspot`` connector relies on: private-app bearer tokens; the list
endpoint (``limit`` up to 100, an ``after`` token, ``properties``, ``archived``); the search
endpoint (filters on ``lastmodifieddate``, ``limit`` up to 200, an offset ``after`` that
may not reach 10,000, as on the real API); batch update and batch upsert by email with
207 multi-status answers; archiving; GDPR deletion; errors as ``{"status": "error",
"message", "correlationId", "category"}``; and HubSpot's rate-limit headers.

Contacts live in a dict by id, with two sorted indexes (ids, and ``(lastmodifieddate ms,
id)``), so that a page costs a bisection plus the page itself.
"""

from __future__ import annotations

import uuid
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from crmhub.sandbox.app import (
    ApiError,
    SandboxApp,
    SandboxRequest,
    bearer_token,
    int_param,
    route,
)

__all__ = ["HubspotSandbox"]

_PATH = "/crm/v3/objects/contacts"
_LIST_MAX = 100
_SEARCH_MAX = 200
_SEARCH_WINDOW = 10_000  # the search API refuses to page past this many results
_BATCH_MAX = 100
_DAILY_QUOTA = 1_000_000
_BIG = 1 << 62  # greater than any id or timestamp, for bisection bounds

_PROPERTIES = frozenset({
    "firstname", "lastname", "email", "phone", "company", "jobtitle", "address", "city", "zip",
    "country", "date_of_birth", "hs_email_optout", "hs_object_id", "createdate",
    "lastmodifieddate",
})  # fmt: skip
_READ_ONLY = frozenset({"hs_object_id", "createdate", "lastmodifieddate", "hs_email_optout"})
_DEFAULT_PROPERTIES = (
    "createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname",
)  # fmt: skip
_CATEGORIES = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
    405: "VALIDATION_ERROR",
    409: "CONFLICT",
    429: "RATE_LIMITS",
}
_NOT_AUTHENTICATED = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and "
    "private app access tokens."
)
_ROW_PROPERTIES = (
    ("first_name", "firstname"), ("last_name", "lastname"), ("email", "email"),
    ("phone", "phone"), ("company", "company"), ("job_title", "jobtitle"),
    ("street", "address"), ("city", "city"), ("postcode", "zip"), ("country", "country"),
    ("birth_date", "date_of_birth"),
)  # fmt: skip
_EPOCH = datetime(1970, 1, 1)  # naive: isoformat() then writes no offset, and "Z" follows


def _iso(ms: int) -> str:
    """HubSpot's timestamp text: ``2024-05-01T10:00:00.123Z``."""
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds") + "Z"


def _ms(value: Any) -> int:
    """Epoch milliseconds from a filter value: digits (epoch ms) or ISO-8601 text."""
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{text[:40]!r} is not a valid date value") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class _Contact:
    """One contact: its property values (text) and modification / archival times."""

    __slots__ = ("archived_at", "id", "modified", "props")

    def __init__(self, contact_id: int, props: dict[str, str], modified: int) -> None:
        self.id = contact_id
        self.props = props
        self.modified = modified
        self.archived_at: int | None = None


class HubspotSandbox(SandboxApp):
    """HubSpot's CRM contacts API (v3), in memory; see the module docstring.

    Attributes:
        contacts: active contacts by id.
        archived: archived (soft-deleted) contacts by id.
        person_keys: the synthetic world's ground truth, contact id -> person key (never
            served by the API).
    """

    system = "hubspot"
    host = "api.hubapi.sandbox"
    default_credentials = "pat-na1-00000000-sandbox"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.contacts: dict[int, _Contact] = {}
        self.archived: dict[int, _Contact] = {}
        self.person_keys: dict[str, str] = {}
        self._ids: list[int] = []  # active ids, ascending
        self._archived_ids: list[int] = []
        self._modified: list[tuple[int, int]] = []  # (lastmodifieddate ms, id), ascending
        self._emails: dict[str, int] = {}  # lower-cased email -> active contact id
        self._next_id = 1001
        self._served = 0

    # ------------------------------------------------------------------ SandboxApp hooks
    def authorized(self, request: SandboxRequest) -> bool:
        """A private app token: ``Authorization: Bearer pat-...``."""
        return bearer_token(request) == self.credentials

    def error_body(self, status: int, message: str, code: str | None) -> Any:
        """HubSpot's error shape: status, message, correlationId, category."""
        if code == "unauthorized":
            message = _NOT_AUTHENTICATED
        category = code if code and code.isupper() else _CATEGORIES.get(status, "INTERNAL_ERROR")
        return {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.UUID(int=self._served + 1)),
            "category": category,
        }

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        """The ``hubspot`` connector's settings: the token is ``access_token``."""
        return {"base_url": base_url, "access_token": f"env:{self.env_name}"}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        response = super().__call__(request)
        with self._lock:
            self._served += 1
            served = self._served
        # HubSpot's quota headers, always with room to spare (rate limits are tested with
        # injected faults instead).
        response.headers["X-HubSpot-RateLimit-Daily"] = str(_DAILY_QUOTA)
        response.headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(_DAILY_QUOTA - served)
        response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = "10000"
        response.headers["X-HubSpot-RateLimit-Max"] = "190"
        response.headers["X-HubSpot-RateLimit-Remaining"] = "189"
        return response

    def seed(self, rows: Iterable[Mapping[str, str]]) -> None:
        """One contact per row, modified at the row's ``updated_at``, created up to a year
        before; ``newsletter`` "no" becomes an email opt-out (``hs_email_optout``)."""
        for row in rows:
            modified = _ms(row["updated_at"])
            created = modified - self.random.randrange(0, 365 * 86_400_000)
            props = {name: row[field] for field, name in _ROW_PROPERTIES if row.get(field)}
            newsletter = row.get("newsletter")
            if newsletter:
                props["hs_email_optout"] = "true" if newsletter == "no" else "false"
            contact = self._new(props, created, modified, index=False)
            self.person_keys[str(contact.id)] = row.get("person_key", "")
        self._modified.sort()

    def add_record(self, stream: str) -> str:
        """A new contact, modified after every other one."""
        if stream != "contacts":
            raise KeyError(f"the HubSpot sandbox has no stream {stream!r}")
        newest = self._modified[-1][0] + 1 if self._modified else 0
        now = max(self._now_ms(), newest)
        n = self._next_id
        props = {"firstname": "Ada", "lastname": f"Newcontact{n}", "email": f"new{n}@example.org"}
        return str(self._new(props, now, now).id)

    # ------------------------------------------------------------------ state
    def _now_ms(self) -> int:
        # HubSpot's timestamps count milliseconds: the app's clock, at that resolution.
        return int(self.clock() * 1000)

    def _new(
        self, props: dict[str, str], created: int, modified: int, *, index: bool = True
    ) -> _Contact:
        contact_id = self._next_id
        self._next_id += 1
        props["hs_object_id"] = str(contact_id)
        props["createdate"] = _iso(created)
        props["lastmodifieddate"] = _iso(modified)
        contact = _Contact(contact_id, props, modified)
        self.contacts[contact_id] = contact
        self._ids.append(contact_id)  # ids grow, so the list stays sorted
        if index:
            insort(self._modified, (modified, contact_id))
        else:
            self._modified.append((modified, contact_id))
        email = props.get("email")
        if email:
            # The first contact keeps an address (HubSpot's emails are unique); a person the
            # world entered twice keeps the text on the second record all the same.
            self._emails.setdefault(email.lower(), contact_id)
        return contact

    def _unindex(self, contact: _Contact) -> None:
        """Remove an active contact from the active indexes."""
        del self._modified[bisect_left(self._modified, (contact.modified, contact.id))]
        del self._ids[bisect_left(self._ids, contact.id)]
        email = contact.props.get("email")
        if email and self._emails.get(email.lower()) == contact.id:
            del self._emails[email.lower()]

    def _write(self, contact: _Contact, properties: Mapping[str, str], now: int) -> None:
        """Set properties ("" clears one) and move the contact's date to ``now``."""
        props = contact.props
        old_email = props.get("email")
        for name, value in properties.items():
            if value == "":
                props.pop(name, None)
            else:
                props[name] = value
        new_email = props.get("email")
        if old_email != new_email:
            if old_email and self._emails.get(old_email.lower()) == contact.id:
                del self._emails[old_email.lower()]
            if new_email:
                self._emails[new_email.lower()] = contact.id
        del self._modified[bisect_left(self._modified, (contact.modified, contact.id))]
        # Every change moves the date on, even within one millisecond of the last (or on a
        # frozen test clock): a reader holding the old date must see the change.
        contact.modified = max(now, contact.modified + 1)
        props["lastmodifieddate"] = _iso(contact.modified)
        insort(self._modified, (contact.modified, contact.id))

    def archive(self, contact_id: int) -> None:
        """Archive a contact (HubSpot's soft delete), as the API's DELETE does."""
        contact = self.contacts.pop(contact_id)
        self._unindex(contact)
        contact.archived_at = self._now_ms()
        self.archived[contact_id] = contact
        insort(self._archived_ids, contact_id)

    def _render(
        self, contact: _Contact, names: list[str], trace: str | None = None
    ) -> dict[str, Any]:
        """A contact as the API shows it, with the properties ``names`` (see :func:`_known`)."""
        props = contact.props
        record: dict[str, Any] = {
            "id": str(contact.id),
            "properties": {n: props.get(n) for n in names},
            "createdAt": props["createdate"],
            "updatedAt": props["lastmodifieddate"],
            "archived": contact.archived_at is not None,
        }
        if contact.archived_at is not None:
            record["archivedAt"] = _iso(contact.archived_at)
        if trace is not None:
            record["objectWriteTraceId"] = trace
        return record

    # ------------------------------------------------------------------ reading
    @route("GET", _PATH)
    def list_contacts(self, request: SandboxRequest) -> httpx.Response:
        """``GET /crm/v3/objects/contacts?limit=&after=&properties=&archived=``, by id."""
        limit = int_param(request, "limit", 10, lo=1, hi=_LIST_MAX)
        archived = request.query.get("archived", "false").lower() == "true"
        ids, store = (self._archived_ids, self.archived) if archived else (self._ids, self.contacts)
        after = request.query.get("after") or "0"
        if not after.isdigit():
            raise ApiError(400, "after is not a valid paging token")
        start = bisect_left(ids, int(after))
        names = _names(request)
        body: dict[str, Any] = {
            "results": [self._render(store[i], names) for i in ids[start : start + limit]]
        }
        if start + limit < len(ids):
            token = str(ids[start + limit])
            link = request.raw.url.copy_set_param("after", token)
            body["paging"] = {"next": {"after": token, "link": str(link)}}
        return self.json(body)

    @route("GET", _PATH + "/{contactId}")
    def get_contact(self, request: SandboxRequest) -> httpx.Response:
        """``GET /crm/v3/objects/contacts/{contactId}`` (``idProperty=email`` too)."""
        contact = self._find(request.params["contactId"], request.query.get("idProperty"))
        if contact is None and request.query.get("archived", "").lower() == "true":
            contact = self.archived.get(_int(request.params["contactId"]))
        if contact is None:
            raise ApiError(404, "resource not found")
        return self.json(self._render(contact, _names(request)))

    @route("POST", _PATH + "/search")
    def search(self, request: SandboxRequest) -> httpx.Response:
        """``POST /crm/v3/objects/contacts/search``: filters on ``lastmodifieddate`` (and,
        within one millisecond, ``hs_object_id``), one sort, offset paging under 10,000."""
        body = request.json() or {}
        if not isinstance(body, dict):
            raise ApiError(400, "the search request must be a JSON object")
        limit = _body_int(body, "limit", 10, 1, _SEARCH_MAX)
        after = _body_int(body, "after", 0, 0, _BIG)
        if after >= _SEARCH_WINDOW:
            raise ApiError(400, f"The search endpoints cannot page past {_SEARCH_WINDOW} results.")
        low, high, first_id = _range(body.get("filterGroups") or [])
        descending = _descending(body.get("sorts") or [], low == high)
        start = bisect_left(self._modified, (low, first_id))
        end = max(bisect_right(self._modified, (high, _BIG)), start)
        total = end - start
        count = max(0, min(limit, min(total, _SEARCH_WINDOW) - after))
        if descending:
            keys = self._modified[end - after - count : end - after][::-1]
        else:
            keys = self._modified[start + after : start + after + count]
        names = _known(body.get("properties") or _DEFAULT_PROPERTIES)
        out: dict[str, Any] = {
            "total": total,
            "results": [self._render(self.contacts[i], names) for _, i in keys],
        }
        if after + count < total:
            out["paging"] = {"next": {"after": str(after + count)}}
        return self.json(out)

    # ------------------------------------------------------------------ writing
    @route("PATCH", _PATH + "/{contactId}")
    def update_contact(self, request: SandboxRequest) -> httpx.Response:
        """``PATCH /crm/v3/objects/contacts/{contactId}`` with ``{"properties": {...}}``."""
        body = request.json() or {}
        properties = _properties(body.get("properties") if isinstance(body, dict) else None)
        contact = self._find(request.params["contactId"], request.query.get("idProperty"))
        if contact is None:
            raise ApiError(404, "resource not found")
        self._check_email(contact.id, properties)
        self._write(contact, properties, self._now_ms())
        return self.json(self._render(contact, _known([*_DEFAULT_PROPERTIES, *properties])))

    @route("DELETE", _PATH + "/{contactId}")
    def archive_contact(self, request: SandboxRequest) -> httpx.Response:
        """``DELETE /crm/v3/objects/contacts/{contactId}``: archive; 204 also if archived."""
        contact_id = _int(request.params["contactId"])
        if contact_id in self.contacts:
            self.archive(contact_id)
        elif contact_id not in self.archived:
            raise ApiError(404, "resource not found")
        return self.empty(204)

    @route("POST", _PATH + "/batch/update")
    def batch_update(self, request: SandboxRequest) -> httpx.Response:
        """``POST .../batch/update``: ``{"inputs": [{"id", "properties"}]}``; unknown ids
        are per-record errors (207)."""
        inputs = _inputs(request)
        keys = [str(item.get("id", "")) for item in inputs]
        if len(set(keys)) < len(keys):
            raise ApiError(400, "Duplicate IDs found in batch input.")
        now, results, errors = self._now_ms(), [], []
        for item, key in zip(inputs, keys, strict=True):
            properties = item["properties"]
            contact = self._find(key, item.get("idProperty"))
            if contact is None:
                errors.append(_error("OBJECT_NOT_FOUND", _MISSING, key))
            elif self._email_taken(contact.id, properties):
                errors.append(_error("CONFLICT", "Contact already exists.", key))
            else:
                self._write(contact, properties, now)
                names = _known([*_DEFAULT_PROPERTIES, *properties])
                results.append(self._render(contact, names, item.get("objectWriteTraceId")))
        return self._batch_answer(results, errors, now)

    @route("POST", _PATH + "/batch/upsert")
    def batch_upsert(self, request: SandboxRequest) -> httpx.Response:
        """``POST .../batch/upsert``: ``{"inputs": [{"idProperty": "email", "id", "properties"}]}``
        creates or updates by email."""
        inputs = _inputs(request)
        for item in inputs:
            if item.get("idProperty") != "email" or not str(item.get("id", "")).strip():
                raise ApiError(400, "the sandbox upserts by a non-empty email idProperty")
        emails = [str(item["id"]).strip().lower() for item in inputs]
        if len(set(emails)) < len(emails):
            raise ApiError(400, "Duplicate IDs found in batch input.")
        now, results = self._now_ms(), []
        for item, email in zip(inputs, emails, strict=True):
            properties = {**item["properties"], "email": str(item["id"]).strip()}
            existing = self._emails.get(email)
            if existing is None:
                contact, new = self._new(dict(properties), now, now), True
            else:
                contact, new = self.contacts[existing], False
                self._write(contact, properties, now)
            record = self._render(
                contact,
                _known([*_DEFAULT_PROPERTIES, *properties]),
                item.get("objectWriteTraceId"),
            )
            record["new"] = new
            results.append(record)
        return self._batch_answer(results, [], now)

    @route("POST", _PATH + "/gdpr-delete")
    def gdpr_delete(self, request: SandboxRequest) -> httpx.Response:
        """``POST .../gdpr-delete`` ``{"objectId"[, "idProperty": "email"]}``: the contact
        is gone for good (not archived); an unknown id is a 404, an unknown email a 204
        (HubSpot blocklists the address instead)."""
        body = request.json() or {}
        if not isinstance(body, dict) or not body.get("objectId"):
            raise ApiError(400, "objectId is required")
        object_id, id_property = str(body["objectId"]), body.get("idProperty")
        if id_property == "email":
            found = self._emails.get(object_id.strip().lower())
            if found is None:
                return self.empty(204)
            contact_id = found
        elif id_property in (None, "hs_object_id"):
            contact_id = _int(object_id)
        else:
            raise ApiError(400, "idProperty must be email or hs_object_id")
        if contact_id in self.contacts:
            self._unindex(self.contacts.pop(contact_id))
        elif contact_id in self.archived:
            del self.archived[contact_id]
            del self._archived_ids[bisect_left(self._archived_ids, contact_id)]
        else:
            raise ApiError(404, "resource not found")
        self.person_keys.pop(str(contact_id), None)
        return self.empty(204)

    # ------------------------------------------------------------------ helpers
    def _find(self, key: str, id_property: str | None) -> _Contact | None:
        """An active contact by id, or by email with ``idProperty=email``."""
        if id_property == "email":
            found = self._emails.get(key.strip().lower())
            return None if found is None else self.contacts.get(found)
        if id_property not in (None, "hs_object_id"):
            raise ApiError(400, "idProperty must be email or hs_object_id")
        return self.contacts.get(_int(key)) if key.isdigit() else None

    def _email_taken(self, contact_id: int, properties: Mapping[str, str]) -> bool:
        email = properties.get("email")
        owner = self._emails.get(email.lower()) if email else None
        return owner is not None and owner != contact_id

    def _check_email(self, contact_id: int, properties: Mapping[str, str]) -> None:
        if self._email_taken(contact_id, properties):
            raise ApiError(409, "Contact already exists.", code="CONFLICT")

    def _batch_answer(
        self, results: list[dict[str, Any]], errors: list[dict[str, Any]], now: int
    ) -> httpx.Response:
        # HubSpot does not promise the inputs' order: answer by id, so callers must match.
        results.sort(key=lambda r: int(r["id"]))
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": _iso(now),
            "completedAt": _iso(now),
        }
        if errors:
            body["numErrors"] = len(errors)
            body["errors"] = errors
        return self.json(body, 207 if errors else 200)


_MISSING = "Could not get some CONTACT objects, they may be deleted or not exist."


def _error(category: str, message: str, key: str) -> dict[str, Any]:
    """One record's error in a multi-status batch answer."""
    return {"status": "error", "category": category, "message": message, "context": {"ids": [key]}}


def _int(text: str) -> int:
    if not text.isdigit():
        raise ApiError(404, "resource not found")
    return int(text)


def _names(request: SandboxRequest) -> list[str]:
    """The ``properties`` asked for (comma-separated and/or repeated), or the defaults."""
    names = [n.strip() for v in request.query_list("properties") for n in v.split(",")]
    return _known([n for n in names if n] or _DEFAULT_PROPERTIES)


def _known(names: Iterable[Any]) -> list[str]:
    """The properties to show, once each: requested ones without a value come back as null,
    unknown ones not at all (as on HubSpot)."""
    return [n for n in dict.fromkeys(names) if isinstance(n, str) and n in _PROPERTIES]


def _body_int(body: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = body.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be an integer") from None
    if not lo <= number <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}")
    return number


def _range(groups: Any) -> tuple[int, int, int]:
    """(lowest ms, highest ms, lowest id within the lowest ms) the filters allow."""
    if not isinstance(groups, list) or len(groups) > 1:
        raise ApiError(400, "the sandbox supports one filter group")
    low, high, first_id = 0, _BIG, 0
    filters = groups[0].get("filters", []) if groups and isinstance(groups[0], dict) else []
    for item in filters:
        name, op, value = item.get("propertyName"), item.get("operator"), item.get("value")
        if name == "lastmodifieddate" and op in ("GTE", "GT", "EQ", "LTE", "LT"):
            ms = _ms(value)
            if op in ("GTE", "GT", "EQ"):
                low = max(low, ms + (op == "GT"))
            if op in ("LTE", "LT", "EQ"):
                high = min(high, ms - (op == "LT"))
        elif name == "hs_object_id" and op in ("GT", "GTE") and str(value).isdigit():
            first_id = max(first_id, int(value) + (op == "GT"))
        else:
            raise ApiError(400, f"the sandbox cannot filter on {name} {op}")
    if first_id and low != high:
        raise ApiError(400, "the sandbox filters on hs_object_id within one lastmodifieddate")
    return low, high, first_id


def _descending(sorts: Any, one_instant: bool) -> bool:
    """Whether the one allowed sort is descending; by id only within one millisecond
    (where the index's order is the id order)."""
    if not isinstance(sorts, list) or len(sorts) > 1:
        raise ApiError(400, "a search accepts one sort")
    if not sorts:
        return False
    sort = sorts[0] if isinstance(sorts[0], dict) else {}
    name, direction = sort.get("propertyName"), sort.get("direction", "ASCENDING")
    if direction not in ("ASCENDING", "DESCENDING"):
        raise ApiError(400, "direction must be ASCENDING or DESCENDING")
    if name != "lastmodifieddate" and not (name == "hs_object_id" and one_instant):
        raise ApiError(400, f"the sandbox cannot sort on {name}")
    return bool(direction == "DESCENDING")


def _properties(value: Any) -> dict[str, str]:
    """Validated writable properties (text; "" clears); a 400 like HubSpot's otherwise."""
    if not isinstance(value, dict):
        raise ApiError(400, "properties must be an object")
    out: dict[str, str] = {}
    for name, item in value.items():
        if name not in _PROPERTIES:
            raise ApiError(400, f'Property values were not valid: Property "{name}" does not exist')
        if name in _READ_ONLY:
            raise ApiError(400, f'Property values were not valid: "{name}" is read-only')
        text = "" if item is None else str(item)
        if name == "email" and text and "@" not in text:
            raise ApiError(400, "Property values were not valid: INVALID_EMAIL")
        out[name] = text
    return out


def _inputs(request: SandboxRequest) -> list[dict[str, Any]]:
    """A batch's inputs (1 to 100), each with validated properties."""
    body = request.json()
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(400, "inputs must be a non-empty list")
    if len(inputs) > _BATCH_MAX:
        raise ApiError(400, f"a batch takes at most {_BATCH_MAX} inputs")
    out = []
    for item in inputs:
        if not isinstance(item, dict):
            raise ApiError(400, "each input must be an object")
        out.append({**item, "properties": _properties(item.get("properties", {}))})
    return out

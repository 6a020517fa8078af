"""The ``hubspot`` connector: CRM contacts through HubSpot's CRM API v3.

Reads, with a private app token (``Authorization: Bearer pat-...``)::

    [connectors.crm]
    type = "hubspot"
    access_token = "env:HUBSPOT_TOKEN"

- A **full read** lists every contact (``GET /crm/v3/objects/contacts``, by id, <= 100 a page)
  and then every archived one (reported as deleted). Before listing, it asks the search API
  for the newest ``lastmodifieddate``: that instant is where the next incremental read
  starts, so a contact changed while the list is being read is not missed.
- An **incremental read** searches for contacts with ``lastmodifieddate`` at or after the
  saved instant, oldest first (``POST .../search``). Results come in ascending order, so
  every page carries its own state: ``{"lastmodifieddate": ms, "ids_at": [ids read at that
  very ms]}`` (the ids, because the next search starts at that ms again and must skip them).
  The search API refuses to page past 10,000 results: the connector then starts a new
  search from the last instant read. Should more than 10,000 contacts share one instant, it
  walks them by ``hs_object_id`` (state ``"tie_after"``). Archived contacts with an
  ``archivedAt`` at or after the saved one are then reported as deleted.
- **Writes** go in batches of 100: updates by id (``batch/update``), creates as upserts by
  email (``batch/upsert``, so a retried create does not make a second contact), each input
  tagged with the change's idempotency key as ``objectWriteTraceId``; per-record errors of
  a 207 answer go back to their change.
- **Erasure** is HubSpot's GDPR delete (``POST .../gdpr-delete``); an unknown id is already
  gone.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from crmhub.connector import (
    Change,
    Connector,
    EraseResult,
    HttpConnectorConfig,
    Page,
    Stream,
    WriteResult,
)
from crmhub.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    RetriableError,
    SkippableRecordError,
)
from crmhub.hookspecs import hookimpl
from crmhub.paginators import CursorPaginator, json_body

__all__ = ["HubspotConfig", "HubspotConnector"]

_CONTACTS = "/crm/v3/objects/contacts"
_LIST_MAX = 100
_SEARCH_WINDOW = 10_000
_BATCH_MAX = 100
PROPERTIES = (
    "firstname", "lastname", "email", "phone", "company", "jobtitle", "address", "city", "zip",
    "country", "date_of_birth", "hs_email_optout", "hs_object_id", "createdate",
    "lastmodifieddate",
)  # fmt: skip
"""The contact properties every read asks for (the mapping reads these)."""


class HubspotConfig(HttpConnectorConfig):
    """Settings of the ``hubspot`` connector."""

    base_url: str = "https://api.hubapi.com"
    access_token: SecretStr
    """A private app access token (``pat-...``) with the crm.objects.contacts scopes."""
    page_size: int = Field(100, ge=1, le=200)
    """Contacts per request: up to 200 for searches; lists take at most 100."""
    extra_properties: list[str] = Field(default_factory=list)
    """Further contact properties to read (custom properties a custom mapping uses)."""


def _ms(value: Any) -> int | None:
    """Epoch milliseconds of a HubSpot timestamp (ISO-8601 text or epoch ms), None if unusable."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:  # HubSpot writes UTC; never read it as local time
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _modified(record: Mapping[str, Any]) -> int | None:
    properties = record.get("properties")
    found = _ms(properties.get("lastmodifieddate")) if isinstance(properties, Mapping) else None
    return found if found is not None else _ms(record.get("updatedAt"))


def _next_after(body: Any) -> str | None:
    paging = body.get("paging") if isinstance(body, Mapping) else None
    following = paging.get("next") if isinstance(paging, Mapping) else None
    after = following.get("after") if isinstance(following, Mapping) else None
    return str(after) if after not in (None, "") else None


def _results(body: Any) -> list[dict[str, Any]]:
    results = body.get("results") if isinstance(body, Mapping) else None
    if not isinstance(results, list):
        raise FatalError("HubSpot answered a listing without a list of results")
    return [r for r in results if isinstance(r, dict)]


def _status(exc: ConnectorError) -> int | None:
    response = exc.response
    return response.status_code if isinstance(response, httpx.Response) else None


def _category(exc: ConnectorError) -> str:
    """HubSpot's error category (never its message: that may quote the values sent)."""
    try:
        body = exc.response.json() if isinstance(exc.response, httpx.Response) else None
    except ValueError:
        body = None
    category = body.get("category") if isinstance(body, dict) else None
    return str(category) if category else "no category"


def _property_value(value: Any) -> str:
    """A property value as HubSpot takes it: text; "" clears the property."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ";".join(_property_value(v) for v in value)  # multiple checkboxes
    return str(value)


class _Window:
    """Where an incremental read is: the last instant read and the ids read at it."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        self.since = int(state.get("lastmodifieddate") or 0)
        self.ids_at = {str(i) for i in state.get("ids_at") or ()}
        tie = state.get("tie_after")
        self.tie_after: int | None = None if tie is None else int(tie)
        self.archived_at = state.get("archivedAt")

    def take(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` is new to this read (and advance past it)."""
        ms, record_id = _modified(record), str(record.get("id"))
        if ms is None or ms < self.since:
            return ms is None  # no date: pass it on, the cursor cannot move on it
        if ms == self.since:
            if record_id in self.ids_at:
                return False
            self.ids_at.add(record_id)
        else:
            self.since, self.ids_at = ms, {record_id}
        return True

    def state(self) -> dict[str, Any]:
        """The state to commit with the records taken so far."""
        state: dict[str, Any] = {
            "lastmodifieddate": self.since,
            "ids_at": sorted(self.ids_at),
            "archivedAt": self.archived_at,
        }
        if self.tie_after is not None:
            state["tie_after"] = self.tie_after
        return state


class HubspotConnector(Connector):
    """HubSpot CRM contacts: read (full and incremental, with archivals as deletions), write
    (batch update and upsert by email) and GDPR erasure. See the module docstring."""

    name = "hubspot"
    Config = HubspotConfig
    config: HubspotConfig
    description = "HubSpot CRM contacts (API v3): incremental by lastmodifieddate, push, erase"
    default_mapping = "hubspot"
    streams: ClassVar[dict[str, Stream]] = {
        "contacts": Stream(
            primary_key="id",
            cursor="properties.lastmodifieddate",
            kind="person",
            description="contacts; archived contacts are reported as deleted",
        )
    }

    def http_settings(self) -> dict[str, Any]:
        """The hub's client settings plus the bearer token."""
        options = super().http_settings()
        token = self.config.access_token.get_secret_value()
        options["headers"] = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        return options

    # ------------------------------------------------------------------ check
    def check(self) -> None:
        """List one contact, to prove the token and the host.

        Raises:
            AuthError: the token is wrong (401) or lacks the contacts scope (403).
            ConnectorError: HubSpot cannot be reached, or keeps failing.
        """
        try:
            self.http.get(_CONTACTS, params={"limit": 1, "archived": "false"})
        except AuthError as exc:
            if _status(exc) == 403:
                message = (
                    "HubSpot accepted the access token but it may not read contacts: give the "
                    "private app the crm.objects.contacts.read scope"
                )
            else:
                message = (
                    "HubSpot refused the access token (HTTP 401): check access_token, a "
                    "private app token (pat-...) of this HubSpot account"
                )
            raise AuthError(message, connector=self.instance_name) from None
        except RetriableError as exc:
            host = httpx.URL(self.config.base_url).host
            if exc.response is None:
                message = f"cannot reach HubSpot at {host}: check base_url and the network"
            else:
                message = f"HubSpot at {host} keeps failing (HTTP {_status(exc)}); try later"
            raise ConnectorError(message, connector=self.instance_name) from None

    # ------------------------------------------------------------------ read
    def state_since(self, stream: str, since: datetime) -> dict[str, Any]:
        """The state of an incremental read of contacts changed or archived from ``since``."""
        self._stream(stream)
        ms = int(since.timestamp() * 1000)
        return {"lastmodifieddate": ms, "ids_at": [], "archivedAt": ms}

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        """Pages of raw contacts and deletions; see the module docstring for the states.

        Args:
            stream: ``"contacts"``.
            state: the last committed page's state; None for a full read.
        """
        self._stream(stream)
        if not state or "full" in state:
            yield from self._read_full((state or {}).get("full"))
        else:
            yield from self._read_changes(_Window(state))

    def _stream(self, stream: str) -> None:
        if stream not in self.streams:
            raise FatalError(f"unknown stream {stream!r} (streams: contacts)", connector=self.name)

    def _properties(self) -> list[str]:
        return list(dict.fromkeys([*PROPERTIES, *self.config.extra_properties]))

    def _search(self, payload: dict[str, Any]) -> Any:
        return json_body(self.http.post(f"{_CONTACTS}/search", json=payload))

    def _read_full(self, resume: Mapping[str, Any] | None) -> Iterator[Page]:
        """Every contact by id; the cursor is the newest change seen before listing began."""
        if resume is None:
            newest = _results(
                self._search(
                    {
                        "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
                        "properties": ["lastmodifieddate"],
                        "limit": 1,
                    }
                )
            )
            since, after, ids_at = (_modified(newest[0]) or 0) if newest else 0, None, set()
        else:
            since, after = int(resume["since"]), resume.get("after")
            ids_at = {str(i) for i in resume.get("ids_at") or ()}
        params: dict[str, Any] = {
            "limit": min(self.config.page_size, _LIST_MAX),
            "properties": ",".join(self._properties()),
            "archived": "false",
        }
        if after:
            params["after"] = after
        window = _Window({"lastmodifieddate": since})
        for _response, body in CursorPaginator().pages(self.http, _CONTACTS, params):
            records = _results(body)
            # Contacts read at the cursor's very instant need not come again.
            ids_at.update(str(r.get("id")) for r in records if _modified(r) == since)
            following = _next_after(body)
            window.ids_at = ids_at
            if following is None:
                yield Page(records=records, state=window.state())
            else:
                resume_at = {"since": since, "after": following, "ids_at": sorted(ids_at)}
                yield Page(records=records, state={"full": resume_at})
        yield from self._read_archived(window)

    def _read_changes(self, window: _Window) -> Iterator[Page]:
        """Contacts changed from the window's instant on, then archivals."""
        while True:
            if window.tie_after is not None:
                yield from self._read_tie(window)
                continue
            done, first = yield from self._search_window(window)
            if done:
                break
            if first == window.since:
                # A whole window at one instant: the next search would start there again.
                # Walk that instant by id instead (from the lowest: after a crash, the ids
                # read at it before come again, unchanged).
                window.tie_after = 0
        yield from self._read_archived(window)

    def _query(self, filters: list[dict[str, str]], sort: str, after: str | None) -> Any:
        """One search page: ``filters`` (one group), ascending by ``sort``, from ``after``."""
        payload: dict[str, Any] = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": self._properties(),
            "limit": self.config.page_size,
        }
        if after is not None:
            payload["after"] = after
        return self._search(payload)

    def _search_window(self, window: _Window) -> Generator[Page, None, tuple[bool, int | None]]:
        """One search from the window's instant, until the end or the 10,000 results the
        API pages through; returns whether it is the end, and the window's first instant."""
        # The query stays fixed while paging: the offsets count in its results.
        filters = [
            {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(window.since)}
        ]
        after: str | None = None
        first: int | None = None
        while True:
            try:
                body = self._query(filters, "lastmodifieddate", after)
            except FatalError as exc:
                if after is None or _status(exc) != 400 or isinstance(exc, AuthError):
                    raise
                return False, first  # past the API's paging limit: start a new search
            results = _results(body)
            if first is None and results:
                first = _modified(results[0])
            records = [r for r in results if window.take(r)]
            yield Page(records=records, state=window.state())
            after = _next_after(body)
            if after is None:
                return True, first
            if not after.isdigit() or int(after) >= _SEARCH_WINDOW:
                return False, first

    def _read_tie(self, window: _Window) -> Iterator[Page]:
        """Every contact modified at the window's very instant, by id; then past it."""
        read_before = set(window.ids_at)  # sent already in this run: not again
        window.ids_at = set()
        while True:  # one search per 10,000 ids
            filters = [
                {"propertyName": "lastmodifieddate", "operator": "EQ", "value": str(window.since)},
                {"propertyName": "hs_object_id", "operator": "GT", "value": str(window.tie_after)},
            ]
            after: str | None = None
            while True:
                body = self._query(filters, "hs_object_id", after)
                results = _results(body)
                ids = [int(r["id"]) for r in results if str(r.get("id", "")).isdigit()]
                records = [r for r in results if str(r.get("id")) not in read_before]
                after = _next_after(body)
                if after is None:  # the instant is done: the next search starts after it
                    window.since, window.tie_after = window.since + 1, None
                    yield Page(records=records, state=window.state())
                    return
                window.tie_after = max([window.tie_after or 0, *ids])
                yield Page(records=records, state=window.state())
                if not after.isdigit() or int(after) >= _SEARCH_WINDOW:
                    break

    def _read_archived(self, window: _Window) -> Iterator[Page]:
        """Contacts archived at or after the window's ``archivedAt`` (all of them when it is
        None), as deletions. The listing goes by id, not by time, so only its last page may
        carry the new ``archivedAt``."""
        since = window.archived_at
        newest = since
        params = {
            "limit": min(self.config.page_size, _LIST_MAX),
            "archived": "true",
            "properties": "hs_object_id",
        }
        for _response, body in CursorPaginator().pages(self.http, _CONTACTS, params):
            deleted = []
            for record in _results(body):
                at = _ms(record.get("archivedAt"))
                if since is None or at is None or at >= since:
                    deleted.append(str(record.get("id")))
                if at is not None and (newest is None or at > newest):
                    newest = at
            if _next_after(body) is None:
                window.archived_at = newest
                yield Page(deleted=deleted, state=window.state())
            else:
                yield Page(deleted=deleted)

    # ------------------------------------------------------------------ write
    def write(self, stream: str, changes: Iterable[Change]) -> Iterator[WriteResult]:
        """Push changes in batches of up to 100: updates by id, creates as upserts by email.

        Yields one result per change (not necessarily in order): a contact that no longer
        exists fails for good; rate limits and server errors (after the client's retries)
        fail for a later retry; a batch HubSpot refuses as a whole is sent again change by
        change, so that one bad value fails only its own change.

        Raises:
            AuthError: HubSpot refused the token (results already yielded stand).
        """
        self._stream(stream)
        updates: dict[str, Change] = {}
        upserts: dict[str, Change] = {}
        for change in changes:
            if change.external_id is None:
                email = str(change.fields.get("email") or "").strip().lower()
                if not email:
                    yield WriteResult(
                        change.idempotency_key,
                        ok=False,
                        error="a new HubSpot contact needs an email: contacts are upserted by it",
                    )
                    continue
                buffer, key, kind = upserts, email, "upsert"
            else:
                if not change.fields:
                    yield WriteResult(
                        change.idempotency_key, ok=True, external_id=change.external_id
                    )
                    continue
                buffer, key, kind = updates, str(change.external_id), "update"
            # HubSpot refuses a batch naming one record twice: send what is buffered first.
            if key in buffer or len(buffer) >= _BATCH_MAX:
                yield from self._send(kind, list(buffer.values()))
                buffer.clear()
            buffer[key] = change
        if updates:
            yield from self._send("update", list(updates.values()))
        if upserts:
            yield from self._send("upsert", list(upserts.values()))

    def _input(self, kind: str, change: Change) -> dict[str, Any]:
        properties = {name: _property_value(value) for name, value in change.fields.items()}
        item: dict[str, Any] = {
            "properties": properties,
            "objectWriteTraceId": change.idempotency_key,
        }
        if kind == "upsert":
            item.update(idProperty="email", id=properties["email"].strip())
        else:
            item["id"] = str(change.external_id)
        return item

    def _send(self, kind: str, changes: list[Change]) -> Iterator[WriteResult]:
        """One batch request; one result per change."""
        bad = [c for c in changes if any(isinstance(v, Mapping) for v in c.fields.values())]
        for change in bad:
            yield _failed(change, "a pushed field is not a flat HubSpot property")
        changes = [c for c in changes if c not in bad]
        if not changes:
            return
        try:
            response = self.http.post(
                f"{_CONTACTS}/batch/{kind}",
                json={"inputs": [self._input(kind, c) for c in changes]},
            )
        except AuthError:
            # Not one record's fault: stop the push; the engine retries the rest later.
            raise AuthError(
                "HubSpot refused the access token for a write: check access_token and its "
                "crm.objects.contacts.write scope",
                connector=self.instance_name,
            ) from None
        except RetriableError as exc:
            for change in changes:
                yield _failed(change, f"HubSpot did not take the batch: {exc}", retriable=True)
            return
        except (FatalError, SkippableRecordError) as exc:
            if len(changes) > 1:  # find the change HubSpot objects to: one at a time
                for change in changes:
                    yield from self._send(kind, [change])
                return
            if _status(exc) == 404:
                yield _failed(changes[0], "the contact no longer exists in HubSpot")
            else:
                yield _failed(changes[0], f"HubSpot refused the change: {exc} ({_category(exc)})")
            return
        yield from self._results(kind, changes, json_body(response))

    def _results(self, kind: str, changes: list[Change], body: Any) -> Iterator[WriteResult]:
        """Match a batch answer's results and errors back to the changes (HubSpot does not
        keep the inputs' order): by ``objectWriteTraceId`` when echoed, else by id (updates)
        or email (upserts)."""
        answer = body if isinstance(body, dict) else {}
        by_trace = {c.idempotency_key: c for c in changes}
        by_key = {_key(kind, c.external_id, c.fields.get("email")): c for c in changes}
        done: dict[str, WriteResult] = {}
        for result in _dicts(answer.get("results")):
            properties = result.get("properties")
            email = properties.get("email") if isinstance(properties, dict) else None
            change = by_trace.get(str(result.get("objectWriteTraceId"))) or by_key.get(
                _key(kind, result.get("id"), email)
            )
            if change is not None:
                key = change.idempotency_key
                done[key] = WriteResult(key, ok=True, external_id=str(result.get("id")))
        for error in _dicts(answer.get("errors")):
            context = error.get("context")
            ids = context.get("ids") if isinstance(context, dict) else None
            keys = [_key(kind, k, k) for k in ids or ()]
            matched = [by_key[k] for k in keys if k in by_key]
            if str(error.get("objectWriteTraceId")) in by_trace:
                matched.append(by_trace[str(error.get("objectWriteTraceId"))])
            category = str(error.get("category") or "no category")
            if category == "OBJECT_NOT_FOUND":
                reason, retriable = "the contact no longer exists in HubSpot", False
            else:
                reason = f"HubSpot refused the change ({category})"
                retriable = category == "RATE_LIMITS"
            for change in matched:
                done[change.idempotency_key] = _failed(change, reason, retriable=retriable)
        for change in changes:
            yield done.get(change.idempotency_key) or _failed(
                change, "HubSpot's batch answer did not mention this change", retriable=True
            )

    # ------------------------------------------------------------------ erase
    def erase(self, external_ids: Iterable[str]) -> Iterator[EraseResult]:
        """GDPR-delete contacts by id (or by email, for an id holding an "@"); an unknown id
        (404) is already gone."""
        for external_id in external_ids:
            body = {"objectId": str(external_id)}
            if "@" in str(external_id):
                body["idProperty"] = "email"
            try:
                self.http.post(f"{_CONTACTS}/gdpr-delete", json=body)
            except SkippableRecordError:
                yield EraseResult(external_id, "already_gone")
            except AuthError:
                yield EraseResult(
                    external_id, "failed", error="HubSpot refused the access token", retriable=True
                )
            except RetriableError as exc:
                yield EraseResult(external_id, "failed", error=str(exc), retriable=True)
            except FatalError as exc:
                yield EraseResult(external_id, "failed", error=f"{exc} ({_category(exc)})")
            else:
                yield EraseResult(external_id, "erased")


def _key(kind: str, external_id: Any, email: Any) -> str:
    """What identifies a record within one batch: the email of an upsert, else the id."""
    return str(email or "").strip().lower() if kind == "upsert" else str(external_id)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _failed(change: Change, error: str, *, retriable: bool = False) -> WriteResult:
    return WriteResult(change.idempotency_key, ok=False, error=error, retriable=retriable)


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    """Register the ``hubspot`` connector."""
    register(HubspotConnector)

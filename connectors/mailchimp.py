"""The ``mailchimp`` connector: the members of one Mailchimp audience (Marketing API 3.0).

::

    [connectors.newsletter]
    type = "mailchimp"
    api_key = "env:MAILCHIMP_API_KEY"     # ends in the data centre: ...-us21
    list_id = "a1b2c3d4e5"                # the audience id

- **Auth**: HTTP Basic, any user name, the API key as password. The API root
  ``https://<dc>.api.mailchimp.com/3.0`` comes from the key's data-centre suffix unless
  ``base_url`` is set.
- **Read** (stream ``members``): ``GET /lists/{list_id}/members`` paged with ``count`` and
  ``offset``, oldest change first, from ``since_last_changed`` on an incremental read; then
  the archived members changed in the same window (``status=archived``, ids only), which
  the API leaves out of the normal listing: they are reported as deleted.
- **Write**: a new member is ``PUT /lists/{list_id}/members/{hash}`` (add or update, keyed by
  the MD5 of the lower-cased address, so a retried create never makes two members); a change
  to a known member is ``PATCH`` of the changed fields only (``PUT`` would need the address,
  which a diff does not always carry). Consent becomes the member's status.
- **Erase**: ``POST /lists/{list_id}/members/{hash}/actions/delete-permanent``; a member
  already gone (404) counts as erased. Mailchimp then refuses the address for good
  (``400 Forgotten Email Not Subscribed``), which :meth:`write` reports as a permanent
  failure: only the person can re-subscribe, through a Mailchimp form.

State and crash safety: the state is ``{"last_changed": <ISO-8601>}``, the newest
``last_changed`` seen. Offset paging is not stable while the audience changes (a member
edited or archived during the read moves out of its place and shifts the rest back, so one
record can be skipped), and the order of the listing is not relied on: so only the last page
of a read carries the new state; every earlier page keeps the old one, and a crash anywhere
means the next run reads the same window again (unchanged records cost only a hash). A read
that sees signs of such a shift (a member twice, or the total shrinking between pages) keeps
the old state too. The next read asks from one second before the saved value, because
``since_last_changed`` is strictly after and timestamps have whole seconds: a member changed
later in that same second is not lost.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self

import httpx
import structlog
from pydantic import Field, SecretStr, model_validator

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
from crmhub.paginators import OffsetPaginator

__all__ = ["MailchimpConfig", "MailchimpConnector", "subscriber_hash"]

log = structlog.get_logger(__name__)

_DATA_CENTRE = re.compile(r"[a-z]{2,}\d+")
_MEMBER_ID = re.compile(r"[0-9a-f]{32}")
_MAX_COUNT = 1000  # the API's largest page
_OVERLAP = timedelta(seconds=1)
_CONSENT_STATUS = {"granted": "subscribed", "denied": "unsubscribed", "unknown": None}
_SETTABLE = frozenset({"subscribed", "unsubscribed", "pending", "transactional"})
_FORGOTTEN = "Forgotten Email Not Subscribed"


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: the MD5 of the lower-cased address."""
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


class MailchimpConfig(HttpConnectorConfig):
    """Settings of the ``mailchimp`` connector."""

    api_key: SecretStr
    """The API key (``...-us21``: the part after the dash is the data centre)."""
    list_id: str = Field(min_length=1)
    """The audience (list) id."""
    base_url: str = ""
    """The API root, ``https://<dc>.api.mailchimp.com/3.0``; derived from the key when empty."""
    page_size: int = Field(_MAX_COUNT, ge=1, le=_MAX_COUNT)
    """Members per request (``count``; the API allows at most 1000)."""

    @model_validator(mode="after")
    def _data_centre(self) -> Self:
        # The key names its data centre; the message never repeats the key.
        if not self.base_url:
            _, dash, centre = self.api_key.get_secret_value().strip().rpartition("-")
            if not dash or not _DATA_CENTRE.fullmatch(centre):
                raise ValueError(
                    "api_key does not end in a data centre (such as -us1), so the API address "
                    "is unknown: check the key, or set base_url "
                    "(https://<dc>.api.mailchimp.com/3.0)"
                )
            self.base_url = f"https://{centre}.api.mailchimp.com/3.0"
        return self


class _Pass:
    """What one listing pass has seen: ids, the newest change, and signs that the audience
    changed under the offset paging (a member twice, the total shrinking)."""

    def __init__(self, seen: set[str]) -> None:
        self.seen = seen  # shared between the passes of one read
        self.newest: datetime | None = None
        self.total: int | None = None
        self.shifted = False

    def take(self, members: list[dict[str, Any]], total: Any) -> None:
        if isinstance(total, int):
            if self.total is not None and total < self.total:
                self.shifted = True
            self.total = total
        seen, newest = self.seen, self.newest
        for member in members:
            member_id = str(member.get("id"))
            if member_id in seen:
                self.shifted = True
            seen.add(member_id)
            changed = _parse_time(member.get("last_changed"))
            if changed is not None and (newest is None or changed > newest):
                newest = changed
        self.newest = newest


class MailchimpConnector(Connector):
    """Reads, pushes and erases the members of one Mailchimp audience (see the module
    docstring)."""

    name = "mailchimp"
    Config = MailchimpConfig
    config: MailchimpConfig
    default_mapping = "mailchimp"
    description = "Mailchimp audience members: incremental reads, push, GDPR erasure"
    streams: ClassVar[dict[str, Stream]] = {
        "members": Stream(
            primary_key="id",
            cursor="last_changed",
            kind="person",
            description="audience members (archived ones are reported as deleted)",
        )
    }

    def http_settings(self) -> dict[str, Any]:
        """The hub's client settings plus HTTP Basic auth with the API key."""
        options = super().http_settings()
        options["auth"] = httpx.BasicAuth("crmhub", self.config.api_key.get_secret_value())
        return options

    @property
    def _members_path(self) -> str:
        return f"lists/{self.config.list_id}/members"

    # ------------------------------------------------------------------ check
    def check(self) -> None:
        """Ping the API with the key, then look the audience up.

        Raises:
            AuthError: the key is refused.
            ConnectorError: the API cannot be reached, or there is no such audience.
        """
        host = httpx.URL(self.config.base_url).host
        try:
            try:
                self.http.get("ping")
            except SkippableRecordError:
                raise ConnectorError(
                    f"no Mailchimp API answers at {self.config.base_url} (the address ends in "
                    "/3.0)",
                    connector=self.instance_name,
                ) from None
            try:
                self.http.get(f"lists/{self.config.list_id}", params={"fields": "id"})
            except SkippableRecordError:
                raise ConnectorError(
                    f"there is no audience with list_id {self.config.list_id!r} for this API key",
                    connector=self.instance_name,
                ) from None
        except AuthError:
            raise AuthError(
                "Mailchimp refused the API key (API Key Invalid): check api_key, and that its "
                f"data centre matches the API address ({host})",
                connector=self.instance_name,
            ) from None
        except RetriableError as exc:
            if exc.response is None:
                message = f"cannot reach the Mailchimp API at {host}: check base_url and network"
            else:
                message = (
                    f"the Mailchimp API at {host} kept failing "
                    f"(HTTP {exc.response.status_code}); try again later"
                )
            raise ConnectorError(message, connector=self.instance_name) from None

    # ------------------------------------------------------------------ read
    def state_since(self, stream: str, since: datetime) -> dict[str, Any]:
        """The state from which :meth:`read` returns the members changed at or after
        ``since`` (rounded up to a whole second: Mailchimp's timestamps have no fraction)."""
        self._check_stream(stream)
        moment = since if since.tzinfo else since.replace(tzinfo=UTC)
        whole = moment.replace(microsecond=0)
        if whole < moment:
            whole += timedelta(seconds=1)
        return {"last_changed": _iso(whole)}

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        """Members changed since ``state`` (all of them when None), then the ids of members
        archived in that window as ``deleted``; only the last page carries the new state."""
        self._check_stream(stream)
        since = _parse_time((state or {}).get("last_changed"))
        window: dict[str, Any] = {"sort_field": "last_changed", "sort_dir": "ASC"}
        if since is not None:
            window["since_last_changed"] = _iso(since - _OVERLAP)
        seen: set[str] = set()
        live, archived = _Pass(seen), _Pass(seen)
        pages = itertools.chain(
            self._live_pages(window, live), self._archived_pages(window, archived)
        )
        held = next(pages)  # every pass yields at least one page
        for page in pages:
            yield held
            held = page
        newest = max(
            (moment for moment in (since, live.newest, archived.newest) if moment is not None),
            default=None,
        )
        if live.shifted or archived.shifted:
            log.warning(
                "mailchimp.read.shifted",
                connector=self.instance_name,
                detail="the audience changed during the read; the cursor stays, the next "
                "sync reads this window again",
            )
        elif newest is not None:
            held.state = {"last_changed": _iso(newest)}
        yield held

    def _live_pages(self, window: dict[str, Any], tracker: _Pass) -> Iterator[Page]:
        params = {**window, "exclude_fields": "_links,members._links"}
        done = 0
        for _, body in self._paginator().pages(self.http, self._members_path, params):
            members = body.get("members") or []
            tracker.take(members, body.get("total_items"))
            done += len(members)
            total = tracker.total
            progress = min(done / total, 1.0) if total else None
            yield Page(records=members, progress=progress)

    def _archived_pages(self, window: dict[str, Any], tracker: _Pass) -> Iterator[Page]:
        # The normal listing leaves archived members out: ask for them, ids only.
        params = {
            **window,
            "status": "archived",
            "fields": "members.id,members.last_changed,total_items",
        }
        for _, body in self._paginator().pages(self.http, self._members_path, params):
            members = body.get("members") or []
            tracker.take(members, body.get("total_items"))
            yield Page(deleted=[str(m["id"]) for m in members if m.get("id")])

    def _paginator(self) -> OffsetPaginator:
        return OffsetPaginator(
            records="members", page_size=self.config.page_size, total="total_items"
        )

    # ------------------------------------------------------------------ write
    def write(self, stream: str, changes: Iterable[Change]) -> Iterator[WriteResult]:
        """Create (PUT by address hash) or update (PATCH of the changed fields) members.

        ``Change.fields`` holds the mapping's push fields (nested dicts or dotted keys):
        ``email_address``, ``status`` (``subscribed``/``unsubscribed``/..., or the consent
        values ``granted``/``denied``), ``merge_fields.*``. A new member without a consent
        decision is added as ``transactional`` (not subscribed).
        """
        self._check_stream(stream)
        refused = False
        for change in changes:
            key = change.idempotency_key
            if refused:  # every further request would be refused too
                yield WriteResult(key, ok=False, error=_REFUSED, retriable=True)
                continue
            try:
                external_id = self._write_one(change)
            except ValueError as exc:  # the change cannot be expressed for Mailchimp
                yield WriteResult(key, ok=False, external_id=change.external_id, error=str(exc))
            except AuthError:
                refused = True
                yield WriteResult(key, ok=False, error=_REFUSED, retriable=True)
            except SkippableRecordError as exc:
                gone = exc.response is not None and exc.response.status_code in (404, 410)
                error = _problem(exc)
                yield WriteResult(
                    key,
                    ok=False,
                    external_id=change.external_id,
                    error=f"member not found in the audience ({error})" if gone else error,
                )
            except RetriableError as exc:
                yield WriteResult(
                    key, ok=False, external_id=change.external_id, error=str(exc), retriable=True
                )
            except FatalError as exc:
                yield WriteResult(
                    key, ok=False, external_id=change.external_id, error=_write_error(exc)
                )
            else:
                yield WriteResult(key, ok=True, external_id=external_id)

    def _write_one(self, change: Change) -> str:
        """Send one change; the member's id afterwards."""
        fields = _nested(change.fields)
        email = fields.get("email_address")
        if email is not None and (not isinstance(email, str) or "@" not in email):
            raise ValueError("email_address is not an email address")
        status = _status(fields.get("status"))
        merge_fields = fields.get("merge_fields")
        if merge_fields is not None and not isinstance(merge_fields, Mapping):
            raise ValueError("merge_fields must be a mapping of merge tags")
        if change.external_id is None:
            if not email:
                raise ValueError("a new member needs an email_address")
            body: dict[str, Any] = {
                "email_address": email.strip(),
                "status_if_new": status or "transactional",
            }
            merge = _merge_fields(merge_fields or {})
            if merge:
                body["merge_fields"] = merge
            member_id = subscriber_hash(email)
            response = self.http.put(f"{self._members_path}/{member_id}", json=body)
        else:
            member_id = _member_id(change.external_id)
            body = {}
            if email:
                body["email_address"] = email.strip()
            if status:
                body["status"] = status
            merge = _merge_fields(merge_fields or {})
            if merge:
                body["merge_fields"] = merge
            if not body:
                return member_id  # nothing Mailchimp holds has changed
            response = self.http.patch(f"{self._members_path}/{member_id}", json=body)
        returned = _json_or_none(response)
        return str(returned.get("id") or member_id) if isinstance(returned, dict) else member_id

    # ------------------------------------------------------------------ erase
    def erase(self, external_ids: Iterable[str]) -> Iterator[EraseResult]:
        """Delete members permanently; a member already gone counts as erased."""
        refused = False
        for external_id in external_ids:
            if refused:
                yield EraseResult(external_id, "failed", error=_REFUSED, retriable=True)
                continue
            try:
                member_id = _member_id(external_id)
                self.http.post(f"{self._members_path}/{member_id}/actions/delete-permanent")
            except ValueError as exc:
                yield EraseResult(external_id, "failed", error=str(exc))
            except SkippableRecordError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in (404, 410):
                    yield EraseResult(external_id, "already_gone")
                else:
                    yield EraseResult(external_id, "failed", error=_problem(exc))
            except AuthError:
                refused = True
                yield EraseResult(external_id, "failed", error=_REFUSED, retriable=True)
            except RetriableError as exc:
                yield EraseResult(external_id, "failed", error=str(exc), retriable=True)
            except FatalError as exc:
                yield EraseResult(external_id, "failed", error=_problem(exc))
            else:
                yield EraseResult(external_id, "erased")

    # ------------------------------------------------------------------ helpers
    def _check_stream(self, stream: str) -> None:
        if stream not in self.streams:
            raise FatalError(
                f"unknown stream {stream!r} (streams: {', '.join(self.streams)})",
                connector=self.instance_name,
            )


_REFUSED = "Mailchimp refused the API key: check api_key; nothing was sent"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _member_id(external_id: str) -> str:
    # Ids go into the URL path: only a subscriber hash may.
    value = str(external_id).strip().lower()
    if not _MEMBER_ID.fullmatch(value):
        raise ValueError("external id is not a Mailchimp subscriber hash (32 hex digits)")
    return value


def _status(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("status must be text")
    text = value.strip().lower()
    status = _CONSENT_STATUS.get(text, text)
    if status is not None and status not in _SETTABLE:
        raise ValueError(f"status must be one of {', '.join(sorted(_SETTABLE))}")
    return status


def _nested(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``Change.fields`` as nested dicts, whether given nested or with dotted keys."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            node[last] = {**node[last], **value}
        else:
            node[last] = dict(value) if isinstance(value, Mapping) else value
    return out


def _merge_fields(merge_fields: Mapping[str, Any]) -> dict[str, Any]:
    """Merge fields as Mailchimp takes them: text values, the address as an object of its
    parts. Empty values are left out, never sent as "": a push does not blank what the
    member has (the hub's push rule), and an empty golden value means "not known"."""
    out: dict[str, Any] = {}
    for tag, value in merge_fields.items():
        if isinstance(value, Mapping):
            parts = {part: str(v) for part, v in value.items() if v is not None and v != ""}
            if parts:
                out[tag] = parts
        elif value is not None and value != "":
            out[tag] = str(value)
    return out


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _problem(exc: ConnectorError) -> str:
    """The status and problem title of an error response (never its detail, which may
    quote the address)."""
    response = exc.response
    if response is None:
        return str(exc)
    body = _json_or_none(response)
    title = body.get("title") if isinstance(body, dict) else None
    return f"HTTP {response.status_code}" + (f" {title}" if isinstance(title, str) else "")


def _write_error(exc: FatalError) -> str:
    body = _json_or_none(exc.response) if exc.response is not None else None
    title = body.get("title") if isinstance(body, dict) else None
    if title == _FORGOTTEN:
        return (
            "Mailchimp refuses this address: it was permanently deleted from the audience "
            "(an erasure) and only the person can re-subscribe, through a Mailchimp form"
        )
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        names = sorted({str(e.get("field")) for e in errors if isinstance(e, dict)})
        return f"{_problem(exc)}: Mailchimp rejected the field(s) {', '.join(names)}"
    return _problem(exc)


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    """Register the ``mailchimp`` connector."""
    register(MailchimpConnector)

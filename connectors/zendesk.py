"""The ``zendesk`` connector: Zendesk Support end users and tickets, through the cursor-based
incremental export; pushes user changes back and erases users (soft, then permanent delete).

::

    [connectors.support]
    type = "zendesk"
    subdomain = "acme"                 # https://acme.zendesk.com (or give base_url)
    email = "admin@acme.com"           # the admin the API token belongs to
    api_token = "env:ZENDESK_API_TOKEN"

Reads follow ``after_cursor`` page by page; each page's state is the cursor just after its
last record, so a rerun after a crash continues exactly there, and an incremental sync of an
unchanged account costs one request per stream.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import httpx
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
from crmhub.paginators import Body, NextPage, Paginator

__all__ = ["ZendeskConfig", "ZendeskConnector"]

_SUBDOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_EXPORTS = {
    "users": "/api/v2/incremental/users/cursor.json",
    "tickets": "/api/v2/incremental/tickets/cursor.json",
}


class ZendeskConfig(HttpConnectorConfig):
    """Settings of the ``zendesk`` connector.

    ``base_url`` wins when given; otherwise it is built from ``subdomain``. The API token
    belongs to ``email`` (an admin: the incremental export is for admins only).
    """

    subdomain: str | None = None
    """The account's subdomain: ``acme`` for https://acme.zendesk.com."""
    base_url: str = ""
    email: str = Field(min_length=3, pattern=r"@")
    """The email address of the admin the API token authenticates as."""
    api_token: SecretStr
    page_size: int = Field(1000, ge=1, le=1000)
    """Records per export page (Zendesk allows at most 1000)."""
    start_time: int = Field(0, ge=0)
    """Epoch seconds a full read starts from (0: everything)."""

    @model_validator(mode="after")
    def _base_url_from_subdomain(self) -> ZendeskConfig:
        if self.subdomain is not None and not _SUBDOMAIN.match(self.subdomain):
            raise ValueError(
                "subdomain must be the account's name only (acme for acme.zendesk.com)"
            )
        if not self.base_url:
            if not self.subdomain:
                raise ValueError("give `subdomain` (acme for acme.zendesk.com) or `base_url`")
            self.base_url = f"https://{self.subdomain}.zendesk.com"
        self.base_url = self.base_url.rstrip("/")
        return self


@dataclass
class _ExportPaginator(Paginator):
    """Zendesk's cursor-based export: ``start_time`` (or a saved ``cursor``) on the first
    request only, then ``cursor`` = the last page's ``after_cursor`` until ``end_of_stream``::

        {"users": [...], "after_cursor": "MTU3...", "end_of_stream": false}
    """

    first: dict[str, Any] = field(default_factory=dict)

    def first_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The caller's parameters plus ``start_time`` or the saved cursor."""
        return {**params, **self.first}

    def next_page(self, response: httpx.Response, body: Body) -> NextPage | None:
        """``cursor=after_cursor`` until the export says it reached the end."""
        if body.get("end_of_stream") is True:
            return None
        cursor = body.get("after_cursor")
        if not cursor:
            raise FatalError(
                f"GET {response.request.url.path}: the export is not at its end but gave no "
                "after_cursor"
            )
        return NextPage(params=(("cursor", str(cursor)),))


class ZendeskConnector(Connector):
    """Reads Zendesk Support users and tickets; writes and erases users."""

    name = "zendesk"
    Config = ZendeskConfig
    config: ZendeskConfig
    description = "Zendesk Support: end users and their tickets (incremental export)"
    default_mapping = "zendesk"
    streams: ClassVar[dict[str, Stream]] = {
        "users": Stream(
            primary_key="id",
            cursor="updated_at",
            kind="person",
            description="users (end users, agents), deleted ones reported as deletions",
        ),
        "tickets": Stream(
            primary_key="id",
            cursor="updated_at",
            kind="activity",
            description="support tickets, linked to their requester",
        ),
    }

    def http_settings(self) -> dict[str, Any]:
        """API token authentication: Basic ``{email}/token:{api_token}``."""
        options = super().http_settings()
        config = self.config
        options["auth"] = httpx.BasicAuth(
            f"{config.email}/token", config.api_token.get_secret_value()
        )
        options["headers"] = {"Accept": "application/json"}
        return options

    def check(self) -> None:
        """Ask who the token belongs to (``GET /api/v2/users/me.json``).

        Raises:
            AuthError: the email and token are refused, or the user is not an admin.
            ConnectorError: the host cannot be reached or keeps failing.
        """
        try:
            response = self.http.get("/api/v2/users/me.json")
        except AuthError:
            raise AuthError(
                "Zendesk refused the credentials: check `email` and `api_token`, and that "
                "token access is enabled (Admin Center > Apps and integrations > Zendesk API)",
                connector=self.instance_name,
            ) from None
        except RetriableError as exc:
            if exc.response is None:  # no answer at all: DNS, connection, timeout
                raise ConnectorError(
                    f"cannot reach {httpx.URL(self.config.base_url).host}: check `subdomain` "
                    "or `base_url` and the network",
                    connector=self.instance_name,
                ) from None
            raise ConnectorError(
                f"Zendesk keeps failing ({exc.response.status_code}); try again later",
                connector=self.instance_name,
            ) from None
        try:
            user = response.json().get("user") or {}
        except (ValueError, AttributeError):
            raise ConnectorError(
                "GET /api/v2/users/me.json did not answer with a user: is `base_url` a "
                "Zendesk account?",
                connector=self.instance_name,
            ) from None
        if user.get("id") is None:  # Zendesk answers unauthenticated requests as "anonymous"
            raise AuthError(
                "Zendesk did not authenticate the request: check `email` and `api_token`",
                connector=self.instance_name,
            )
        if user.get("role") != "admin":
            raise AuthError(
                "the API token's user is not an admin: the incremental export needs one",
                connector=self.instance_name,
            )

    def state_since(self, stream: str, since: datetime) -> dict[str, Any]:
        """A fresh pass of the export from ``since``."""
        return {"start_time": max(int(since.timestamp()), 0)}

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        """Pages of the incremental export of ``stream``, oldest change first.

        ``state`` is ``{"cursor": after_cursor, "start_time": epoch}`` from an earlier read
        (``start_time`` alone starts a pass there); None starts at the configured
        ``start_time``. Each page's state is its ``after_cursor``, the position right after
        its last record, so committing it with the page loses nothing and repeats nothing.
        Users with ``active: false`` and tickets with status ``deleted`` come back as
        :attr:`Page.deleted`.
        """
        path = _EXPORTS[stream]
        cursor = (state or {}).get("cursor")
        start = int((state or {}).get("start_time", self.config.start_time))
        first = {"cursor": cursor} if cursor else {"start_time": start}
        paginator = _ExportPaginator(first=first)
        pages = paginator.pages(self.http, path, {"per_page": self.config.page_size})
        try:
            for _response, body in pages:
                yield self._page(stream, body, start)
        except FatalError as exc:
            status = getattr(exc.response, "status_code", None)
            if cursor and status == 400 and not isinstance(exc, AuthError):
                raise FatalError(
                    f"Zendesk refused the saved cursor of {stream!r} (HTTP 400); run a full "
                    "sync to start over",
                    connector=self.instance_name,
                ) from None
            raise

    def _page(self, stream: str, body: Body, start: int) -> Page:
        items = body.get(stream)
        if not isinstance(items, list):
            raise FatalError(
                f"the {stream} export page has no {stream!r} list", connector=self.instance_name
            )
        records: list[dict[str, Any]] = []
        deleted: list[str] = []
        for item in items:
            gone = (
                item.get("active") is False
                if stream == "users"
                else item.get("status") == "deleted"
            )
            if gone:
                deleted.append(str(item["id"]))
            else:
                records.append(item)
        cursor = body.get("after_cursor")
        if not cursor:
            raise FatalError(
                f"the {stream} export page has no after_cursor", connector=self.instance_name
            )
        # start_time: where the first pass began, kept for reference and for a restart.
        return Page(records=records, deleted=deleted, state={"cursor": cursor, "start_time": start})

    def write(self, stream: str, changes: Iterable[Change]) -> Iterator[WriteResult]:
        """Push user changes: ``PUT /api/v2/users/{id}.json`` for an existing user,
        ``POST /api/v2/users/create_or_update.json`` for a new one (it matches on email, or
        on ``external_id`` ``crmhub-<customer id>`` when there is no email, so a retried
        create updates the user it already made instead of making a second one)."""
        if stream != "users":
            raise FatalError(
                f"stream {stream!r} cannot be written (only users)", connector=self.instance_name
            )
        for change in changes:
            yield self._write_one(change)

    def _write_one(self, change: Change) -> WriteResult:
        key = change.idempotency_key
        fields = {k: v for k, v in change.fields.items() if k != "id"}
        try:
            if change.external_id is None:
                fields = {k: v for k, v in fields.items() if v is not None}
                if not fields.get("email") and change.customer_id:
                    fields.setdefault("external_id", f"crmhub-{change.customer_id}")
                response = self.http.post(
                    "/api/v2/users/create_or_update.json", json={"user": fields}
                )
            else:
                if not change.external_id.isdigit():
                    return WriteResult(key, False, change.external_id, "not a Zendesk user id")
                if not fields:
                    return WriteResult(key, True, change.external_id)
                response = self.http.put(
                    f"/api/v2/users/{change.external_id}.json", json={"user": fields}
                )
        except RetriableError as exc:
            return WriteResult(key, False, change.external_id, str(exc), retriable=True)
        except SkippableRecordError as exc:
            return WriteResult(key, False, change.external_id, _refusal(exc))
        except ConnectorError as exc:
            return WriteResult(key, False, change.external_id, str(exc))
        user_id = (response.json().get("user") or {}).get("id")
        return WriteResult(key, True, str(user_id) if user_id is not None else change.external_id)

    def erase(self, external_ids: Iterable[str]) -> Iterator[EraseResult]:
        """Delete each user (``DELETE /api/v2/users/{id}.json``, a soft delete), then delete
        it permanently (``DELETE /api/v2/deleted_users/{id}.json``). A user already
        soft-deleted gets only the second step; 404 on both means already gone."""
        for external_id in external_ids:
            yield self._erase_one(str(external_id))

    def _erase_one(self, user_id: str) -> EraseResult:
        if not user_id.isdigit():  # never put a foreign value into a URL path
            return EraseResult(user_id, "failed", "not a Zendesk user id")
        try:
            soft = self._delete(f"/api/v2/users/{user_id}.json")
            permanent = self._delete(f"/api/v2/deleted_users/{user_id}.json")
        except RetriableError as exc:
            return EraseResult(user_id, "failed", str(exc), retriable=True)
        except ConnectorError as exc:
            return EraseResult(user_id, "failed", str(exc))
        if permanent:
            return EraseResult(user_id, "erased")
        if soft:  # deleted just now, yet not listed as deleted: Zendesk has not caught up
            return EraseResult(
                user_id, "failed", "soft-deleted, but not yet permanently deleted", retriable=True
            )
        return EraseResult(user_id, "already_gone")

    def _delete(self, path: str) -> bool:
        """DELETE ``path``; False when Zendesk says there is no such (deleted) user."""
        try:
            self.http.delete(path)
        except SkippableRecordError as exc:
            if getattr(exc.response, "status_code", None) in (404, 410):
                return False
            raise FatalError(_refusal(exc), connector=self.instance_name) from None
        return True


def _refusal(exc: SkippableRecordError) -> str:
    """Why Zendesk refused one record: status, error code and the fields concerned, never
    the descriptions (they can quote the values, e.g. an email already in use)."""
    response: httpx.Response | None = exc.response
    if response is None:
        return str(exc)
    try:
        body = response.json()
    except ValueError:
        body = {}
    status = response.status_code
    if status in (404, 410):
        return f"HTTP {status}: the user does not exist in Zendesk (deleted?)"
    code = body.get("error") if isinstance(body, dict) else None
    details = body.get("details") if isinstance(body, dict) else None
    fields = ", ".join(sorted(details)) if isinstance(details, dict) else ""
    what = f"{code} ({fields})" if fields else str(code or "refused")
    return f"HTTP {status}: Zendesk refused the user: {what}"


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    """Register the ``zendesk`` connector."""
    register(ZendeskConnector)

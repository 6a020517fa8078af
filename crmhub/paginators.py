"""Paginators: where the next page of an API listing is, given the page just read.

Connectors do not write paging loops. They pick the paginator their API speaks and iterate
:meth:`Paginator.pages`, which sends each request through the hub's client and stops when the
API says there is no more. Every paginator refuses a token (cursor, offset, page, URL) it
has already followed: an API that hands back the same cursor twice would otherwise turn a
sync into an endless loop, so it becomes a :class:`~crmhub.errors.FatalError` naming the
connector's request instead.

- :class:`CursorPaginator`: a token from the body (Stripe's last id with ``has_more``,
  HubSpot's ``paging.next.after``) sent back as a query parameter;
- :class:`OffsetPaginator`: ``offset`` + ``count`` (Mailchimp), ends on a short page or at the
  total the API reports;
- :class:`PageNumberPaginator`: ``page=1, 2, ...``, ends on a short or empty page;
- :class:`LinkHeaderPaginator`: RFC 8288 ``Link: <...>; rel="next"``;
- :class:`NextUrlPaginator`: a full URL in the body (Zendesk's ``next_page`` / ``after_url``),
  with an optional end-of-stream flag.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from crmhub.errors import FatalError

__all__ = [
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextPage",
    "NextUrlPaginator",
    "OffsetPaginator",
    "PageNumberPaginator",
    "Paginator",
    "json_body",
]

Body = Any
"""A parsed JSON body."""


@dataclass(frozen=True)
class NextPage:
    """The request for the next page: query parameters to set, or a whole URL to follow."""

    params: tuple[tuple[str, str], ...] = ()
    url: str | None = None

    @property
    def token(self) -> Hashable:
        """What identifies this page: the same token twice means the API is looping."""
        return (self.params, self.url)


def json_body(response: httpx.Response) -> Body:
    """The response's JSON body; an API that answers a listing with something else is a
    :class:`FatalError` that says where (never the body itself: it may hold personal data)."""
    try:
        return orjson.loads(response.content)  # several times faster than the stdlib's
    except orjson.JSONDecodeError:
        kind = response.headers.get("content-type", "no content type")
        raise FatalError(
            f"{response.request.method} {response.request.url.path}: expected a JSON page, "
            f"got {kind} ({len(response.content)} bytes)"
        ) from None


@dataclass
class Paginator(ABC):
    """Reads a listing page by page (see the module docstring)."""

    @abstractmethod
    def next_page(self, response: httpx.Response, body: Body) -> NextPage | None:
        """The request for the page after ``response`` (its parsed ``body``); None at the end."""

    def first_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The first page's query parameters, from the caller's (paginators that count
        pages start counting here)."""
        return params

    def pages(
        self,
        client: httpx.Client,
        url: str,
        params: Mapping[str, Any] | None = None,
        **request: Any,
    ) -> Iterator[tuple[httpx.Response, Body]]:
        """GET ``url`` and every following page; yields each response with its JSON body.

        Raises:
            FatalError: if the API repeats a page token, or a page is not JSON.
        """
        base = dict(params or {})
        current_url: str | httpx.URL = url
        current: dict[str, Any] | None = self.first_params(dict(base))
        seen: set[Hashable] = set()
        while True:
            response = client.get(current_url, params=current, **request)
            body = json_body(response)
            yield response, body
            following = self.next_page(response, body)
            if following is None:
                return
            if following.token in seen:
                raise FatalError(
                    f"GET {httpx.URL(url).path}: the API returned a page token it had already "
                    "given (a loop); stopped paging"
                )
            seen.add(following.token)
            if following.url is not None:
                # A next URL carries its own query; only the caller's fixed parameters that
                # it lacks are added back (into the URL: httpx's ``params`` would replace
                # its query, not add to it).
                next_url = httpx.URL(following.url)
                missing = {k: v for k, v in base.items() if k not in next_url.params}
                current_url, current = next_url.copy_merge_params(missing), None
            else:
                current_url, current = url, {**base, **dict(following.params)}


def _dig(body: Body, path: str) -> Any:
    """``body["a"]["b"]`` for ``path`` "a.b"; None where a step is missing."""
    value = body
    for step in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


@dataclass
class CursorPaginator(Paginator):
    """A cursor from the body, sent back as ``param``.

    Args:
        param: the query parameter that takes the cursor (``starting_after``, ``after``).
        cursor: where the cursor is in the body (dotted path, ``paging.next.after``), or a
            function of the body (Stripe: the id of the last item).
        has_more: a dotted path to a flag that must be true for another page (``has_more``);
            None to go on while there is a cursor.
    """

    param: str = "after"
    cursor: str | Callable[[Body], Any] = "paging.next.after"
    has_more: str | None = None

    def next_page(self, response: httpx.Response, body: Body) -> NextPage | None:
        if self.has_more is not None and _dig(body, self.has_more) is not True:
            return None
        token = self.cursor(body) if callable(self.cursor) else _dig(body, self.cursor)
        if token is None or token == "":
            return None
        return NextPage(params=((self.param, str(token)),))


@dataclass
class OffsetPaginator(Paginator):
    """``offset`` and a page size; ends on a short page or at ``total`` (if the API says).

    Args:
        records: the dotted path of the page's list of records (``members``).
        page_size: records asked for per page (sent as ``limit_param``).
        total: the dotted path of the total the API reports (``total_items``), if any.
    """

    records: str = "data"
    page_size: int = 100
    offset_param: str = "offset"
    limit_param: str = "count"
    total: str | None = None
    _offset: int = field(default=0, init=False, repr=False)

    def next_page(self, response: httpx.Response, body: Body) -> NextPage | None:
        items = _dig(body, self.records)
        if not isinstance(items, list):
            raise FatalError(f"page has no list of records at {self.records!r}")
        self._offset += len(items)
        total = _dig(body, self.total) if self.total else None
        if len(items) < self.page_size or (isinstance(total, int) and self._offset >= total):
            return None
        return NextPage(
            params=((self.offset_param, str(self._offset)), (self.limit_param, str(self.page_size)))
        )

    def first_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """From offset 0, with the page size set."""
        self._offset = 0
        return {**params, self.offset_param: 0, self.limit_param: self.page_size}


@dataclass
class PageNumberPaginator(Paginator):
    """``page=1, 2, ...``; ends on a page shorter than ``page_size`` (or empty)."""

    records: str = "data"
    page_size: int = 100
    page_param: str = "page"
    size_param: str | None = "per_page"
    first_page: int = 1
    _page: int = field(default=1, init=False, repr=False)

    def next_page(self, response: httpx.Response, body: Body) -> NextPage | None:
        items = _dig(body, self.records)
        if not isinstance(items, list):
            raise FatalError(f"page has no list of records at {self.records!r}")
        if len(items) < self.page_size:
            return None
        self._page += 1
        params = [(self.page_param, str(self._page))]
        if self.size_param:
            params.append((self.size_param, str(self.page_size)))
        return NextPage(params=tuple(params))

    def first_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """From the first page, with the page size set."""
        self._page = self.first_page
        first: dict[str, Any] = {**params, self.page_param: self.first_page}
        if self.size_param:
            first[self.size_param] = self.page_size
        return first


@dataclass
class LinkHeaderPaginator(Paginator):
    """The ``Link`` header's ``rel="next"`` URL (RFC 8288)."""

    rel: str = "next"

    def next_page(self, response: httpx.Response, body: Body) -> NextPage | None:
        link = response.links.get(self.rel, {}).get("url")
        return NextPage(url=str(response.url.join(link))) if link else None


@dataclass
class NextUrlPaginator(Paginator):
    """A full next-page URL in the body (``next_page``), until it is null or, if given, the
    ``end`` flag (``end_of_stream``) is true."""

    next_url: str = "next_page"
    end: str | None = None

    def next_page(self, response: httpx.Response, body: Body) -> NextPage | None:
        if self.end is not None and _dig(body, self.end) is True:
            return None
        link = _dig(body, self.next_url)
        if not link:
            return None
        return NextPage(url=str(response.url.join(str(link))))

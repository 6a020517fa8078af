"""Paginators: each API style pages to the end, sends the right parameters, and refuses a
token it has already followed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from crmhub.errors import FatalError
from crmhub.paginators import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    Paginator,
)

Handler = Callable[[httpx.Request], httpx.Response]


def _read(paginator: Paginator, handler: Handler, **params: Any) -> tuple[list[Any], list[str]]:
    """Every page's body, and every request's URL as sent."""
    sent: list[str] = []

    def recording(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return handler(request)

    client = httpx.Client(transport=httpx.MockTransport(recording), base_url="https://api.test")
    bodies = [body for _, body in paginator.pages(client, "/v1/items", params)]
    return bodies, sent


def test_stripe_style_cursor_sends_the_last_id_while_has_more() -> None:
    ids = [f"cus_{i}" for i in range(7)]

    def handler(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("starting_after")
        start = ids.index(after) + 1 if after else 0
        page = ids[start : start + 3]
        return httpx.Response(
            200, json={"data": [{"id": i} for i in page], "has_more": start + 3 < len(ids)}
        )

    paginator = CursorPaginator(
        param="starting_after", cursor=lambda body: body["data"][-1]["id"], has_more="has_more"
    )
    bodies, sent = _read(paginator, handler, limit=3)
    assert [item["id"] for body in bodies for item in body["data"]] == ids
    assert sent == [
        "https://api.test/v1/items?limit=3",
        "https://api.test/v1/items?limit=3&starting_after=cus_2",
        "https://api.test/v1/items?limit=3&starting_after=cus_5",
    ]


def test_hubspot_style_cursor_follows_paging_next_after_until_it_is_gone() -> None:
    pages = {None: ("a", ["1", "2"]), "a": ("b", ["3"]), "b": (None, ["4"])}

    def handler(request: httpx.Request) -> httpx.Response:
        following, results = pages[request.url.params.get("after")]
        body: dict[str, Any] = {"results": results}
        if following:
            body["paging"] = {"next": {"after": following}}
        return httpx.Response(200, json=body)

    bodies, _ = _read(CursorPaginator(), handler)
    assert [r for body in bodies for r in body["results"]] == ["1", "2", "3", "4"]


def test_offset_pages_end_at_the_reported_total_or_a_short_page() -> None:
    members = list(range(25))

    def handler(request: httpx.Request) -> httpx.Response:
        offset, count = int(request.url.params["offset"]), int(request.url.params["count"])
        return httpx.Response(
            200, json={"members": members[offset : offset + count], "total_items": 25}
        )

    paginator = OffsetPaginator(records="members", page_size=10, total="total_items")
    bodies, sent = _read(paginator, handler)
    assert [m for body in bodies for m in body["members"]] == members
    assert [s.split("?")[1] for s in sent] == [
        "offset=0&count=10",
        "offset=10&count=10",
        "offset=20&count=10",
    ]
    # Exactly a multiple of the page size, without a total: one empty page ends it.
    exact = OffsetPaginator(records="members", page_size=5)
    bodies, sent = _read(exact, lambda r: handler(r) if r.url.params["offset"] != "25" else
                         httpx.Response(200, json={"members": []}))  # fmt: skip
    assert len(sent) == 6 and sum(len(b["members"]) for b in bodies) == 25


def test_page_numbers_end_on_a_short_page() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        return httpx.Response(200, json={"data": [page] * (2 if page < 3 else 1)})

    bodies, sent = _read(PageNumberPaginator(page_size=2), handler)
    assert [b["data"] for b in bodies] == [[1, 1], [2, 2], [3]]
    assert sent[1].endswith("page=2&per_page=2")


def test_link_headers_are_followed_relative_or_absolute() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = request.url.params.get("page", "1")
        links = {
            "1": '</v1/items?page=2>; rel="next"',
            "2": '<https://api.test/v1/items?page=3>; rel="next", </v1/items?page=1>; rel="first"',
        }
        headers = {"Link": links[page]} if page in links else {}
        return httpx.Response(200, json={"page": page}, headers=headers)

    bodies, sent = _read(LinkHeaderPaginator(), handler, fields="id")
    assert [b["page"] for b in bodies] == ["1", "2", "3"]
    assert sent[1] == "https://api.test/v1/items?page=2&fields=id"  # fixed params kept


def test_next_url_stops_at_end_of_stream() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor", "0")
        last = cursor == "2"
        return httpx.Response(
            200,
            json={
                "users": [cursor],
                "after_url": f"https://api.test/v1/items?cursor={int(cursor) + 1}",
                "end_of_stream": last,
            },
        )

    bodies, _ = _read(NextUrlPaginator(next_url="after_url", end="end_of_stream"), handler)
    assert [b["users"] for b in bodies] == [["0"], ["1"], ["2"]]


@pytest.mark.parametrize(
    ("paginator", "body"),
    [
        (CursorPaginator(), {"paging": {"next": {"after": "same"}}}),
        (NextUrlPaginator(), {"next_page": "https://api.test/v1/items?cursor=x"}),
    ],
)
def test_a_repeated_token_is_a_loop_not_an_endless_sync(
    paginator: Paginator, body: dict[str, Any]
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json=body)

    with pytest.raises(FatalError, match="already given"):
        _read(paginator, handler)
    assert calls == 2  # the first page, then the page that repeats the token


def test_a_page_that_is_not_json_fails_clearly_without_echoing_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, text="<html>jane@example.com</html>", headers={"content-type": "text/html"}
        )

    with pytest.raises(FatalError, match="expected a JSON page, got text/html") as raised:
        _read(CursorPaginator(), handler)
    assert "jane" not in str(raised.value)


def test_a_listing_without_its_records_list_fails_clearly() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"error": "nope"})

    with pytest.raises(FatalError, match="no list of records at 'members'"):
        _read(OffsetPaginator(records="members"), handler)

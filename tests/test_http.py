"""The hub's HTTP client: retries that honour Retry-After, one response policy, rate limits
and quota headers, secrets kept out of messages. No real waiting: the clock is faked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from crmhub.errors import AuthError, FatalError, RetriableError, SkippableRecordError
from crmhub.http import HubClient, RateLimit, RetryPolicy, parse_retry_after
from crmhub.paginators import CursorPaginator

SECRET = "sk_test_51Hsecretvalue"


class FakeClock:
    """A monotonic clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def _client(
    responses: Iterator[httpx.Response | Exception] | Callable[[httpx.Request], httpx.Response],
    clock: FakeClock,
    **options: object,
) -> HubClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if callable(responses):
            return responses(request)
        outcome = next(responses)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return HubClient(
        "stripe",
        secrets=[SECRET],
        transport=httpx.MockTransport(handler),
        base_url="https://api.test",
        sleep=clock.sleep,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )


def test_429_waits_as_long_as_retry_after_says_then_succeeds() -> None:
    clock = FakeClock()
    replies = iter([httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200)])
    client = _client(replies, clock)
    assert client.get("/v1/customers").status_code == 200
    assert clock.sleeps == [7.0] and client.retries == 1


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 03 Dec 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 03 Dec 2026 11:00:00 GMT", now) == 0.0  # already past
    assert parse_retry_after("soon", now) is None and parse_retry_after(None) is None
    assert parse_retry_after(" 2.5 ") == 2.5


def test_5xx_backs_off_with_jitter_and_gives_up_after_the_attempts() -> None:
    clock = FakeClock()
    client = _client(lambda request: httpx.Response(503), clock, retry=RetryPolicy(attempts=4))
    with pytest.raises(RetriableError, match="GET /v1/customers: HTTP 503"):
        client.get("/v1/customers")
    assert len(clock.sleeps) == 3  # four attempts, three waits
    for attempt, wait in enumerate(clock.sleeps, start=1):
        assert 0 <= wait <= 0.5 * 2 ** (attempt - 1)  # full jitter under the doubling bound


def test_a_huge_retry_after_is_capped_by_the_policy() -> None:
    clock = FakeClock()
    replies = iter([httpx.Response(429, headers={"Retry-After": "3600"}), httpx.Response(200)])
    _client(replies, clock, retry=RetryPolicy(max_wait=20)).get("/v1/customers")
    assert clock.sleeps == [20.0]


def test_connection_errors_are_retried_and_reported_without_secrets() -> None:
    clock = FakeClock()
    request = httpx.Request("GET", f"https://api.test/v1/customers?key={SECRET}")
    replies = iter([httpx.ConnectError(f"refused for key={SECRET}", request=request)] * 2)
    client = _client(replies, clock, retry=RetryPolicy(attempts=2))
    with pytest.raises(RetriableError) as raised:
        client.get("/v1/customers", params={"key": SECRET})
    assert SECRET not in str(raised.value) and "ConnectError" in str(raised.value)
    ok = _client(iter([httpx.ConnectError("refused"), httpx.Response(200)]), clock)
    assert ok.get("/v1/customers").status_code == 200


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (401, AuthError, "check the key"),
        (403, AuthError, "refused the credentials"),
        (404, SkippableRecordError, "HTTP 404"),
        (422, SkippableRecordError, "HTTP 422"),
        (400, FatalError, "HTTP 400"),
    ],
)
def test_client_errors_are_not_retried_and_say_what_to_do(
    status: int, error: type[Exception], message: str
) -> None:
    clock = FakeClock()
    calls = 0

    def reply(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status)

    with pytest.raises(error, match=message) as raised:
        _client(reply, clock).get("/v1/customers", params={"api_key": SECRET})
    assert calls == 1 and clock.sleeps == []
    assert SECRET not in str(raised.value)  # the path only, never the query


def test_requests_are_paced_to_the_rate_limit() -> None:
    clock = FakeClock()
    client = _client(lambda r: httpx.Response(200), clock, rate=RateLimit(per_second=4))
    for _ in range(3):
        client.get("/v1/customers")
    assert clock.sleeps == [0.25, 0.25]


def test_an_exhausted_quota_waits_for_its_reset() -> None:
    clock = FakeClock()
    replies = iter(
        [
            httpx.Response(200, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9"}),
            httpx.Response(200, headers={"X-RateLimit-Remaining": "99"}),
            httpx.Response(200),
        ]
    )
    client = _client(replies, clock)
    client.get("/a")
    client.get("/b")
    client.get("/c")
    assert clock.sleeps == [9.0]  # only the request after the empty quota waits


def test_paginators_run_through_the_hub_client_with_its_retries() -> None:
    clock = FakeClock()
    replies = iter(
        [
            httpx.Response(200, json={"results": [1], "paging": {"next": {"after": "x"}}}),
            httpx.Response(502),
            httpx.Response(200, json={"results": [2]}),
        ]
    )
    client = _client(replies, clock)
    pages = [body["results"] for _, body in CursorPaginator().pages(client, "/crm/v3/contacts")]
    assert pages == [[1], [2]] and client.retries == 1


def test_hubspot_quota_headers_make_the_next_request_wait_a_window() -> None:
    clock = FakeClock()
    spent = {
        "X-HubSpot-RateLimit-Remaining": "0",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    }
    client = _client(iter([httpx.Response(200, headers=spent), httpx.Response(200)]), clock)
    client.get("/a")
    client.get("/b")
    assert clock.sleeps == [10.0]


def test_retries_stop_at_the_total_time_bound() -> None:
    clock = FakeClock()
    replies = iter([httpx.Response(503, headers={"Retry-After": "40"})] * 10)
    client = _client(replies, clock, retry=RetryPolicy(attempts=10, total=100, max_wait=60))
    with pytest.raises(RetriableError):
        client.get("/slow")
    # 40 s waits: after the third the 100 s are spent, whatever the attempts allow.
    assert clock.sleeps == [40.0, 40.0, 40.0] and client.retries == 3


def test_no_more_requests_in_flight_than_the_concurrency_allows() -> None:
    import threading
    import time

    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.02)  # hold the slot long enough for the other threads to try
        with lock:
            state["now"] -= 1
        return httpx.Response(200)

    client = HubClient(
        "zendesk", transport=httpx.MockTransport(handler), base_url="https://api.test",
        rate=RateLimit(concurrency=2),
    )  # fmt: skip
    threads = [threading.Thread(target=client.get, args=(f"/{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state["most"] == 2

"""The HTTP client the hub hands to connectors.

Connectors never build their own client: :class:`HubClient` is an ``httpx.Client`` that
adds what every integration needs and few get right by themselves:

- **retries** (tenacity) on 429, 5xx and connection errors, honouring ``Retry-After``
  (seconds or an HTTP date), otherwise jittered exponential backoff; bounded in attempts,
  in any one wait and in total time;
- **one response policy**, :func:`validate_response`: success, retriable (429, 5xx), auth
  (401, 403: fatal, with a message that says to check the credentials), skippable record
  (404, 410, 422 on a record's own URL), or fatal (any other 4xx);
- **rate limiting** per connector: requests per second and concurrent requests, plus the
  remaining-quota headers an API sends (``X-RateLimit-Remaining`` / ``RateLimit-Remaining``
  with their reset): at zero, the next request waits for the reset;
- **secrets redacted** from every log line and error message it writes (API keys are
  registered with the client; URLs in messages carry the path only, never the query);
- an **injectable transport** (``transport=``): respx or ``httpx.MockTransport`` in unit
  tests, the in-process sandbox apps in integration tests.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)
from tenacity.stop import stop_base

from crmhub.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    RetriableError,
    SkippableRecordError,
)

__all__ = [
    "HubClient",
    "RateLimit",
    "RetryPolicy",
    "parse_retry_after",
    "validate_response",
]

log = structlog.get_logger(__name__)

_SKIPPABLE = frozenset({404, 410, 422})
_QUOTA_HEADERS = (
    # (requests left, when they come back, seconds per unit of that header)
    ("x-ratelimit-remaining", "x-ratelimit-reset", 1.0),
    ("ratelimit-remaining", "ratelimit-reset", 1.0),
    ("x-rate-limit-remaining", "x-rate-limit-reset", 1.0),  # Zendesk's spelling
    # HubSpot sends its window's length, not the time left in it: waiting a whole window
    # is the safe reading.
    ("x-hubspot-ratelimit-remaining", "x-hubspot-ratelimit-interval-milliseconds", 0.001),
)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: at most ``attempts`` tries, no single wait over ``max_wait`` seconds,
    no retry started after ``total`` seconds; backoff from ``base`` seconds, doubling, with
    full jitter when the API gives no ``Retry-After``."""

    attempts: int = 5
    base: float = 0.5
    max_wait: float = 60.0
    total: float = 300.0


@dataclass(frozen=True)
class RateLimit:
    """At most ``per_second`` requests started per second (None: no limit) and
    ``concurrency`` in flight at once."""

    per_second: float | None = None
    concurrency: int = 4


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date); None if
    absent or unreadable, 0 for a date in the past."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def validate_response(response: httpx.Response, *, connector: str | None = None) -> None:
    """Raise what the caller should do about a failed response; return on success.

    Raises:
        RetriableError: 429 or 5xx (``retry_after`` set from the header, if any).
        AuthError: 401 or 403.
        SkippableRecordError: 404, 410 or 422 (one record's URL: skip it, go on).
        FatalError: any other 4xx.
    """
    status = response.status_code
    if status < 400:
        return
    where = f"{response.request.method} {response.request.url.path}"
    if status == 429 or status >= 500:
        error = RetriableError(f"{where}: HTTP {status}", connector=connector, response=response)
        error.retry_after = parse_retry_after(response.headers.get("retry-after"))  # type: ignore[attr-defined]
        raise error
    if status in (401, 403):
        raise AuthError(
            f"{where}: HTTP {status}: the API refused the credentials (check the key and its "
            "permissions)",
            connector=connector,
            response=response,
        )
    if status in _SKIPPABLE:
        raise SkippableRecordError(
            f"{where}: HTTP {status}", connector=connector, response=response
        )
    raise FatalError(f"{where}: HTTP {status}", connector=connector, response=response)


class _OutOfTime(stop_base):
    """Stop retrying once ``total`` seconds have passed since the first try, by the client's
    own (injectable) clock rather than tenacity's, so the bound holds under a fake clock."""

    def __init__(self, clock: Callable[[], float], total: float) -> None:
        self._clock, self._total = clock, total
        self._started = clock()

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._clock() - self._started >= self._total


class HubClient(httpx.Client):
    """``httpx.Client`` with the hub's retries, response policy, rate limit and redaction
    (see the module docstring). ``request()`` returns only successful responses; anything
    else is raised as a :class:`~crmhub.errors.ConnectorError` subclass.

    Args:
        connector: the connector instance's name, for messages and logs.
        secrets: values never to appear in a message or a log line (API keys, tokens).
        retry: the retry policy; rate: the rate limit.
        sleep, clock: injectable for tests (no real waiting).
        **client: passed to ``httpx.Client`` (``base_url``, ``headers``, ``timeout``,
            ``transport``, ...); the timeout defaults to 30 s (10 s to connect).
    """

    def __init__(
        self,
        connector: str,
        *,
        secrets: Iterable[str] = (),
        retry: RetryPolicy | None = None,
        rate: RateLimit | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        **client: Any,
    ) -> None:
        client.setdefault("timeout", httpx.Timeout(30.0, connect=10.0))
        super().__init__(**client)
        self.connector = connector
        self.retry_policy = retry or RetryPolicy()
        self.rate = rate or RateLimit()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._sleep, self._clock = sleep, clock
        self._slots = threading.BoundedSemaphore(max(self.rate.concurrency, 1))
        self._pace = threading.Lock()
        self._next_start = 0.0
        self._quota_reset_at: float | None = None
        self.retries = 0  # retries made by this client, for run reports

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        """Send with retries and the response policy; see the class docstring."""
        policy = self.retry_policy
        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts) | _OutOfTime(self._clock, policy.total),
            wait=self._wait,
            retry=retry_if_exception_type((RetriableError, httpx.TransportError)),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            response: httpx.Response = retrying(self._send_once, method, url, **kwargs)
        except httpx.TransportError as exc:
            path = httpx.URL(str(url)).path
            raise RetriableError(
                self.redact(f"{method} {path}: {type(exc).__name__}: {exc}"),
                connector=self.connector,
            ) from None
        return response

    # ------------------------------------------------------------------ internals
    def _send_once(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        with self._slots:
            self._wait_for_turn()
            response = super().request(method, url, **kwargs)
        self._note_quota(response)
        try:
            validate_response(response, connector=self.connector)
        except ConnectorError as exc:
            exc.args = (self.redact(str(exc)),)
            raise
        return response

    def _wait_for_turn(self) -> None:
        """Pace request starts to the rate limit and the API's reported quota."""
        with self._pace:
            now = self._clock()
            start = max(now, self._next_start)
            if self._quota_reset_at is not None:
                start = max(start, min(self._quota_reset_at, now + self.retry_policy.max_wait))
                self._quota_reset_at = None
            if start > now:
                self._sleep(start - now)
            if self.rate.per_second:
                self._next_start = start + 1.0 / self.rate.per_second

    def _note_quota(self, response: httpx.Response) -> None:
        for remaining_name, reset_name, unit in _QUOTA_HEADERS:
            remaining = response.headers.get(remaining_name)
            if remaining is None:
                continue
            try:
                left = int(float(remaining))
                reset = float(response.headers.get(reset_name, str(1 / unit))) * unit
            except ValueError:
                return  # a quota header we cannot read is ignored, not fatal
            if left <= 0:
                # Seconds until the reset (a value this large is an epoch time instead).
                wait = reset - time.time() if reset > 1e9 else reset
                self._quota_reset_at = self._clock() + max(wait, 0.0)
            return

    def _wait(self, state: RetryCallState) -> float:
        policy = self.retry_policy
        error = state.outcome.exception() if state.outcome else None
        after = getattr(error, "retry_after", None)
        if after is None:
            after = random.uniform(0, policy.base * 2 ** (state.attempt_number - 1))
        return float(min(after, policy.max_wait))

    def _log_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "http.retry",
            connector=self.connector,
            attempt=state.attempt_number,
            wait=round(state.next_action.sleep, 3) if state.next_action else None,
            error=self.redact(str(error)) if error else None,
        )

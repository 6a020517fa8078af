"""The base of the sandbox apps: small in-process stand-ins for the systems the hub connects.

A sandbox app is a callable from :class:`httpx.Request` to :class:`httpx.Response`, so a
connector reaches it through ``httpx.MockTransport`` with no socket at all (tests, the demo,
the benchmarks), or through :mod:`crmhub.sandbox.server` on a loopback port (manual use). Each
app keeps its records in memory, speaks its API's real shapes (paths, pagination, incremental
parameters, error bodies, erasure endpoints) and can inject faults: bursts of 429 with
``Retry-After``, 5xx at a given rate, slow responses.

An app declares its routes with :func:`route`::

    class Shop(SandboxApp):
        system = "shop"

        @route("GET", "/v1/customers/{id}")
        def get_customer(self, request: SandboxRequest) -> httpx.Response:
            return self.json(self.customers[request.params["id"]])
"""

from __future__ import annotations

import base64
import binascii
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl

import httpx
import orjson

from crmhub.errors import NormalizationError
from crmhub.normalize import normalize_country, normalize_phone

__all__ = [
    "ApiError",
    "Faults",
    "SandboxApp",
    "SandboxRequest",
    "basic_credentials",
    "bearer_token",
    "e164",
    "int_param",
    "route",
]

Handler = Callable[[Any, "SandboxRequest"], httpx.Response]


class ApiError(Exception):
    """Raised by a handler to answer with an error in the app's own error shape."""

    def __init__(self, status: int, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass
class Faults:
    """Switchable fault injection, deterministic for a seed.

    Attributes:
        error_rate: share of requests answered with a 5xx (500, 502, 503 in turn).
        burst_every: start a burst of 429s every this many requests (0: never).
        burst_length: how many requests in a row a burst refuses.
        retry_after: the ``Retry-After`` seconds sent with a 429.
        slow: seconds added to every response (a slow system; 0: none).
        seed: seeds the choice of failing requests.
        route_failures: per route (``"DELETE /v1/customers/{id}"``, as in
            :attr:`SandboxApp.calls`), how many of its next requests fail with a 500.
    """

    error_rate: float = 0.0
    burst_every: int = 0
    burst_length: int = 3
    retry_after: int = 1
    slow: float = 0.0
    seed: int = 0
    route_failures: dict[str, int] = field(default_factory=dict)
    _random: random.Random = field(init=False, repr=False)
    _burst_left: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate < 1.0:
            raise ValueError("error_rate must be in [0, 1)")
        self._random = random.Random(self.seed)

    @property
    def active(self) -> bool:
        """Whether any fault is switched on."""
        return bool(self.error_rate or self.burst_every or self.slow or self.route_failures)

    def take_route_failure(self, route: str) -> bool:
        """Whether this request of ``route`` is one of those set to fail (counting it)."""
        left = self.route_failures.get(route, 0)
        if left <= 0:
            return False
        self.route_failures[route] = left - 1
        return True

    def pick(self, request_number: int) -> int | None:
        """The fault status for the n-th request (429 or 5xx), or None to answer normally."""
        if self.burst_every and request_number % self.burst_every == 0:
            self._burst_left = self.burst_length
        if self._burst_left > 0:
            self._burst_left -= 1
            return 429
        if self.error_rate and self._random.random() < self.error_rate:
            return (500, 502, 503)[request_number % 3]
        return None


@dataclass
class SandboxRequest:
    """A request as a handler sees it: path parameters, query, JSON body, headers."""

    raw: httpx.Request
    params: dict[str, str]

    @property
    def method(self) -> str:
        """The HTTP method."""
        return self.raw.method

    @property
    def path(self) -> str:
        """The URL path."""
        return self.raw.url.path

    @property
    def headers(self) -> httpx.Headers:
        """The request headers."""
        return self.raw.headers

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (the last value of a repeated name)."""
        return dict(self.raw.url.params.multi_items())

    def query_list(self, name: str) -> list[str]:
        """Every value of a repeated query parameter (``expand[]=a&expand[]=b``)."""
        return self.raw.url.params.get_list(name)

    def json(self) -> Any:
        """The body parsed as JSON; a 400 in the app's shape when it is not JSON."""
        body = self.raw.read()
        if not body:
            return None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ApiError(400, "the request body is not valid JSON") from None

    def form(self) -> dict[str, str]:
        """The body as ``application/x-www-form-urlencoded`` fields (Stripe's writes)."""
        return dict(parse_qsl(self.raw.read().decode(), keep_blank_values=True))


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Mark an app method as the handler of ``method`` on ``pattern`` (``{name}`` captures
    one path segment into ``request.params``)."""

    def mark(handler: Handler) -> Handler:
        handler.__sandbox_route__ = (method.upper(), pattern)  # type: ignore[attr-defined]
        return handler

    return mark


def _compile(pattern: str) -> re.Pattern[str]:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
    return re.compile(f"^{regex}$")


class SandboxApp:
    """Base class of a sandbox app.

    Subclasses set ``system`` (the connector type they stand in for) and ``host`` (the host
    name the in-process transport routes on), implement :meth:`authorized` and
    :meth:`error_body` in their API's shape, :meth:`seed` from the synthetic people, and
    mark their handlers with :func:`route`.

    Args:
        faults: fault injection (default: none); can be swapped at any time.
        credentials: the secret the app accepts (an API key or token).
        clock: seconds since the epoch, for timestamps of writes.
    """

    system: ClassVar[str]
    host: ClassVar[str]
    default_credentials: ClassVar[str] = "sandbox-key"
    _routes: ClassVar[list[tuple[str, re.Pattern[str], str, str]]]

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        credentials: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.faults = faults or Faults()
        self.credentials = credentials or self.default_credentials
        self.clock = clock
        self.calls: Counter[str] = Counter()
        """Requests answered normally, by ``"METHOD pattern"``."""
        self.faults_sent: Counter[int] = Counter()
        """Fault responses sent, by status."""
        self._lock = threading.RLock()
        self._count = 0
        self.random = random.Random(self.system)
        """Seeds the app's own invented data (ids, invoices, tickets); see :meth:`seed_random`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        routes = []
        for name in dir(cls):
            marked = getattr(getattr(cls, name, None), "__sandbox_route__", None)
            if marked:
                method, pattern = marked
                routes.append((method, _compile(pattern), pattern, name))
        # Literal segments before captures: "/users/search" wins over "/users/{id}".
        routes.sort(key=lambda r: r[2].count("{"))
        cls._routes = routes

    @classmethod
    def seeded(cls, people: int = 30, *, seed: int = 7, **kwargs: Any) -> Self:
        """A new app holding ``people`` synthetic people (every record of the synthetic world
        goes to this one app); for fakes of third-party APIs in their tests."""
        from crmhub.sandbox.people import WorldOptions, iter_world

        app = cls(**kwargs)
        app.seed_random(seed)
        app.seed(row for _source, row in iter_world(people, WorldOptions(seed=seed)))
        return app

    # ------------------------------------------------------------------ to override
    def authorized(self, request: SandboxRequest) -> bool:
        """Whether the request carries the app's credentials."""
        raise NotImplementedError

    def error_body(self, status: int, message: str, code: str | None) -> Any:
        """The JSON body of an error response, in the API's own shape."""
        return {"error": {"status": status, "message": message, "code": code}}

    def seed(self, rows: Iterable[Mapping[str, str]]) -> None:
        """Load people (rows of the ``people_file`` format) as this system would hold them."""
        raise NotImplementedError

    def add_record(self, stream: str) -> str:
        """Create one new record of the connector stream ``stream``, as if just entered in
        the system (newer than every other), and return its external id. The conformance
        suite uses it to test incremental reads."""
        raise NotImplementedError

    def seed_random(self, seed: int | str) -> None:
        """Reseed :attr:`random` (before :meth:`seed`), so equal seeds give equal systems."""
        self.random = random.Random(f"{self.system}:{seed}")

    @property
    def env_name(self) -> str:
        """The environment variable the sandbox's credentials are handed over in."""
        return f"CRMHUB_SANDBOX_{self.system.upper()}_KEY"

    def environ(self) -> dict[str, str]:
        """Environment variables that :meth:`connector_settings` refers to."""
        return {self.env_name: self.credentials}

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        """Settings of this system's connector that reach this app at ``base_url``
        (secrets as ``env:`` references, as in ``crmhub.toml``)."""
        return {"base_url": base_url, "api_key": f"env:{self.env_name}"}

    # ------------------------------------------------------------------ serving
    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self._count += 1
            status = self.faults.pick(self._count)
            if self.faults.slow:
                time.sleep(self.faults.slow)
            if status is not None:
                self.faults_sent[status] += 1
                headers = {"Retry-After": str(self.faults.retry_after)} if status == 429 else {}
                message = "rate limited" if status == 429 else "injected server error"
                return self.json(self.error_body(status, message, None), status, headers)
            return self._dispatch(request)

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        allowed = False
        for method, regex, pattern, name in self._routes:
            found = regex.match(path)
            if not found:
                continue
            if method != request.method:
                allowed = True
                continue
            wrapped = SandboxRequest(request, found.groupdict())
            if self.faults.take_route_failure(f"{method} {pattern}"):
                self.faults_sent[500] += 1
                return self.json(self.error_body(500, "injected server error", None), 500)
            try:
                if not self.authorized(wrapped):
                    raise ApiError(401, "invalid or missing credentials", code="unauthorized")
                self.calls[f"{method} {pattern}"] += 1
                response: httpx.Response = getattr(self, name)(wrapped)
                return response
            except ApiError as exc:
                body = self.error_body(exc.status, exc.message, exc.code)
                return self.json(body, exc.status)
        status = 405 if allowed else 404
        message = "method not allowed" if allowed else f"no route for {path}"
        return self.json(self.error_body(status, message, None), status)

    @staticmethod
    def json(
        body: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """A JSON response."""
        return httpx.Response(
            status,
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    @staticmethod
    def empty(status: int = 204) -> httpx.Response:
        """A response without a body."""
        return httpx.Response(status)

    def now(self) -> int:
        """The app's clock, in whole seconds since the epoch."""
        return int(self.clock())

    def reset_counters(self) -> None:
        """Forget the call and fault counts (to measure one sync's requests)."""
        with self._lock:
            self.calls.clear()
            self.faults_sent.clear()


def bearer_token(request: SandboxRequest) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if any."""
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def basic_credentials(request: SandboxRequest) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic ...`` header, if any."""
    value = request.headers.get("authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def e164(phone: str, country: str, default: str = "GB") -> str | None:
    """A typed phone number as systems that store E.164 keep it: read in the person's country
    (or ``default`` when it has none or an unknown one); None when it does not parse."""
    try:
        region = normalize_country(country) if country else default
    except NormalizationError:
        region = default
    try:
        return normalize_phone(phone, region)
    except NormalizationError:
        return None


def int_param(request: SandboxRequest, name: str, default: int, *, lo: int, hi: int) -> int:
    """An integer query parameter within [lo, hi]; a 400 in the app's shape otherwise."""
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer", code="parameter_invalid") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}", code="parameter_invalid")
    return value

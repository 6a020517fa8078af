"""The connector contract: what a plugin implements to pull from and push to one system.

A connector is a small class with declarative attributes and a few methods::

    class Shop(crmhub.Connector):
        name = "shop"
        streams = {"customers": Stream(primary_key="id", cursor="updated_at")}
        default_mapping = "shop"                       # mappings/shop.yaml

        class Config(crmhub.ConnectorConfig):
            api_key: SecretStr

        def read(self, stream, state):                 # pages of raw dicts + state after each
            ...
            yield Page(records=[...], state={"updated_at": "2024-05-01T00:00:00Z"})

The engine owns transactions, retries, counting and state; a connector owns only how to talk
to its system. ``write`` and ``erase`` are optional: a connector that does not override them
does not have those capabilities.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from crmhub.http import HubClient, RateLimit, RetryPolicy

__all__ = [
    "Change",
    "Connector",
    "ConnectorConfig",
    "EraseResult",
    "HttpConnectorConfig",
    "Page",
    "RecordProblem",
    "Stream",
    "WebhookDelivery",
    "WriteResult",
]

Capability = Literal["read", "write", "erase", "webhook"]


class ConnectorConfig(BaseModel):
    """Base of every connector's settings; subclasses add their own fields.

    Secrets are declared as ``pydantic.SecretStr`` and given in ``crmhub.toml`` as
    ``env:NAME``, so they never live in a file and never print.
    """

    model_config = ConfigDict(extra="forbid")

    mapping: str | None = None
    """A mapping file path or the name of a built-in mapping; defaults to the connector's own."""


class HttpConnectorConfig(ConnectorConfig):
    """Settings every HTTP connector has: where the API is and how hard to use it.

    Subclasses give ``base_url`` the real API's address as default; tests and the sandbox
    point it elsewhere.
    """

    base_url: str
    """The API's base URL."""
    requests_per_second: float | None = Field(default=None, gt=0)
    """Start at most this many requests per second (None: as fast as the API allows)."""
    concurrency: int = Field(default=4, ge=1)
    """Requests in flight at once."""
    max_attempts: int = Field(default=5, ge=1, le=20)
    """Tries per request (429, 5xx and connection errors are retried)."""
    timeout: float = Field(default=30.0, gt=0)
    """Seconds to wait for a response."""


@dataclass(frozen=True)
class Stream:
    """One kind of record a connector reads.

    Attributes:
        primary_key: the raw field holding the record's id in the source system.
        cursor: the raw field incremental reads advance on (None: always a full read).
        kind: ``"person"`` or ``"activity"``: which canonical model the records map to.
        description: one line for ``crmhub connectors list``.
    """

    primary_key: str
    cursor: str | None = None
    kind: Literal["person", "activity"] = "person"
    description: str = ""


@dataclass(frozen=True)
class RecordProblem:
    """A record the connector could read only as text: a malformed CSV row, a JSON line that
    does not parse. The engine quarantines it with ``raw`` and ``reason``."""

    reason: str
    raw: str
    location: str = ""


@dataclass
class Page:
    """One batch of raw records, and the stream state once they are stored.

    Attributes:
        records: raw dicts exactly as the source gave them.
        state: the state to save with these records; a rerun resumes from it. ``None`` keeps
            the previous state (use it for pages that do not advance the cursor).
        deleted: external ids the source reports as deleted.
        problems: records that could not even be parsed.
        progress: optional fraction (0..1) of the stream read so far, for progress bars.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] | None = None
    deleted: list[str] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)
    progress: float | None = None


@dataclass(frozen=True)
class Change:
    """A change to push to one record of a target system.

    ``external_id`` is None for a record to create; ``fields`` holds source-side field names
    and values (already mapped back from canonical form); ``idempotency_key`` is stable for
    the same change, so a retried push is not applied twice.
    """

    external_id: str | None
    fields: Mapping[str, Any]
    idempotency_key: str
    customer_id: str | None = None


@dataclass(frozen=True)
class WriteResult:
    """The outcome of pushing one :class:`Change`."""

    idempotency_key: str
    ok: bool
    external_id: str | None = None
    error: str | None = None
    retriable: bool = False


@dataclass(frozen=True)
class EraseResult:
    """The outcome of erasing one record; ``"already_gone"`` counts as done."""

    external_id: str
    status: Literal["erased", "already_gone", "failed"]
    error: str | None = None
    retriable: bool = False

    @property
    def done(self) -> bool:
        """Whether the record is gone from the system."""
        return self.status != "failed"


@dataclass(frozen=True)
class WebhookDelivery:
    """A verified webhook delivery as records for the normal pipeline: the ``page`` of
    ``stream`` (records and deleted ids; its ``state`` is None: a push does not move the
    stream's cursor). ``event_id`` is the system's id of the event, if it has one."""

    stream: str
    page: Page
    event_id: str | None = None


class Connector:
    """Base class of every connector plugin.

    Args:
        config: the validated settings of this connector instance.
        name: the instance name from ``crmhub.toml`` (defaults to the connector's ``name``);
            source records are keyed by it, so two instances of one connector stay apart.
        http_options: keyword arguments for the :class:`~crmhub.http.HubClient` the
            connector gets as :attr:`http` (``transport``, ``sleep``, ``clock``): how the
            hub, the tests and the sandbox inject a transport. Connectors never build their
            own client; they describe it in :meth:`http_settings`.
    """

    name: ClassVar[str]
    streams: ClassVar[dict[str, Stream]] = {}
    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig
    default_mapping: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    join_pages: ClassVar[bool] = True
    """Whether the engine may store consecutive small pages in one transaction (an API's
    pages of 100 would otherwise cost a commit each); False where the page size is a setting
    the user chose as the unit of work."""

    def __init__(
        self,
        config: ConnectorConfig,
        *,
        name: str | None = None,
        http_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.instance_name = name or self.name
        self._http_options = dict(http_options or {})
        self._http: HubClient | None = None

    @property
    def http(self) -> HubClient:
        """The hub's HTTP client for this connector: timeouts, retries on 429 / 5xx /
        connection errors honouring ``Retry-After``, rate limit, one response policy,
        secrets redacted (created on first use from :meth:`http_settings`)."""
        if self._http is None:
            options = self.http_settings()
            options.update(self._http_options)
            self._http = HubClient(self.instance_name, **options)
        return self._http

    def http_settings(self) -> dict[str, Any]:
        """Keyword arguments of the connector's :class:`~crmhub.http.HubClient`.

        The default reads :class:`HttpConnectorConfig` fields (base URL, rate, attempts,
        timeout) and registers every ``SecretStr`` setting for redaction. Override to add
        authentication (``headers`` or ``auth``), calling ``super()``.
        """
        config = self.config
        secrets = [
            value.get_secret_value()
            for value in (getattr(config, name) for name in type(config).model_fields)
            if isinstance(value, SecretStr)
        ]
        options: dict[str, Any] = {"secrets": secrets}
        if isinstance(config, HttpConnectorConfig):
            options.update(
                base_url=config.base_url,
                timeout=httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0)),
                retry=RetryPolicy(attempts=config.max_attempts),
                rate=RateLimit(config.requests_per_second, config.concurrency),
            )
        return options

    @property
    def retries(self) -> int:
        """HTTP requests retried so far by this instance (for the run's counts)."""
        return self._http.retries if self._http is not None else 0

    def stream_names(self) -> list[str]:
        """The names of the streams this instance reads, in reading order."""
        return list(self.streams)

    def stream(self, name: str) -> Stream:
        """The declaration of one stream."""
        return self.streams[name]

    def check(self) -> None:
        """Verify settings and credentials; raise a clear :class:`ConnectorError` if wrong."""

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        """Yield pages of raw records of ``stream`` newer than ``state`` (``None``: all)."""
        raise NotImplementedError

    def accepts_writes(self) -> bool:
        """Whether this instance, as configured, takes pushes (default: whether the connector
        implements :meth:`write`); a connector whose writes need a setting says no without it."""
        return "write" in self.capabilities()

    def state_since(self, stream: str, since: datetime) -> dict[str, Any]:
        """The state from which :meth:`read` returns the records of ``stream`` changed at or
        after ``since``: lets an operator re-read from a date, and the conformance suite ask
        for "nothing newer than the far future". Streams without a cursor raise
        ``NotImplementedError``."""
        raise NotImplementedError

    def write(self, stream: str, changes: Iterable[Change]) -> Iterator[WriteResult]:
        """Push changes to the system, one result per change. Optional."""
        raise NotImplementedError

    def erase(self, external_ids: Iterable[str]) -> Iterator[EraseResult]:
        """Erase records of a person from the system, one result per id. Optional."""
        raise NotImplementedError

    def webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> list[WebhookDelivery]:
        """Verify a webhook delivery's signature and turn its body into records. Optional.

        Args:
            headers: the request headers (any case).
            body: the raw body exactly as received (signatures cover the bytes).
            now: the current time in seconds since the epoch (tests), for the tolerance.

        Raises:
            WebhookSignatureError: the signature is missing, wrong or outside the tolerance.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (the HTTP client)."""
        if self._http is not None:
            self._http.close()

    @classmethod
    def capabilities(cls) -> tuple[Capability, ...]:
        """Which of read / write / erase this connector implements."""
        every: tuple[Capability, ...] = ("read", "write", "erase", "webhook")
        return tuple(c for c in every if getattr(cls, c) is not getattr(Connector, c))

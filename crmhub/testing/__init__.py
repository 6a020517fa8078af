"""The connector conformance suite: the standard tests every connector must pass.

One call gives a connector the whole suite, as a pytest test class::

    from crmhub.testing import conformance_suite
    from crmhub_guestbook import Guestbook, GuestbookServer

    TestGuestbook = conformance_suite(
        Guestbook,
        server=GuestbookServer,                      # a fresh system per test
        settings={"base_url": "https://guestbook.test", "api_key": "k"},
        bad_settings={"api_key": "wrong"},
    )

``server`` makes a fresh system for each test: any callable from :class:`httpx.Request` to
:class:`httpx.Response` (a sandbox app, a ``respx`` router's ``handler``, a small fake of your
API) with an ``add_record(stream) -> external id`` method that creates a record newer than all
others. The suite reaches it through an injected transport; no socket is opened and nothing
waits for real (``Retry-After`` waits are recorded, not slept).

The tests (after the Airbyte acceptance tests and the Singer SDK standard tests): streams are
declared with a primary key; ``check`` passes with good settings, fails clearly on bad
credentials and on an unreachable host, never echoing a secret; two full reads agree; primary
keys are unique and non-null; every record maps to a valid canonical record; small pages give
the same records and the paginator ends; an incremental read from the saved state returns the
new record and nothing older; a state from the far future returns nothing; 429 and 5xx are
retried and ``Retry-After`` is honoured; write and erase (when the connector has them) are
idempotent, and erasing what is already gone counts as done.

The built-in connectors run it against their sandbox apps through :func:`sandbox_suite`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from crmhub.connector import Change, Connector, Page
from crmhub.errors import AuthError, ConnectorError
from crmhub.mapping import MappingFile, load_mapping
from crmhub.mapping.stream import StreamMapping
from crmhub.model import Person

__all__ = [
    "ConformanceSuite",
    "FaultyTransport",
    "Server",
    "conformance_suite",
    "sandbox_suite",
]

_FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)
_MAX_PAGES = 10_000  # a read with more pages than this in the suite is a paginator loop


class Server(Protocol):
    """What the suite needs of a fresh system: answer requests, create a new record."""

    def __call__(self, request: httpx.Request) -> httpx.Response: ...

    def add_record(self, stream: str) -> str: ...


class FaultyTransport(httpx.BaseTransport):
    """A transport answering the first requests with given statuses, then passing through.

    Args:
        handler: the system (request -> response).
        faults: (status, ``Retry-After`` header or None) for the first requests, in order.
    """

    def __init__(
        self,
        handler: Callable[[httpx.Request], httpx.Response],
        faults: list[tuple[int, str | None]],
    ) -> None:
        self.handler = handler
        self.faults = list(faults)
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.faults:
            status, retry_after = self.faults.pop(0)
            headers = {"Retry-After": retry_after} if retry_after else {}
            return httpx.Response(status, headers=headers, json={"error": "injected"})
        response = self.handler(request)
        response.read()
        return response


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _walk(record: Mapping[str, Any], path: str) -> Any:
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _comparable(value: Any) -> Any:
    """A cursor value in a form that orders: numbers as numbers, timestamps as datetimes."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


class ConformanceSuite:
    """Base of the generated test classes; see :func:`conformance_suite`."""

    __test__ = False  # only the generated subclasses are collected

    connector_class: type[Connector]
    make_server: Callable[[], Server]
    settings_for: Callable[[Server], dict[str, Any]]
    bad_settings: dict[str, Any]
    small_pages: dict[str, Any]
    mapping_ref: str | MappingFile | None

    # ------------------------------------------------------------------ helpers
    def connector(
        self,
        server: Server,
        *,
        transport: httpx.BaseTransport | None = None,
        waits: list[float] | None = None,
        **overrides: Any,
    ) -> Connector:
        """A connector instance talking to ``server`` (settings updated by ``overrides``)."""
        settings = {**self.settings_for(server), **overrides}
        config = self.connector_class.Config.model_validate(settings)
        sleep = waits.append if waits is not None else (lambda _seconds: None)
        options = {"transport": transport or httpx.MockTransport(server), "sleep": sleep}
        return self.connector_class(config, http_options=options)

    def read_all(
        self, connector: Connector, stream: str, state: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], list[Page]]:
        """Every record of one read, and its pages (bounded: a loop fails the test)."""
        pages = list(itertools.islice(connector.read(stream, state), _MAX_PAGES + 1))
        assert len(pages) <= _MAX_PAGES, f"{stream}: the read did not end (paginator loop?)"
        return [r for p in pages for r in p.records], pages

    def ids(self, stream: str, records: list[dict[str, Any]]) -> list[str]:
        """The primary keys of ``records``, as text."""
        key = self.connector_class.streams[stream].primary_key
        return [str(_walk(r, key)) for r in records]

    def mapping(self, stream: str) -> StreamMapping:
        """The connector's mapping of ``stream``."""
        ref = self.mapping_ref or self.connector_class.default_mapping
        assert ref, "the connector has no default mapping: pass mapping= to the suite"
        mapping = ref if isinstance(ref, MappingFile) else load_mapping(ref)
        return mapping.stream(stream)

    def last_state(self, pages: list[Page]) -> dict[str, Any] | None:
        """The state a sync would have saved after these pages."""
        states = [p.state for p in pages if p.state is not None]
        return states[-1] if states else None

    def streams(self) -> list[str]:
        """The connector's streams."""
        return list(self.connector_class.streams)

    def person_stream(self) -> str | None:
        """The first stream of people (write and erase are tested on it)."""
        found = [n for n, s in self.connector_class.streams.items() if s.kind == "person"]
        return found[0] if found else None

    # ------------------------------------------------------------------ declarations
    def test_streams_are_declared_with_primary_keys(self) -> None:
        streams = self.connector_class.streams
        assert streams, "a connector declares at least one stream"
        for name, stream in streams.items():
            assert stream.primary_key, f"stream {name!r} has no primary key"
            assert stream.kind in ("person", "activity")
        assert "read" in self.connector_class.capabilities()

    # ------------------------------------------------------------------ check
    def test_check_passes_with_good_settings(self) -> None:
        connector = self.connector(self.make_server())
        connector.check()

    def test_check_fails_clearly_on_bad_credentials(self) -> None:
        server = self.make_server()
        connector = self.connector(server, **self.bad_settings)
        try:
            connector.check()
        except AuthError as exc:
            message = str(exc)
        else:
            raise AssertionError("check() accepted bad credentials")
        for value in self.bad_settings.values():
            if isinstance(value, str) and len(value) >= 4:
                assert value not in message, "the error message shows a secret"
        assert message.strip()

    def test_check_fails_clearly_on_an_unreachable_host(self) -> None:
        connector = self.connector(
            self.make_server(), transport=httpx.MockTransport(_unreachable), max_attempts=2
        )
        try:
            connector.check()
        except ConnectorError as exc:
            assert str(exc).strip()
        else:
            raise AssertionError("check() passed with no host to reach")

    # ------------------------------------------------------------------ reading
    def test_two_full_reads_agree(self) -> None:
        server = self.make_server()
        for stream in self.streams():
            first, _ = self.read_all(self.connector(server), stream)
            second, _ = self.read_all(self.connector(server), stream)
            key = self.connector_class.streams[stream].primary_key

            def by_key(records: list[dict[str, Any]], key: str = key) -> dict[str, Any]:
                return {str(_walk(r, key)): r for r in records}

            assert first, f"{stream}: the server holds records, the read found none"
            assert by_key(first) == by_key(second), f"{stream}: two full reads differ"

    def test_primary_keys_are_unique_and_non_null(self) -> None:
        server = self.make_server()
        for stream in self.streams():
            records, _ = self.read_all(self.connector(server), stream)
            ids = self.ids(stream, records)
            assert "None" not in ids and "" not in ids, f"{stream}: a record has no primary key"
            assert len(ids) == len(set(ids)), f"{stream}: a primary key repeats in one read"

    def test_every_record_maps_to_a_valid_canonical_record(self) -> None:
        server = self.make_server()
        name = self.connector_class.name
        for stream in self.streams():
            mapping = self.mapping(stream)
            records, _ = self.read_all(self.connector(server), stream)
            for record in records:
                result = mapping.apply(record, source=name, stream=stream, region="GB")
                assert result.record is not None, f"{stream}: {result.problems}"

    def test_small_pages_give_the_same_records_and_end(self) -> None:
        if not self.small_pages:
            return
        server = self.make_server()
        for stream in self.streams():
            big, _ = self.read_all(self.connector(server), stream)
            small, pages = self.read_all(self.connector(server, **self.small_pages), stream)
            assert sorted(self.ids(stream, small)) == sorted(self.ids(stream, big))
            assert len(pages) > 1 or len(big) <= 1, f"{stream}: small pages gave one page"

    def test_incremental_read_returns_only_newer_records(self) -> None:
        server = self.make_server()
        for stream in self.streams():
            spec = self.connector_class.streams[stream]
            if spec.cursor is None:
                continue
            records, pages = self.read_all(self.connector(server), stream)
            state = self.last_state(pages)
            assert state is not None, f"{stream}: a full read saved no state"
            values = [_comparable(_walk(r, spec.cursor)) for r in records]
            newest = max((v for v in values if v is not None), default=None)
            new_id = server.add_record(stream)
            later, _ = self.read_all(self.connector(server), stream, state)
            later_ids = self.ids(stream, later)
            assert new_id in later_ids, f"{stream}: the incremental read missed a new record"
            for record, record_id in zip(later, later_ids, strict=True):
                value = _comparable(_walk(record, spec.cursor))
                if record_id != new_id and newest is not None and value is not None:
                    assert value >= newest, f"{stream}: an older record was read again"

    def test_a_state_from_the_far_future_returns_nothing(self) -> None:
        server = self.make_server()
        connector = self.connector(server)
        for stream in self.streams():
            if self.connector_class.streams[stream].cursor is None:
                continue
            state = connector.state_since(stream, _FAR_FUTURE)
            records, _ = self.read_all(self.connector(server), stream, state)
            assert records == [], f"{stream}: records newer than the year 2999?"

    # ------------------------------------------------------------------ resilience
    def test_429_and_5xx_are_retried_honouring_retry_after(self) -> None:
        server = self.make_server()
        stream = self.streams()[0]
        clean, _ = self.read_all(self.connector(server), stream)
        waits: list[float] = []
        faulty = FaultyTransport(server, [(429, "7"), (503, None), (502, None)])
        connector = self.connector(server, transport=faulty, waits=waits)
        records, _ = self.read_all(connector, stream)
        assert self.ids(stream, records) == self.ids(stream, clean)
        assert 7.0 in waits, f"Retry-After: 7 was not honoured (waits: {waits})"
        assert connector.retries == 3

    # ------------------------------------------------------------------ write and erase
    def _changes(self, server: Server, stream: str) -> tuple[str, Change, StreamMapping]:
        records, _ = self.read_all(self.connector(server), stream)
        mapping = self.mapping(stream)
        for record in records:
            result = mapping.apply(record, source=self.connector_class.name, stream=stream)
            person = result.record
            if not isinstance(person, Person) or not person.last_name:
                continue
            before = mapping.to_source(person)
            update = {"last_name": "Conformance-Test"}
            if person.full_name:  # systems holding one name field push the full name
                update["full_name"] = f"{person.first_name or ''} Conformance-Test".strip()
            changed = person.model_copy(update=update)
            after = mapping.to_source(changed)
            fields = _diff(before, after)
            if fields:
                change = Change(person.external_id, fields, f"conformance-{person.external_id}")
                return person.external_id, change, mapping
        raise AssertionError(f"{stream}: no record with a last name to change")

    def test_write_is_idempotent(self) -> None:
        stream = self.person_stream()
        if "write" not in self.connector_class.capabilities() or stream is None:
            return
        server = self.make_server()
        external_id, change, mapping = self._changes(server, stream)
        first = list(self.connector(server).write(stream, [change]))
        second = list(self.connector(server).write(stream, [change]))
        assert [r.ok for r in first] == [True], first
        assert [r.ok for r in second] == [True], second
        records, _ = self.read_all(self.connector(server), stream)
        ids = self.ids(stream, records)
        assert ids.count(external_id) == 1, "a repeated write created a second record"
        written = records[ids.index(external_id)]
        person = mapping.apply(written, source=self.connector_class.name, stream=stream).record
        assert isinstance(person, Person) and person.last_name == "Conformance-Test"

    def test_erase_is_idempotent(self) -> None:
        stream = self.person_stream()
        if "erase" not in self.connector_class.capabilities() or stream is None:
            return
        server = self.make_server()
        records, _ = self.read_all(self.connector(server), stream)
        target = self.ids(stream, records)[0]
        first = list(self.connector(server).erase([target]))
        second = list(self.connector(server).erase([target]))
        assert [r.done for r in first] == [True], first
        assert [r.status for r in second] == ["already_gone"], second
        after, _ = self.read_all(self.connector(server), stream)
        assert target not in self.ids(stream, after), "an erased record is still listed"


def _diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``after`` that differ from ``before`` (nested dicts compared whole)."""
    return {k: v for k, v in after.items() if before.get(k) != v}


def conformance_suite(
    connector_class: type[Connector],
    *,
    server: Callable[[], Server],
    settings: Mapping[str, Any] | Callable[[Server], Mapping[str, Any]],
    bad_settings: Mapping[str, Any],
    small_pages: Mapping[str, Any] | None = None,
    mapping: str | MappingFile | None = None,
) -> type[ConformanceSuite]:
    """The conformance tests of ``connector_class`` as a pytest test class.

    Args:
        connector_class: the connector under test.
        server: makes a fresh system (see :class:`Server`) for each test.
        settings: the connector's settings reaching that system (plain values, secrets
            included), or a function of the server returning them.
        bad_settings: overrides that make the credentials wrong.
        small_pages: overrides giving many small pages (``{"page_size": 2}``), if any.
        mapping: the mapping file (a path, a built-in name or a loaded file); default: the
            connector's ``default_mapping``.

    Returns:
        A class to assign to a ``Test...`` name in a test module.
    """
    settings_for: Callable[[Server], Mapping[str, Any]]
    if callable(settings):
        settings_for = settings
    else:
        fixed = dict(settings)

        def settings_for(_server: Server) -> Mapping[str, Any]:
            return fixed

    attributes = {
        "__test__": True,
        "connector_class": connector_class,
        "make_server": staticmethod(server),
        "settings_for": staticmethod(lambda s: dict(settings_for(s))),
        "bad_settings": dict(bad_settings),
        "small_pages": dict(small_pages or {}),
        "mapping_ref": mapping,
    }
    name = f"Test{connector_class.__name__}Conformance"
    return type(name, (ConformanceSuite,), attributes)


def sandbox_suite(system: str, *, people: int = 60, seed: int = 7) -> type[ConformanceSuite]:
    """The conformance tests of a built-in connector against its sandbox app."""
    from crmhub.plugins import Plugins
    from crmhub.sandbox.world import Sandbox

    def make_server() -> Server:
        app = Sandbox(people, seed=seed, systems=(system,)).app(system)
        return app

    def settings(server: Any) -> dict[str, Any]:
        environ = server.environ()
        values = server.connector_settings(f"https://{server.host}")
        return {
            k: environ[v[4:]] if isinstance(v, str) and v.startswith("env:") else v
            for k, v in values.items()
        }

    connector_class = Plugins(load_entry_points=True).connector(system)
    secret_names = [
        name
        for name, field in connector_class.Config.model_fields.items()
        if "SecretStr" in str(field.annotation)
    ]
    page_field = "page_size" in connector_class.Config.model_fields
    return conformance_suite(
        connector_class,
        server=make_server,
        settings=settings,
        bad_settings=dict.fromkeys(secret_names, "wrong-credentials-0000"),
        small_pages={"page_size": 7} if page_field else None,
    )

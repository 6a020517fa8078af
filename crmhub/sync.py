"""The sync engine: pull pages from a connector, map, govern, and store them crash-safely.

For each page a connector yields, one transaction stores:

- new and changed records (idempotent upsert by connector, stream and external id; a record
  whose raw content hash is unchanged is skipped without being mapped again),
- records that fail mapping or validation, in quarantine with the reasons,
- source deletes,
- the stream state after the page, and the page's counts on the run row.

So a crash (even ``kill -9``) at any point leaves state that matches the data, and a rerun
continues where the last committed page ended, without duplicates. Suppressed people (erased
by a privacy request) are dropped before anything is stored, and only counted.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from sqlalchemy.engine import Engine

from crmhub.collector import young_collections_only
from crmhub.connector import Connector, Page
from crmhub.errors import CrmhubError
from crmhub.mapper import Mapper
from crmhub.mapping import MappingFile, StreamMapping
from crmhub.push import has_push_state, load_json, projection_hash, pushed_hashes
from crmhub.store import quarantine as quarantine_store
from crmhub.store import records as record_store
from crmhub.store.runs import Counts, add_counts, finish_run, start_run
from crmhub.store.state import load_state, save_state
from crmhub.suppression import SuppressionList

__all__ = ["Observer", "StreamResult", "StreamSync", "sync_stream"]

log = structlog.get_logger("crmhub.sync")

Observer = Callable[[str, dict[str, Any]], None]
"""Called with an event name and details: ``page`` after each commit, ``before_commit``
inside each page's transaction (for progress bars, metrics and fault-injection tests)."""

_DUMPS_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _dumps(raw: Any) -> bytes:
    try:
        return orjson.dumps(raw, option=_DUMPS_OPTIONS)
    except TypeError:  # values orjson cannot encode (Decimal, sets, ...): fall back to text
        return orjson.dumps(raw, option=_DUMPS_OPTIONS, default=str)


class _Hasher:
    """The hash that decides whether a record changed: its raw content and the mapping used,
    seeded once per mapping (it runs for every record read). A changed mapping changes every
    hash, so the next sync maps every record again."""

    def __init__(self, fingerprint: str) -> None:
        self._seeded = hashlib.blake2b(fingerprint.encode(), digest_size=16)

    def __call__(self, raw: Any) -> str:
        digest = self._seeded.copy()
        digest.update(_dumps(raw))
        return digest.hexdigest()


@dataclass
class StreamResult:
    """The outcome of syncing one stream."""

    connector: str
    stream: str
    mode: str
    status: str  # succeeded | failed | dry-run
    counts: Counts = field(default_factory=Counts)
    run_id: int | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the stream finished without failing."""
        return self.status != "failed"


@dataclass
class _Prepared:
    """A page read, hashed and looked up, with its mapping under way."""

    page: Page
    counts: Counts
    pending: list[tuple[str, str, bool, Any]]  # external id, hash, stored before, raw
    futures: list[Any]
    quarantined: list[dict[str, Any]]


class StreamSync:
    """Syncs one stream of one connector instance into the store.

    Args:
        engine: the hub database.
        connector: the connector instance to read from.
        stream: the stream name.
        mapping: the connector's mapping file.
        region: default phone region for numbers without a country code.
        suppressions: identifiers that must never be stored again.
        observer: optional callback for progress and tests.
        workers: processes that map large pages (see :mod:`crmhub.mapper`).
    """

    def __init__(
        self,
        engine: Engine,
        connector: Connector,
        stream: str,
        mapping: MappingFile,
        *,
        region: str | None = None,
        suppressions: SuppressionList | None = None,
        observer: Observer | None = None,
        workers: int = 1,
    ) -> None:
        self.engine = engine
        self.connector = connector
        self.source = connector.instance_name
        self.stream_name = stream
        self.stream = connector.stream(stream)
        self.mapping_file = mapping
        self.mapping: StreamMapping = mapping.stream(stream)
        self.kind = self.mapping.kind
        self.region = region
        self.suppressions = suppressions or SuppressionList.empty()
        self.observer = observer
        self.workers = workers
        self._checked_fields = False
        self._supersede = False
        # Ids the last finished page stored: the next page was looked up before they were.
        self._just_stored: frozenset[str] = frozenset()
        self._hasher = _Hasher(mapping.fingerprint)
        self._echo_check = False  # whether records may come back from a push of ours

    def run(self, *, full: bool = False, dry_run: bool = False) -> StreamResult:
        """Read the stream (incrementally unless ``full``) and store what changed.

        With ``dry_run`` every page is processed and then rolled back: the counts say what
        would happen and nothing is stored.
        """
        mode = "dry-run" if dry_run else ("full" if full else "incremental")
        return self._run(mode, lambda state: self.connector.read(self.stream_name, state), full)

    def ingest(self, pages: Iterable[Page], *, mode: str = "webhook") -> StreamResult:
        """Store pages that arrived rather than were read (a webhook delivery), as a run of
        its own; their records go through the same mapping, governance and store. Pages
        carry no state, so the stream's cursor stays where the reads left it."""
        return self._run(mode, lambda _state: iter(pages), full=True)

    def _run(
        self,
        mode: str,
        read: Callable[[dict[str, Any] | None], Iterator[Page]],
        full: bool,
    ) -> StreamResult:
        dry_run = mode == "dry-run"
        result = StreamResult(self.source, self.stream_name, mode, status="running")
        with self.engine.begin() as conn:
            state = None if full else load_state(conn, self.source, self.stream_name)
            self._supersede = (
                quarantine_store.open_quarantine_count(conn, self.source, self.stream_name) > 0
            )
            if not dry_run:
                result.run_id = start_run(conn, self.source, self.stream_name, mode, _utcnow())
            self._echo_check = (
                self.kind == "person"
                and self.mapping.can_push
                and has_push_state(conn, self.source, self.stream_name)
            )
        retries_before = self.connector.retries
        bound = log.bind(run_id=result.run_id, connector=self.source, stream=self.stream_name)
        bound.info("sync.stream.started", mode=mode, resume=bool(state and "pass" in state))
        mapper = self._mapper(self.workers)
        try:
            # The pages in flight are what the run holds: no need to walk the whole heap
            # each time one is promoted (the mapping workers, forked inside, inherit this).
            with young_collections_only():
                self._consume(read(state), result, mapper, dry_run)
            result.status = "dry-run" if dry_run else "succeeded"
        except CrmhubError as exc:  # ConnectorError and the rest: say what, keep what was stored
            result.status, result.error = "failed", str(exc)
        except Exception as exc:  # a connector bug must not lose the run's record
            result.status = "failed"
            result.error = f"unexpected error: {type(exc).__name__}: {exc}"
            bound.exception("sync.stream.crashed")
        finally:
            mapper.close()
        retries = Counts(retries=self.connector.retries - retries_before)
        result.counts.add(retries)
        if result.run_id is not None:
            with self.engine.begin() as conn:
                if retries:
                    add_counts(conn, result.run_id, retries, _utcnow())
                finish_run(conn, result.run_id, result.status, _utcnow(), result.error)
        level = "info" if result.ok else "error"
        getattr(bound, level)(
            "sync.stream.finished",
            status=result.status,
            error=result.error,
            **result.counts.as_dict(),
        )
        return result

    def _consume(
        self, pages: Iterator[Page], result: StreamResult, mapper: Mapper, dry_run: bool
    ) -> None:
        """Read pages and store them in order, mapping the next page while writing one."""
        in_flight: deque[_Prepared] = deque()
        writing_failed = False

        def finish_oldest() -> None:
            nonlocal writing_failed
            try:
                self._finish(in_flight.popleft(), result, dry_run)
            except BaseException:
                writing_failed = True  # never store a later page (and its state) after this
                raise

        try:
            for page in coalesce_pages(pages) if self.connector.join_pages else pages:
                in_flight.append(self._prepare(page, result, mapper))
                if len(in_flight) > 1:
                    finish_oldest()
        finally:
            # Pages read before a failure are stored: their state covers exactly them.
            while in_flight and not writing_failed:
                finish_oldest()

    def _prepare(self, page: Page, result: StreamResult, mapper: Mapper) -> _Prepared:
        """Hash the page's records, skip the unchanged ones, start mapping the rest."""
        now = _utcnow()
        counts = Counts(read=len(page.records) + len(page.problems))
        hasher = self._hasher
        quarantined: list[dict[str, Any]] = []
        latest: dict[str, tuple[Any, str]] = {}
        for raw in page.records:
            key = self._external_id(raw)
            digest = hasher(raw)
            if key is None:
                quarantined.append(
                    self._quarantine_row(
                        None,
                        self._missing_key(),
                        _dumps(raw).decode(),
                        None,
                        digest,
                        now,
                        result.run_id,
                    )
                )
                continue
            if key in latest:
                # The same record twice in a page: the later version wins; the earlier one is
                # read and not written, so it counts as unchanged (read = sum of outcomes).
                counts.unchanged += 1
            latest[key] = (raw, digest)
        for problem in page.problems:
            digest = hashlib.blake2b(
                problem.raw.encode(errors="replace"), digest_size=16
            ).hexdigest()
            quarantined.append(
                self._quarantine_row(
                    None,
                    [problem.reason],
                    problem.raw,
                    problem.location,
                    digest,
                    now,
                    result.run_id,
                )
            )
        if not self._checked_fields and page.records:
            self._check_fields(page.records, result)
        with self.engine.connect() as conn:
            existing = record_store.existing_hashes(
                conn, self.kind, self.source, self.stream_name, list(latest)
            )
        pending: list[tuple[str, str, bool, Any]] = []
        batch: list[tuple[Any, str]] = []
        for external_id, (raw, digest) in latest.items():
            before = existing.get(external_id)
            if before == digest:
                counts.unchanged += 1
                continue
            pending.append((external_id, digest, before is not None, raw))
            batch.append((raw, external_id))
        counts.quarantined = len(quarantined)
        return _Prepared(
            page,
            counts,
            pending,
            mapper.submit(batch) if batch else [],
            quarantined,
        )

    def _finish(self, prepared: _Prepared, result: StreamResult, dry_run: bool) -> None:
        """Store one prepared page, its state and its counts in one transaction."""
        now = _utcnow()
        counts = prepared.counts
        outcomes = [outcome for future in prepared.futures for outcome in future.result()]
        upserts: list[dict[str, Any]] = []
        stored_ids: list[str] = []
        quarantined = prepared.quarantined
        pushed = self._pushed_hashes(prepared) if self._echo_check else {}
        for (external_id, digest, existed, raw), (kind, value) in zip(
            prepared.pending, outcomes, strict=True
        ):
            if kind == "problems":
                quarantined.append(
                    self._quarantine_row(
                        external_id, value, _dumps(raw).decode(), None, digest, now, result.run_id
                    )
                )
                counts.quarantined += 1
                self._supersede = True  # a good version later in this run resolves it
            elif kind == "suppressed":
                counts.suppressed += 1
            else:
                row, deleted = self._row(external_id, digest, value, now)
                upserts.append(row)
                stored_ids.append(external_id)
                if deleted:
                    counts.deleted += 1
                elif external_id in pushed and self._is_echo(row, pushed[external_id]):
                    counts.echoed += 1  # what the hub pushed, coming back: not a change
                elif existed or external_id in self._just_stored:
                    counts.updated += 1
                else:
                    counts.inserted += 1
        page = prepared.page
        with self.engine.connect() as conn:
            transaction = conn.begin()
            try:
                record_store.upsert_records(conn, self.kind, upserts)
                if page.deleted:
                    counts.deleted += record_store.mark_deleted(
                        conn,
                        self.kind,
                        self.source,
                        self.stream_name,
                        [str(external_id) for external_id in page.deleted],
                        now,
                    )
                quarantine_store.add_to_quarantine(conn, quarantined)
                if self._supersede and stored_ids:
                    quarantine_store.supersede(conn, self.source, self.stream_name, stored_ids, now)
                if page.state is not None:
                    save_state(
                        conn,
                        self.source,
                        self.stream_name,
                        page.state,
                        run_id=result.run_id,
                        now=now,
                    )
                if result.run_id is not None:
                    add_counts(conn, result.run_id, counts, now)
                if self.observer:
                    self.observer("before_commit", {"counts": counts, "result": result})
            except BaseException:
                transaction.rollback()
                raise
            if dry_run:
                transaction.rollback()
            else:
                transaction.commit()
        result.counts.add(counts)
        self._just_stored = frozenset(stored_ids)
        if self.observer:
            self.observer("page", {"counts": counts, "progress": page.progress, "result": result})

    def _pushed_hashes(self, prepared: _Prepared) -> dict[str, str]:
        """The last pushed projection hash of the page's changed records, by external id."""
        ids = [external_id for external_id, _, existed, _ in prepared.pending if existed]
        with self.engine.connect() as conn:
            return pushed_hashes(conn, self.source, self.stream_name, ids)

    def _is_echo(self, row: dict[str, Any], last_hash: str) -> bool:
        """Whether a record holds exactly the values the hub last pushed to it."""
        try:
            fields = self.mapping.to_source(load_json(row["data"]))
        except CrmhubError:
            return False
        return projection_hash(fields) == last_hash

    def _mapper(self, workers: int) -> Mapper:
        return Mapper(
            self.mapping,
            source=self.source,
            stream=self.stream_name,
            region=self.region,
            suppressions=self.suppressions,
            workers=workers,
        )

    def _external_id(self, raw: Any) -> str | None:
        """The record's id in its source, or None when the primary key is missing."""
        value = raw.get(self.stream.primary_key) if isinstance(raw, dict) else None
        if value is None or value == "" or isinstance(value, dict | list):
            return None
        return str(value)

    def _missing_key(self) -> list[str]:
        return [f"missing primary key {self.stream.primary_key!r}"]

    def _row(
        self, external_id: str, digest: str, columns: dict[str, Any], now: datetime
    ) -> tuple[dict[str, Any], bool]:
        """The store row of a mapped record, and whether the source marks it deleted."""
        deleted = bool(columns.pop("deleted"))
        row = {
            "connector": self.source,
            "stream": self.stream_name,
            "external_id": external_id,
            "content_hash": digest,
            "first_seen": now,
            "last_seen": now,
            "deleted_at": now if deleted else None,
            **columns,
        }
        return row, deleted

    def _quarantine_row(
        self,
        external_id: str | None,
        errors: list[str],
        raw: str,
        location: str | None,
        digest: str,
        now: datetime,
        run_id: int | None,
    ) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "connector": self.source,
            "stream": self.stream_name,
            "external_id": external_id,
            "record_hash": digest,
            "errors": errors,
            "raw": raw,
            "location": location,
            "created_at": now,
            "last_seen": now,
        }

    def retry(self, items: Sequence[tuple[int, Any]]) -> Counts:
        """Map quarantined raw records again (after a mapping or data fix).

        Records that now map are stored and their quarantine rows resolved as ``retried``;
        the others keep their rows, with the new reasons. Recorded as a run of mode ``retry``.
        """
        now = _utcnow()
        counts = Counts(read=len(items))
        mapper = self._mapper(workers=1)
        keys = [self._external_id(raw) for _, raw in items]
        rows: list[dict[str, Any]] = []
        resolved: list[int] = []
        try:
            with self.engine.begin() as conn:
                run_id = start_run(conn, self.source, self.stream_name, "retry", now)
                existing = record_store.existing_hashes(
                    conn, self.kind, self.source, self.stream_name, [k for k in keys if k]
                )
                for (quarantine_id, raw), key in zip(items, keys, strict=True):
                    value: Any
                    if key is None:
                        kind, value = "problems", self._missing_key()
                    else:
                        [[kind, value]] = mapper.submit([(raw, key)])[0].result()
                    if kind == "problems":
                        quarantine_store.update_errors(conn, quarantine_id, value, now)
                        counts.quarantined += 1
                        continue
                    resolved.append(quarantine_id)
                    if kind == "suppressed":
                        counts.suppressed += 1
                        continue
                    assert key is not None  # a record without an id never maps
                    row, _deleted = self._row(key, self._hasher(raw), value, now)
                    rows.append(row)
                    if key in existing:
                        counts.updated += 1
                    else:
                        counts.inserted += 1
                record_store.upsert_records(conn, self.kind, rows)
                quarantine_store.resolve(conn, resolved, "retried", now)
                add_counts(conn, run_id, counts, now)
                finish_run(conn, run_id, "succeeded", now)
        finally:
            mapper.close()
        return counts

    def _check_fields(self, records: Iterable[dict[str, Any]], result: StreamResult) -> None:
        """Warn once per run about mapped source fields that no record of the first page has:
        usually a typo in the mapping or a renamed column."""
        self._checked_fields = True
        present: set[str] = set()
        for raw in records:
            if isinstance(raw, dict):
                present.update(raw)
        for source_field in sorted(self.mapping.source_fields - present):
            message = (
                f"{self.mapping_file.path}: mapped source field {source_field!r} is in no "
                f"record of the first page of {self.source}/{self.stream_name}"
            )
            result.warnings.append(message)
            log.warning(
                "sync.mapping.field_missing",
                connector=self.source,
                stream=self.stream_name,
                field=source_field,
            )


COALESCE_RECORDS = 1000
"""Pages are stored together until they hold this many records (or wait this long):"""
COALESCE_SECONDS = 2.0
"""one transaction per API page of 100 would spend more time committing than storing."""


def coalesce_pages(
    pages: Iterable[Page],
    *,
    records: int = COALESCE_RECORDS,
    seconds: float = COALESCE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Page]:
    """Join consecutive small pages into pages of at least ``records`` records.

    A joined page holds the records, problems and deletions of its pages in order, with the
    last state among them: that state covers every record before it, so committing it with
    all of them keeps a sync crash-safe. A page with deletions ends a joined page (a later
    record with a deleted id must be stored after the deletion, as it came). Pages buffered
    when the reading fails are still yielded, before the error.
    """
    buffer: list[Page] = []
    held = 0
    started = 0.0
    iterator = iter(pages)
    while True:
        try:
            page = next(iterator)
        except StopIteration:
            break
        except BaseException:
            if buffer:
                yield _joined(buffer)
            raise
        if not buffer:
            started = clock()
        buffer.append(page)
        held += len(page.records) + len(page.problems)
        if held >= records or page.deleted or clock() - started >= seconds:
            yield _joined(buffer)
            buffer, held = [], 0
    if buffer:
        yield _joined(buffer)


def _joined(pages: list[Page]) -> Page:
    if len(pages) == 1:
        return pages[0]
    states = [p.state for p in pages if p.state is not None]
    progress = [p.progress for p in pages if p.progress is not None]
    return Page(
        records=[r for p in pages for r in p.records],
        state=states[-1] if states else None,
        deleted=[d for p in pages for d in p.deleted],
        problems=[q for p in pages for q in p.problems],
        progress=progress[-1] if progress else None,
    )


def sync_stream(
    engine: Engine,
    connector: Connector,
    stream: str,
    mapping: MappingFile,
    *,
    full: bool = False,
    dry_run: bool = False,
    region: str | None = None,
    suppressions: SuppressionList | None = None,
    observer: Observer | None = None,
    workers: int = 1,
) -> StreamResult:
    """Sync one stream; see :class:`StreamSync`."""
    return StreamSync(
        engine,
        connector,
        stream,
        mapping,
        region=region,
        suppressions=suppressions,
        observer=observer,
        workers=workers,
    ).run(full=full, dry_run=dry_run)

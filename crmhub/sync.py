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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
import structlog
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from crmhub.connector import Connector, Page
from crmhub.errors import ConnectorError, CrmhubError
from crmhub.mapping import MappingFile, StreamMapping
from crmhub.model import Activity, Person
from crmhub.store import quarantine as quarantine_store
from crmhub.store import records as record_store
from crmhub.store.runs import Counts, add_counts, finish_run, start_run
from crmhub.store.state import load_state, save_state
from crmhub.suppression import SuppressionList

__all__ = ["Observer", "StreamResult", "StreamSync", "content_hash", "sync_stream"]

log = structlog.get_logger("crmhub.sync")

Observer = Callable[[str, dict[str, Any]], None]
"""Called with an event name and details: ``page`` after each commit, ``before_commit``
inside each page's transaction (for progress bars, metrics and fault-injection tests)."""

_DUMPS_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _dumps(raw: Any) -> bytes:
    try:
        return orjson.dumps(raw, option=_DUMPS_OPTIONS)
    except TypeError:  # values orjson cannot encode (Decimal, sets, ...): fall back to text
        return orjson.dumps(raw, option=_DUMPS_OPTIONS, default=str)


def content_hash(fingerprint: str, raw: Any) -> str:
    """The hash that decides whether a record changed: its raw content and the mapping used.

    A changed mapping changes every hash, so the next sync maps every record again.
    """
    digest = hashlib.blake2b(fingerprint.encode(), digest_size=16)
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
class _PagePlan:
    """What one page will change, before it is written."""

    counts: Counts = field(default_factory=Counts)
    upserts: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    stored_ids: list[str] = field(default_factory=list)


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
        self._seen_fields: set[str] = set()
        self._checked_fields = False

    def run(self, *, full: bool = False, dry_run: bool = False) -> StreamResult:
        """Read the stream (incrementally unless ``full``) and store what changed.

        With ``dry_run`` every page is processed and then rolled back: the counts say what
        would happen and nothing is stored.
        """
        mode = "dry-run" if dry_run else ("full" if full else "incremental")
        result = StreamResult(self.source, self.stream_name, mode, status="running")
        with self.engine.begin() as conn:
            state = None if full else load_state(conn, self.source, self.stream_name)
            self._supersede = (
                quarantine_store.open_quarantine_count(conn, self.source, self.stream_name) > 0
            )
            if not dry_run:
                result.run_id = start_run(conn, self.source, self.stream_name, mode, _utcnow())
        bound = log.bind(run_id=result.run_id, connector=self.source, stream=self.stream_name)
        bound.info("sync.stream.started", mode=mode, resume=bool(state and "pass" in state))
        try:
            for page in self.connector.read(self.stream_name, state):
                counts = self._store_page(page, result, dry_run)
                result.counts.add(counts)
                if self.observer:
                    self.observer("page", {"counts": counts, "progress": page.progress,
                                           "result": result})
            result.status = "dry-run" if dry_run else "succeeded"
        except ConnectorError as exc:
            result.status, result.error = "failed", str(exc)
        except CrmhubError as exc:
            result.status, result.error = "failed", str(exc)
        except Exception as exc:  # a connector bug must not lose the run's record
            result.status = "failed"
            result.error = f"unexpected error: {type(exc).__name__}: {exc}"
            bound.exception("sync.stream.crashed")
        if result.run_id is not None:
            with self.engine.begin() as conn:
                finish_run(conn, result.run_id, result.status, _utcnow(), result.error)
        level = "info" if result.ok else "error"
        getattr(bound, level)(
            "sync.stream.finished", status=result.status, error=result.error,
            **result.counts.as_dict(),
        )
        return result

    def _store_page(self, page: Page, result: StreamResult, dry_run: bool) -> Counts:
        now = _utcnow()
        with self.engine.connect() as conn:
            transaction = conn.begin()
            try:
                plan = self._plan(conn, page, now, result)
                self._write(conn, plan, page, now, result.run_id)
                if self.observer:
                    self.observer("before_commit", {"counts": plan.counts, "result": result})
            except BaseException:
                transaction.rollback()
                raise
            if dry_run:
                transaction.rollback()
            else:
                transaction.commit()
        return plan.counts

    def _plan(self, conn: Connection, page: Page, now: datetime, result: StreamResult) -> _PagePlan:
        plan = _PagePlan()
        counts = plan.counts
        counts.read = len(page.records) + len(page.problems)
        primary_key = self.stream.primary_key
        fingerprint = self.mapping_file.fingerprint
        latest: dict[str, tuple[dict[str, Any], str]] = {}
        for raw in page.records:
            external_id = raw.get(primary_key) if isinstance(raw, dict) else None
            if external_id is None or external_id == "" or isinstance(external_id, dict | list):
                self._quarantine(plan, raw, None, [f"missing primary key {primary_key!r}"], now,
                                 result.run_id, content_hash(fingerprint, raw))
                continue
            latest[str(external_id)] = (raw, content_hash(fingerprint, raw))
        if not self._checked_fields and page.records:
            self._check_fields(page.records, result)
        existing = record_store.existing_hashes(
            conn, self.kind, self.source, self.stream_name, list(latest)
        )
        for external_id, (raw, digest) in latest.items():
            before = existing.get(external_id)
            if before is not None and before == (digest, False):
                counts.unchanged += 1
                continue
            mapped = self.mapping.apply(
                raw, source=self.source, stream=self.stream_name, region=self.region
            )
            record = mapped.record
            if record is None:
                self._quarantine(plan, raw, external_id, mapped.problems, now, result.run_id,
                                 digest)
                continue
            if isinstance(record, Person) and self.suppressions.matches(record):
                counts.suppressed += 1
                continue
            if record.external_id != external_id:
                record = record.model_copy(update={"external_id": external_id})
            plan.upserts.append(self._row(record, digest, now))
            plan.stored_ids.append(external_id)
            if record.deleted:
                counts.deleted += 1
            elif before is None:
                counts.inserted += 1
            else:
                counts.updated += 1
        for problem in page.problems:
            digest = hashlib.blake2b(problem.raw.encode(errors="replace"),
                                     digest_size=16).hexdigest()
            plan.quarantined.append(self._quarantine_row(
                None, [problem.reason], problem.raw, problem.location, digest, now,
                result.run_id,
            ))
            counts.quarantined += 1
        plan.deletes = [str(external_id) for external_id in page.deleted]
        return plan

    def _quarantine(self, plan: _PagePlan, raw: Any, external_id: str | None,
                    problems: Sequence[str], now: datetime, run_id: int | None,
                    digest: str) -> None:
        plan.quarantined.append(self._quarantine_row(
            external_id, list(problems), _dumps(raw).decode(), None, digest, now, run_id,
        ))
        plan.counts.quarantined += 1

    def _quarantine_row(self, external_id: str | None, errors: list[str], raw: str,
                        location: str | None, digest: str, now: datetime,
                        run_id: int | None) -> dict[str, Any]:
        return {
            "run_id": run_id, "connector": self.source, "stream": self.stream_name,
            "external_id": external_id, "record_hash": digest, "errors": errors, "raw": raw,
            "location": location, "created_at": now, "last_seen": now,
        }

    def _row(self, record: Person | Activity, digest: str, now: datetime) -> dict[str, Any]:
        row: dict[str, Any] = {
            "connector": self.source,
            "stream": self.stream_name,
            "external_id": record.external_id,
            "data": record.model_dump(mode="json", exclude_none=True),
            "content_hash": digest,
            "first_seen": now,
            "last_seen": now,
            "deleted_at": now if record.deleted else None,
        }
        if isinstance(record, Activity):
            row.update(
                kind=record.kind, occurred_at=record.occurred_at,
                person_stream=record.person_stream, person_external_id=record.person_external_id,
                amount=record.amount, currency=record.currency, status=record.status,
            )
        else:
            row["source_updated_at"] = record.updated_at
        return row

    def _write(self, conn: Connection, plan: _PagePlan, page: Page, now: datetime,
               run_id: int | None) -> None:
        record_store.upsert_records(conn, self.kind, plan.upserts)
        if plan.deletes:
            plan.counts.deleted += record_store.mark_deleted(
                conn, self.kind, self.source, self.stream_name, plan.deletes, now
            )
        quarantine_store.add_to_quarantine(conn, plan.quarantined)
        if self._supersede and plan.stored_ids:
            quarantine_store.supersede(conn, self.source, self.stream_name, plan.stored_ids, now)
        if page.state is not None:
            save_state(conn, self.source, self.stream_name, page.state, run_id=run_id, now=now)
        if run_id is not None:
            add_counts(conn, run_id, plan.counts, now)

    def retry(self, items: Sequence[tuple[int, Any]]) -> Counts:
        """Map quarantined raw records again (after a mapping or data fix).

        Records that now map are stored and their quarantine rows resolved as ``retried``;
        the others keep their rows, with the new reasons. Recorded as a run of mode ``retry``.
        """
        now = _utcnow()
        counts = Counts(read=len(items))
        fingerprint = self.mapping_file.fingerprint
        primary_key = self.stream.primary_key
        rows: list[dict[str, Any]] = []
        resolved: list[int] = []
        with self.engine.begin() as conn:
            run_id = start_run(conn, self.source, self.stream_name, "retry", now)
            existing = record_store.existing_hashes(
                conn, self.kind, self.source, self.stream_name,
                [str(raw.get(primary_key)) for _, raw in items if isinstance(raw, dict)],
            )
            for quarantine_id, raw in items:
                external_id = raw.get(primary_key) if isinstance(raw, dict) else None
                if external_id is None or external_id == "":
                    problems = [f"missing primary key {primary_key!r}"]
                    mapped_record = None
                else:
                    mapped = self.mapping.apply(
                        raw, source=self.source, stream=self.stream_name, region=self.region
                    )
                    mapped_record, problems = mapped.record, mapped.problems
                if mapped_record is None:
                    quarantine_store.update_errors(conn, quarantine_id, problems, now)
                    counts.quarantined += 1
                    continue
                resolved.append(quarantine_id)
                if isinstance(mapped_record, Person) and self.suppressions.matches(mapped_record):
                    counts.suppressed += 1
                    continue
                record = mapped_record.model_copy(update={"external_id": str(external_id)})
                rows.append(self._row(record, content_hash(fingerprint, raw), now))
                if str(external_id) in existing:
                    counts.updated += 1
                else:
                    counts.inserted += 1
            record_store.upsert_records(conn, self.kind, rows)
            quarantine_store.resolve(conn, resolved, "retried", now)
            add_counts(conn, run_id, counts, now)
            finish_run(conn, run_id, "succeeded", now)
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
            message = (f"{self.mapping_file.path}: mapped source field {source_field!r} is in no "
                       f"record of the first page of {self.source}/{self.stream_name}")
            result.warnings.append(message)
            log.warning("sync.mapping.field_missing", connector=self.source,
                        stream=self.stream_name, field=source_field)


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
) -> StreamResult:
    """Sync one stream; see :class:`StreamSync`."""
    return StreamSync(
        engine, connector, stream, mapping, region=region, suppressions=suppressions,
        observer=observer,
    ).run(full=full, dry_run=dry_run)

"""The push path: golden values back to the connected systems, through the outbox.

Two steps, each crash-safe on its own:

1. :func:`plan_pushes` compares, for every source record of a target stream whose customer
   changed (or that was itself seen) since the last plan, the golden values mapped to the
   source's fields (the mapping's ``push`` section) with what the source holds now, and
   queues only the fields that differ, one outbox row per record. Empty golden values never
   blank a source's value; a source's own email or phone stays when it is still one of the
   customer's; suppressed (erased) people are never queued; a consent that would re-subscribe
   someone who opted out in any of the customer's records is never sent (see
   :func:`_withhold_resubscribes`). A queued push that the record no longer needs when it
   is planned again (the person unsubscribed in the system itself before the retry, say) is
   taken back, and a retry (``queued_only``) plans again exactly the records with a queued
   push. The rows and the new watermark are committed together.
2. :func:`deliver_pushes` sends a target's due rows in batches through the connector's
   ``write`` and stores each record's result with its batch: done (and the pushed values'
   hash kept in ``push_state``), retried later with exponential backoff, or failed for good.
   A crash between the call and the commit leaves the rows due, and the retry carries the
   same idempotency key.

The hash in ``push_state`` also recognises our own push when it comes back on the next pull
(see :func:`projection_hash`): the sync engine counts such records as ``echoed``, and the
planner does not push again what the source has not yet echoed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import orjson
import structlog
from sqlalchemy import Text, and_, cast, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from crmhub.connector import Change, Connector
from crmhub.dedupe.survive import EMPTY_VALUES
from crmhub.errors import ConnectorError, RecordError
from crmhub.mapping.stream import StreamMapping
from crmhub.model import CONSENT_CHANNELS, Person
from crmhub.store.dialect import in_chunks, select_by_keys, upsert
from crmhub.store.runs import Counts, add_counts, finish_run, start_run
from crmhub.store.schema import customers, outbox, push_plans, push_state, source_records
from crmhub.suppression import SuppressionList

__all__ = [
    "Delivery",
    "PlanReport",
    "PushTarget",
    "deliver_pushes",
    "failed_pushes",
    "has_push_state",
    "load_json",
    "outbox_summary",
    "plan_pushes",
    "projection_hash",
    "push_fields",
    "pushed_hashes",
]

log = structlog.get_logger("crmhub.push")

_PLAN_CHUNK = 2_000  # source records planned per query
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_ATTEMPTS = 8
"""Tries of one push before it is marked failed for good."""
BACKOFF = timedelta(minutes=1)
"""The wait after a push's first retriable failure; it doubles with each further failure."""
MAX_BACKOFF = timedelta(hours=6)


@dataclass
class Delivery:
    """What one delivery run did: its counts, status (``succeeded`` or ``failed``: the
    system refused a whole batch) and error."""

    run_id: int
    counts: Counts
    status: str
    error: str | None = None


@dataclass(frozen=True)
class PushTarget:
    """One stream of a connector instance that golden values are pushed to."""

    connector: str
    stream: str
    mapping: StreamMapping


@dataclass
class PlanReport:
    """What planning queued for one target."""

    target: str
    stream: str
    considered: int = 0
    queued: int = 0
    unchanged: int = 0
    suppressed: int = 0
    awaiting_echo: int = 0
    invalid: int = 0
    consent_withheld: int = 0
    """Pushed fields left out of changes because they would have re-subscribed someone who
    opted out in one of the customer's records (see :func:`_withhold_resubscribes`)."""
    dropped: int = 0
    """Queued pushes taken back before they went out: the record no longer needs them (it
    now holds the golden values, its customer opted out, or the person was erased)."""
    problems: list[str] = field(default_factory=list)


def projection_hash(fields: Mapping[str, Any]) -> str:
    """A stable hash of a record's pushed fields (sorted, JSON-encoded)."""
    data = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def push_fields(mapping: StreamMapping, canonical: Mapping[str, Any]) -> dict[str, Any]:
    """The source fields the mapping's ``push`` section makes of a canonical dict."""
    return mapping.to_source(canonical)


def _golden_values(golden: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """The customer's surviving values as a canonical dict for one of its source records.

    A list value (emails, phones) is reordered so that the record's own values that are still
    the customer's come first: a push then keeps a source's identity (its email) rather than
    replacing it with another valid one.
    """
    values: dict[str, Any] = {k: v.get("value") for k, v in golden.items() if isinstance(v, dict)}
    for name, value in values.items():
        own = record.get(name)
        if isinstance(value, list) and isinstance(own, list):
            first = [v for v in own if v in value]
            values[name] = first + [v for v in value if v not in first]
    for key in ("source", "stream", "external_id"):
        values[key] = record.get(key)
    return values


def _changed_fields(desired: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The fields to send: desired values that are not empty and differ from the source's.

    A nested value (an address, Mailchimp's ``merge_fields``) is sent whole: the source's
    value with the desired non-empty parts laid over it, at every depth, so that a push never
    blanks part of it.
    """
    out: dict[str, Any] = {}
    for key, value in desired.items():
        if value in EMPTY_VALUES:
            continue
        have = current.get(key)
        if isinstance(value, dict):
            base = have if isinstance(have, dict) else {}
            merged = _overlay(base, value)
            if merged != base:
                out[key] = merged
        elif value != have:
            out[key] = value
    return out


def _overlay(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with the non-empty values of ``top`` laid over it, nested dicts merged."""
    merged = dict(base)
    for key, value in top.items():
        if value in EMPTY_VALUES:
            continue
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[key] = _overlay(below, value)
        else:
            merged[key] = value
    return merged


def _new_key() -> str:
    return uuid.uuid4().hex


def plan_pushes(
    engine: Engine,
    target: PushTarget,
    suppressions: SuppressionList,
    *,
    now: datetime | None = None,
    queued_only: bool = False,
) -> PlanReport:
    """Queue the changed golden values of one target stream (see the module docstring).

    With ``queued_only`` nothing new is queued: only the records with a pending push are
    planned again, so that a retry never sends a change the record no longer needs (the
    person unsubscribed in the system meanwhile, say); the plan's watermark stays.
    """
    now = now or datetime.now(UTC)
    report = PlanReport(target.connector, target.stream)
    r, c, o = source_records.c, customers.c, outbox.c
    with engine.begin() as conn:
        since = conn.execute(
            select(push_plans.c.planned_until).where(
                push_plans.c.target == target.connector, push_plans.c.stream == target.stream
            )
        ).scalar_one_or_none()
        since = _aware(since) if since is not None else _EPOCH
        after = 0
        while True:
            rows = conn.execute(
                select(r.id, r.external_id, r.data, r.last_seen, c.id, c.data)
                .join(customers, c.id == r.customer_id)
                .where(
                    r.connector == target.connector,
                    r.stream == target.stream,
                    r.deleted_at.is_(None),
                    c.merged_into.is_(None),
                    r.external_id.in_(
                        select(o.external_id).where(
                            o.target == target.connector,
                            o.stream == target.stream,
                            o.status == "pending",
                        )
                    )
                    if queued_only
                    else or_(c.updated_at >= since, r.last_seen >= since),
                    r.id > after,
                )
                .order_by(r.id)
                .limit(_PLAN_CHUNK)
            ).all()
            if not rows:
                break
            after = rows[-1][0]
            _plan_chunk(conn, target, suppressions, rows, report, now)
        if not queued_only:
            upsert(
                conn,
                push_plans,
                [{"target": target.connector, "stream": target.stream, "planned_until": now}],
                keys=("target", "stream"),
                update=("planned_until",),
            )
    if report.queued or report.invalid or report.consent_withheld or report.dropped:
        log.info(
            "push.planned",
            target=target.connector,
            stream=target.stream,
            queued=report.queued,
            invalid=report.invalid,
            suppressed=report.suppressed,
            consent_withheld=report.consent_withheld,
            dropped=report.dropped,
        )
    return report


def _plan_chunk(
    conn: Connection,
    target: PushTarget,
    suppressions: SuppressionList,
    rows: Sequence[Any],
    report: PlanReport,
    now: datetime,
) -> None:
    ids = [row[1] for row in rows]
    where = {"target": target.connector, "stream": target.stream}
    p = push_state.c
    pushed = {
        ext: (digest, _aware(at))
        for chunk in in_chunks(ids)
        for ext, digest, at in conn.execute(
            select(p.external_id, p.last_hash, p.pushed_at).where(
                p.target == target.connector, p.stream == target.stream, p.external_id.in_(chunk)
            )
        )
    }
    queued = {
        ext: (row_id, key, digest)
        for row_id, ext, key, digest in select_by_keys(
            conn,
            outbox,
            ("id", "external_id", "idempotency_key", "projection_hash"),
            {**where, "status": "pending"},
            "external_id",
            ids,
        )
    }
    denials: dict[str, set[str]] | None = None

    def denied_of(customer_id: str) -> set[str]:
        # Read once per chunk, and only when a change touches consent at all.
        nonlocal denials
        if denials is None:
            denials = _denied_channels(conn, {row[4] for row in rows})
        return denials.get(customer_id, set())

    def take_back(external_id: str) -> None:
        # A queued push planned before what is known now must not go out either.
        waiting = queued.pop(external_id, None)
        if waiting is not None:
            conn.execute(delete(outbox).where(outbox.c.id == waiting[0]))
            report.dropped += 1

    fresh: list[dict[str, Any]] = []
    for _rid, external_id, data, last_seen, customer_id, golden in rows:
        report.considered += 1
        record = load_json(data)
        values = _golden_values(load_json(golden), record)
        try:
            desired = push_fields(target.mapping, values)
            current = push_fields(target.mapping, record)
        except RecordError as exc:
            report.invalid += 1
            report.problems.extend(exc.problems[:3])
            continue
        changed = _changed_fields(desired, current)
        if changed:
            changed, withheld = _withhold_resubscribes(
                target.mapping, values, desired, current, changed, partial(denied_of, customer_id)
            )
            report.consent_withheld += withheld
        if not changed:
            report.unchanged += 1
            take_back(external_id)
            continue
        if suppressions and _suppressed(suppressions, values, record):
            report.suppressed += 1
            take_back(external_id)
            continue
        digest = projection_hash({**current, **changed})
        before = pushed.get(external_id)
        if before and before[0] == digest and before[1] >= _aware(last_seen):
            report.awaiting_echo += 1  # pushed already; the source has not been read since
            continue
        waiting = queued.get(external_id)
        if waiting is not None:
            if waiting[2] == digest:
                continue  # the same push is already queued
            conn.execute(
                update(outbox)
                .where(outbox.c.id == waiting[0])
                .values(
                    fields=changed,
                    projection_hash=digest,
                    idempotency_key=_new_key(),  # another body: another key
                    customer_id=customer_id,
                    updated_at=now,
                )
            )
            report.queued += 1
            continue
        fresh.append(
            {
                "target": target.connector,
                "stream": target.stream,
                "external_id": external_id,
                "customer_id": customer_id,
                "operation": "update",
                "fields": changed,
                "idempotency_key": _new_key(),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": None,
                "last_error": None,
                "created_at": now,
                "updated_at": now,
                "projection_hash": digest,
            }
        )
    if fresh:
        conn.execute(insert(outbox), fresh)
        report.queued += len(fresh)


def _withhold_resubscribes(
    mapping: StreamMapping,
    values: Mapping[str, Any],
    desired: Mapping[str, Any],
    current: Mapping[str, Any],
    changed: dict[str, Any],
    denied_channels: Callable[[], set[str]],
) -> tuple[dict[str, Any], int]:
    """``changed`` without the fields that would re-subscribe someone, and how many fields
    were left out.

    Why: an opt-out anywhere is final for the hub ("most restrictive wins"). The golden
    consent already says "denied" when any member record does, but a steward override (or a
    rule configured otherwise) can make it "granted"; pushing that would subscribe, in the
    target, a person who unsubscribed in another system. So, for every channel that a member
    record of the customer denies and the golden value does not, the target fields that
    derive from that channel's consent are left out of the change: never sent, never a
    failure (the source keeps what it has). Which fields derive from a channel is found by
    projecting the golden values again with the channel set to "denied": whatever differs
    (``status: subscribed`` against ``unsubscribed`` for Mailchimp) comes from it, whatever
    the mapping calls it. Member records are read only when a change touches consent.
    """
    consent = values.get("consent")
    consent = consent if isinstance(consent, dict) else {}

    def status(channel: str) -> Any:
        entry = consent.get(channel)
        return entry.get("status") if isinstance(entry, dict) else None

    def safe(channels: set[str]) -> dict[str, Any]:
        denying = {channel: {"status": "denied"} for channel in channels}
        probe = {**values, "consent": {**consent, **denying}}
        try:
            opted_out = push_fields(mapping, probe)
        except RecordError:
            return {}  # which fields carry consent is unknown: send nothing of this record
        return _changed_fields(_unlike(desired, opted_out), current)

    at_risk = {channel for channel in CONSENT_CHANNELS if status(channel) != "denied"}
    if not at_risk or safe(at_risk) == changed:
        return changed, 0  # the change carries no consent (most pushes): nothing to check
    denied = at_risk & denied_channels()
    if not denied:
        return changed, 0
    kept = safe(denied)
    return kept, sum(1 for key, value in changed.items() if kept.get(key) != value)


def _unlike(desired: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """``desired`` with every value that differs from ``other``'s emptied (nested dicts part
    by part), so that :func:`_changed_fields` leaves it out."""
    out: dict[str, Any] = {}
    for key, value in desired.items():
        theirs = other.get(key)
        if isinstance(value, dict) and isinstance(theirs, dict):
            out[key] = _unlike(value, theirs)
        else:
            out[key] = value if value == theirs else None
    return out


def _denied_channels(conn: Connection, customer_ids: set[str]) -> dict[str, set[str]]:
    """Per customer, the consent channels that any of its source records says "denied" for
    (records deleted in their source too, while they are still linked: deleting a record
    does not undo its opt-out)."""
    r = source_records.c
    found: dict[str, set[str]] = {}
    for chunk in in_chunks(sorted(customer_ids)):
        rows = conn.execute(
            select(r.customer_id, r.data).where(
                r.customer_id.in_(chunk),
                # Only records that can hold a denial are read (and parsed).
                cast(r.data, Text).like('%"denied"%'),
            )
        )
        for customer_id, data in rows:
            consent = load_json(data).get("consent")
            if not isinstance(consent, dict):
                continue
            for channel, entry in consent.items():
                if isinstance(entry, dict) and entry.get("status") == "denied":
                    found.setdefault(customer_id, set()).add(channel)
    return found


def _suppressed(
    suppressions: SuppressionList, values: Mapping[str, Any], record: Mapping[str, Any]
) -> bool:
    """Whether the customer or the record carries a suppressed identifier."""
    people = [
        Person.model_construct(
            source=str(record.get("source") or ""),
            stream=str(record.get("stream") or ""),
            external_id=str(record.get("external_id") or ""),
            emails=list(data.get("emails") or []),
            phones=list(data.get("phones") or []),
        )
        for data in (values, record)
    ]
    return bool(suppressions.suppressed(people))


def load_json(value: Any) -> dict[str, Any]:
    """A JSON object column's value as a dict (drivers give text or the parsed object)."""
    if isinstance(value, str | bytes):
        # str() of a str subclass (the store's RawJson) is a plain str, which orjson takes.
        loaded: dict[str, Any] = orjson.loads(value if isinstance(value, bytes) else str(value))
        return loaded
    return dict(value or {})


def has_push_state(conn: Connection, target: str, stream: str) -> bool:
    """Whether the hub ever pushed to this target stream (so pulls may bring echoes)."""
    found = conn.execute(
        select(push_state.c.external_id)
        .where(push_state.c.target == target, push_state.c.stream == stream)
        .limit(1)
    ).first()
    return found is not None


def pushed_hashes(
    conn: Connection, target: str, stream: str, external_ids: Sequence[str]
) -> dict[str, str]:
    """The last pushed projection hash of these records, by external id."""
    rows = select_by_keys(
        conn,
        push_state,
        ("external_id", "last_hash"),
        {"target": target, "stream": stream},
        "external_id",
        external_ids,
    )
    return dict(rows)


def _aware(value: datetime) -> datetime:
    """SQLite gives timestamps back without their zone; they were stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _backoff(attempts: int) -> timedelta:
    """The wait before try ``attempts + 1``: BACKOFF doubled per failure, capped."""
    return min(BACKOFF * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


def deliver_pushes(
    engine: Engine,
    connector: Connector,
    stream: str,
    *,
    now: datetime | None = None,
    batch_size: int = 100,
    limit: int | None = None,
) -> Delivery:
    """Send the due outbox rows of one target stream; see the module docstring.

    Returns:
        The run: counts (``pushed``, ``push_failed``, ``retries``) and status; it is recorded
        in ``sync_runs`` with mode ``push``.
    """
    now = now or datetime.now(UTC)
    target = connector.instance_name
    total = Counts()
    with engine.begin() as conn:
        run_id = start_run(conn, target, stream, "push", now)
    status, error = "succeeded", None
    retries_before = connector.retries
    sent = 0
    try:
        for batch in _due_batches(engine, target, stream, now, batch_size):
            if limit is not None and sent >= limit:
                break
            counts, refused = _deliver_batch(engine, connector, stream, batch, run_id, now)
            sent += len(batch)
            total.add(counts)
            if refused:
                # The system refused a whole batch: the rest waits for a later run.
                status, error = "failed", refused
                break
    finally:
        retries = connector.retries - retries_before
        total.retries += retries
        with engine.begin() as conn:
            if retries:
                add_counts(conn, run_id, Counts(retries=retries), now)
            finish_run(conn, run_id, status, datetime.now(UTC), error)
    return Delivery(run_id, total, status, error)


@dataclass(frozen=True)
class _Due:
    id: int
    external_id: str | None
    customer_id: str | None
    fields: dict[str, Any]
    key: str
    attempts: int
    digest: str | None


def _due_batches(
    engine: Engine, target: str, stream: str, now: datetime, size: int
) -> Iterator[list[_Due]]:
    """Due rows in id order, a batch at a time (each batch read after the last committed)."""
    o = outbox.c
    after = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    o.id,
                    o.external_id,
                    o.customer_id,
                    o.fields,
                    o.idempotency_key,
                    o.attempts,
                    o.projection_hash,
                )
                .where(
                    o.target == target,
                    o.stream == stream,
                    o.status == "pending",
                    or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now),
                    o.id > after,
                )
                .order_by(o.id)
                .limit(size)
            ).all()
        if not rows:
            return
        after = rows[-1][0]
        yield [_Due(*row) for row in rows]


def _deliver_batch(
    engine: Engine,
    connector: Connector,
    stream: str,
    batch: list[_Due],
    run_id: int,
    now: datetime,
) -> tuple[Counts, str | None]:
    """Push one batch and store each row's result; also returns the error of a batch the
    system refused as a whole (None when it answered record by record)."""
    changes = [
        Change(row.external_id, row.fields, row.key, customer_id=row.customer_id) for row in batch
    ]
    by_key = {row.key: row for row in batch}
    outcomes: dict[str, tuple[bool, str | None, bool]] = {}
    refused: str | None = None
    try:
        for result in connector.write(stream, changes):
            outcomes[result.idempotency_key] = (result.ok, result.error, result.retriable)
    except ConnectorError as exc:
        # The system refused the batch (auth, outage after retries): every row not yet
        # answered is retried on a later run.
        refused = str(exc)
        for row in batch:
            outcomes.setdefault(row.key, (False, refused, True))
    counts = Counts()
    o = outbox.c
    with engine.begin() as conn:
        done_state: list[dict[str, Any]] = []
        for key, row in by_key.items():
            ok, error, retriable = outcomes.get(key, (False, "the connector gave no result", True))
            attempts = row.attempts + 1
            if ok:
                counts.pushed += 1
                conn.execute(
                    update(outbox)
                    .where(o.id == row.id)
                    .values(status="done", attempts=attempts, last_error=None, updated_at=now)
                )
                if row.external_id is not None and row.digest is not None:
                    done_state.append(
                        {
                            "target": connector.instance_name,
                            "stream": stream,
                            "external_id": row.external_id,
                            "last_hash": row.digest,
                            "pushed_at": now,
                        }
                    )
                continue
            counts.push_failed += 1
            final = not retriable or attempts >= MAX_ATTEMPTS
            conn.execute(
                update(outbox)
                .where(o.id == row.id)
                .values(
                    status="failed" if final else "pending",
                    attempts=attempts,
                    next_attempt_at=None if final else now + _backoff(attempts),
                    last_error=(error or "push failed")[:2000],
                    updated_at=now,
                )
            )
        upsert(
            conn,
            push_state,
            done_state,
            keys=("target", "stream", "external_id"),
            update=("last_hash", "pushed_at"),
        )
        add_counts(conn, run_id, counts, now)
    return counts, refused


def outbox_summary(conn: Connection, target: str | None = None) -> dict[str, int]:
    """Outbox rows by status (``pending``, ``failed``, ``done``), for one target or all."""
    o = outbox.c
    query = select(o.status, func.count()).group_by(o.status)
    if target:
        query = query.where(o.target == target)
    return {status: int(count) for status, count in conn.execute(query)}


def failed_pushes(
    conn: Connection, target: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Pushes that failed for good or are waiting to be retried, newest first: target,
    stream, external id, attempts, next attempt, last error (no field values: they are
    personal data)."""
    o = outbox.c
    query = (
        select(
            o.id,
            o.target,
            o.stream,
            o.external_id,
            o.customer_id,
            o.status,
            o.attempts,
            o.next_attempt_at,
            o.last_error,
            o.updated_at,
        )
        .where(or_(o.status == "failed", and_(o.status == "pending", o.attempts > 0)))
        .order_by(o.updated_at.desc(), o.id.desc())
        .limit(limit)
    )
    if target:
        query = query.where(o.target == target)
    return [dict(row._mapping) for row in conn.execute(query)]

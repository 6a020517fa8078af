"""Erasure in the hub: a subject's records and everything that hangs off them, in one
transaction, then a clean-up that leaves no copy in the database files.

:func:`erase_records` is the deletion itself, for any set of source records (an erasure
request, a retention rule): their activities, quarantine rows, queued pushes, push state,
match pairs, blocking keys and links go with them; a golden record left without members goes
with its overrides and the ids once merged into it; a golden record that keeps members is
built again from them (and split, when the erased record was what held them together), so
nobody else's record keeps a value of the erased person.

:func:`secure_cleanup` runs after the commit. On SQLite every connection has ``secure_delete``
on (see :mod:`crmhub.store.engine`), so freed space is zeroed as it is freed; the WAL still
holds the pages as they were before the erasure until a checkpoint copies it back and
truncates it. PostgreSQL keeps dead row versions until vacuum reclaims their space, which
this does not force (``VACUUM FULL`` of the tables, or a scheduled vacuum, does).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import orjson
import structlog
from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.engine import Connection, Engine

from crmhub.privacy.subject import merged_into
from crmhub.resolution.resolver import Resolver
from crmhub.store.dialect import in_chunks
from crmhub.store.engine import is_sqlite
from crmhub.store.schema import (
    activities,
    customers,
    links,
    match_keys,
    match_pairs,
    outbox,
    overrides,
    push_state,
    quarantine,
    source_records,
    sync_state,
)

__all__ = [
    "CleanupResult",
    "ErasureCounts",
    "drop_overrides_mentioning",
    "erase_records",
    "secure_cleanup",
]

log = structlog.get_logger("crmhub.privacy")

_t = source_records.c
_KEY_CHUNK = 500  # (connector, stream, external id) triples per IN list


@dataclass
class ErasureCounts:
    """What an erasure removed from the hub (and the golden records it rebuilt)."""

    source_records: int = 0
    activities: int = 0
    quarantine: int = 0
    outbox: int = 0
    push_state: int = 0
    match_pairs: int = 0
    match_keys: int = 0
    links: int = 0
    overrides: int = 0
    customers: int = 0
    customers_rebuilt: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name."""
        return asdict(self)

    def add(self, other: ErasureCounts) -> None:
        """Add ``other``'s counts to these."""
        for name, value in other.as_dict().items():
            setattr(self, name, getattr(self, name) + value)


def erase_records(
    conn: Connection,
    record_ids: Sequence[int],
    *,
    now: datetime,
    resolver: Resolver,
    quarantine_ids: Iterable[int] = (),
    customer_ids: Iterable[str] = (),
) -> ErasureCounts:
    """Delete source records and everything that hangs off them, in the caller's transaction
    (which holds the hub's write lock).

    Args:
        record_ids: the source records to delete.
        resolver: rebuilds the golden records that keep members.
        quarantine_ids: further quarantine rows to delete (found by their raw text).
        customer_ids: further customers to treat as touched (ids merged into the subject's).
    """
    counts = ErasureCounts()
    ids = sorted(set(record_ids))
    rows: list[Any] = []
    for chunk in in_chunks(ids):
        rows += conn.execute(
            select(_t.id, _t.connector, _t.stream, _t.external_id, _t.customer_id).where(
                _t.id.in_(chunk)
            )
        ).all()
    touched = {row.customer_id for row in rows if row.customer_id} | set(customer_ids)
    records = sorted({(r.connector, r.stream, r.external_id) for r in rows})
    people = sorted({(r.connector, r.external_id) for r in rows})

    a = activities.c
    for person_chunk in in_chunks(people, _KEY_CHUNK):
        counts.activities += _deleted(
            conn,
            delete(activities).where(tuple_(a.connector, a.person_external_id).in_(person_chunk)),
        )
    q = quarantine.c
    wanted_quarantine = set(quarantine_ids)
    for record_chunk in in_chunks(records, _KEY_CHUNK):
        wanted_quarantine.update(
            conn.execute(
                select(q.id).where(tuple_(q.connector, q.stream, q.external_id).in_(record_chunk))
            ).scalars()
        )
    for qchunk in in_chunks(sorted(wanted_quarantine)):
        counts.quarantine += _deleted(conn, delete(quarantine).where(q.id.in_(qchunk)))
    o, p = outbox.c, push_state.c
    for record_chunk in in_chunks(records, _KEY_CHUNK):
        counts.outbox += _deleted(
            conn,
            delete(outbox).where(tuple_(o.target, o.stream, o.external_id).in_(record_chunk)),
        )
        counts.push_state += _deleted(
            conn,
            delete(push_state).where(tuple_(p.target, p.stream, p.external_id).in_(record_chunk)),
        )
    m, k, lk = match_pairs.c, match_keys.c, links.c
    for chunk in in_chunks(ids):
        counts.match_pairs += _deleted(
            conn, delete(match_pairs).where(m.left_id.in_(chunk) | m.right_id.in_(chunk))
        )
        counts.match_keys += _deleted(conn, delete(match_keys).where(k.source_record_id.in_(chunk)))
        counts.links += _deleted(conn, delete(links).where(lk.source_record_id.in_(chunk)))
        counts.source_records += _deleted(conn, delete(source_records).where(_t.id.in_(chunk)))
    _settle_touched(conn, sorted(touched), now, resolver, counts)
    for connector in sorted({r.connector for r in rows}):
        _scrub_state(conn, connector, {r.external_id for r in rows if r.connector == connector})
    return counts


def _scrub_state(conn: Connection, connector: str, external_ids: set[str]) -> None:
    """Take erased external ids out of the connector's stream cursors: some keep the ids
    read at the cursor's last timestamp (to skip them on the next read), which would leave
    the erased person's id in the hub. Without them, the next read may fetch such a record
    once more, where suppression drops it."""
    s = sync_state.c
    rows = conn.execute(select(s.stream, s.state).where(s.connector == connector)).all()
    for stream, state in rows:
        scrubbed = _without(state, external_ids)
        if scrubbed != state:
            conn.execute(
                update(sync_state)
                .where(s.connector == connector, s.stream == stream)
                .values(state=scrubbed)
            )


def _without(value: Any, external_ids: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, external_ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_without(v, external_ids) for v in value if v not in external_ids]
    return None if isinstance(value, str) and value in external_ids else value


def _settle_touched(
    conn: Connection,
    touched: Sequence[str],
    now: datetime,
    resolver: Resolver,
    counts: ErasureCounts,
) -> None:
    """Remove the touched golden records left without members (and the ids merged into
    them); build the others again from the members they keep."""
    c, o = customers.c, overrides.c
    for customer_id in touched:
        exists = conn.execute(select(c.merged_into).where(c.id == customer_id)).one_or_none()
        if exists is None:
            continue
        members = list(conn.execute(select(_t.id).where(_t.customer_id == customer_id)).scalars())
        if exists.merged_into is not None:
            # A redirect (an id merged into another): it holds the golden values of the day
            # it was merged, which may be the erased person's; a redirect needs none.
            conn.execute(
                update(customers)
                .where(c.id == customer_id)
                .values(data={}, traits={}, search_text=None)
            )
            continue
        if members:
            live = [
                rid
                for rid in members
                if conn.execute(select(_t.deleted_at).where(_t.id == rid)).scalar_one() is None
            ]
            outboxed = _deleted(conn, delete(outbox).where(outbox.c.customer_id == customer_id))
            counts.outbox += outboxed
            if live:
                resolver.settle_group(conn, live, now=now, prefer=[customer_id])
            counts.customers_rebuilt += 1
            continue
        counts.outbox += _deleted(conn, delete(outbox).where(outbox.c.customer_id == customer_id))
        counts.overrides += _deleted(conn, delete(overrides).where(o.customer_id == customer_id))
        merged = merged_into(conn, [customer_id])
        for chunk in in_chunks(merged):
            conn.execute(delete(overrides).where(o.customer_id.in_(chunk)))
            counts.customers += _deleted(conn, delete(customers).where(c.id.in_(chunk)))
        counts.customers += _deleted(conn, delete(customers).where(c.id == customer_id))


def drop_overrides_mentioning(
    conn: Connection, customer_ids: Sequence[str], words: Sequence[str]
) -> int:
    """Delete the steward overrides of these customers whose value holds one of ``words``
    (the erased person's names, emails, phones): a golden record that keeps other members
    must not keep a value a steward copied from the erased person. Returns how many."""
    o = overrides.c
    lowered = [w.lower() for w in words if len(w) >= 2]
    doomed: list[int] = []
    for chunk in in_chunks(list(customer_ids)):
        for override_id, value in conn.execute(
            select(o.id, o.value).where(o.customer_id.in_(chunk))
        ):
            text = orjson.dumps(value).decode().lower()
            if any(word in text for word in lowered):
                doomed.append(override_id)
    for id_chunk in in_chunks(doomed):
        conn.execute(delete(overrides).where(o.id.in_(id_chunk)))
    return len(doomed)


def _deleted(conn: Connection, statement: object) -> int:
    result = conn.execute(statement)  # type: ignore[call-overload]
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class CleanupResult:
    """What the secure clean-up did: whether the WAL was emptied, and if not, why."""

    done: bool
    detail: str


def secure_cleanup(engine: Engine, *, attempts: int = 20, pause: float = 0.1) -> CleanupResult:
    """Checkpoint the SQLite WAL into the database and truncate it to nothing, so the pages
    as they were before an erasure are in no file. A reader holding an old snapshot (a web
    request in flight) blocks the truncation; it is tried again for a few seconds.

    On PostgreSQL this does nothing (see the module docstring)."""
    if not is_sqlite(engine):
        return CleanupResult(True, "postgresql: dead row versions are reclaimed by vacuum")
    for _ in range(attempts):
        with engine.connect() as conn:
            busy, log_frames, checkpointed = conn.exec_driver_sql(
                "PRAGMA wal_checkpoint(TRUNCATE)"
            ).one()
        if busy == 0 and (log_frames in (0, -1) or log_frames == checkpointed):
            return CleanupResult(True, "write-ahead log checkpointed and truncated")
        time.sleep(pause)
    log.warning("privacy.cleanup_incomplete")
    return CleanupResult(False, "a reader kept the write-ahead log from being truncated")

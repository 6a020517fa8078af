"""Reading the hub's person records for matching, and marking them matched.

A record waits for matching while the content hash it was last matched with differs from its
current one (new or changed), or while it is deleted in its source but not yet settled as
such. Settling writes :data:`DELETED` as a deleted record's matched hash, so a record that
comes back to life is matched again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Connection

from crmhub.dedupe.survive import Member
from crmhub.model import Person
from crmhub.store.dialect import in_chunks
from crmhub.store.schema import source_records

__all__ = [
    "DELETED",
    "HubRecord",
    "count_live",
    "load_records",
    "mark_matched",
    "pending_ids",
    "persons",
]

DELETED = "deleted"
"""The matched hash of a record settled as deleted in its source."""

_t = source_records.c
_PENDING = or_(
    and_(
        _t.deleted_at.is_(None), or_(_t.matched_hash.is_(None), _t.matched_hash != _t.content_hash)
    ),
    and_(_t.deleted_at.is_not(None), or_(_t.matched_hash.is_(None), _t.matched_hash != DELETED)),
)


@dataclass(frozen=True)
class HubRecord:
    """One person source record, as matching and survivorship need it."""

    id: int
    connector: str
    data: dict[str, Any]
    updated_at: datetime | None
    customer_id: str | None
    content_hash: str
    deleted: bool

    def member(self) -> Member:
        """The record as a member of a golden record."""
        return Member(self.id, self.connector, self.data, self.updated_at)


_COLUMNS = (
    _t.id,
    _t.connector,
    _t.data,
    _t.source_updated_at,
    _t.customer_id,
    _t.content_hash,
    _t.deleted_at,
)


def _record(row: Any) -> HubRecord:
    return HubRecord(
        id=row[0],
        connector=row[1],
        data=row[2],
        updated_at=row[3],
        customer_id=row[4],
        content_hash=row[5],
        deleted=row[6] is not None,
    )


def load_records(conn: Connection, ids: Iterable[int] | None = None) -> dict[int, HubRecord]:
    """The records with these ids (every person record when None), by id."""
    if ids is None:
        rows = conn.execute(select(*_COLUMNS).order_by(_t.id))
        return {record.id: record for record in map(_record, rows)}
    found: dict[int, HubRecord] = {}
    for chunk in in_chunks(sorted(set(ids))):
        for row in conn.execute(select(*_COLUMNS).where(_t.id.in_(chunk))):
            record = _record(row)
            found[record.id] = record
    return found


def pending_ids(conn: Connection, limit: int | None = None) -> list[int]:
    """Ids of records waiting for matching, oldest first."""
    query = select(_t.id).where(_PENDING).order_by(_t.id)
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query).scalars())


def count_live(conn: Connection) -> int:
    """How many person records are not deleted."""
    return int(conn.execute(select(func.count()).where(_t.deleted_at.is_(None))).scalar_one())


def persons(records: Sequence[HubRecord]) -> list[tuple[int, Person]]:
    """``(id, Person)`` for live records, in the given order.

    Stored data was validated on the way in; validation runs again here because matching
    needs the typed model (dates, nested address), and a record stored by an older version
    that no longer validates is left out of matching rather than stopping it.
    """
    out: list[tuple[int, Person]] = []
    for record in records:
        if record.deleted:
            continue
        try:
            out.append((record.id, Person.model_validate(record.data)))
        except ValueError:
            continue
    return out


def mark_matched(
    conn: Connection, records: Sequence[HubRecord], customer_of: dict[int, str | None]
) -> None:
    """Point records at their customers and remember the hash they were matched with."""
    rows = [
        {
            "rid": record.id,
            "customer": customer_of.get(record.id),
            "matched": DELETED if record.deleted else record.content_hash,
        }
        for record in records
    ]
    if not rows:
        return
    conn.execute(
        update(source_records)
        .where(_t.id == bindparam("rid"))
        .values(customer_id=bindparam("customer"), matched_hash=bindparam("matched")),
        rows,
    )

"""Retention (GDPR storage limitation): data kept no longer than the ``[retention]`` rules say.

Each rule names a data category and an age (``"30d"``, ``"18m"``)::

    [retention]
    quarantine = "30d"            # quarantined raw records, by when they were quarantined
    activities = "36m"            # interactions, by when they occurred
    outbox = "90d"                # pushes done or failed for good, by their last update
    runs = "12m"                  # finished sync runs (the run a stream's state names stays)
    inactive_customers = "24m"    # golden records with no member seen and no interaction since

:func:`retention_report` is the dry run: per category, how many rows are past their age and
the oldest date among them; nothing changes. :func:`apply_retention` removes them, each
category in its own transaction under the hub's write lock, in chunks, and appends one audit
event per category (the category, its age, the cutoff and the count: never personal data).
Only configured categories run; without a ``[retention]`` section nothing happens.

An inactive customer goes with everything about it, through the same deletion an erasure
uses (:func:`crmhub.privacy.erasure.erase_records`), but without a suppression entry: the
person comes back if a system sends them again. "Inactive" means that none of their records
changed in its system (``last_seen``: when the hub last stored a new version of it; a re-read
of an unchanged record stores nothing) and none of their interactions occurred since the
cutoff. A full re-sync from a system that still holds such a person brings them back as new:
that system's own retention governs its copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Table, and_, delete, exists, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from crmhub import audit
from crmhub.config import RETENTION_CATEGORIES, parse_age
from crmhub.privacy.erasure import erase_records, secure_cleanup
from crmhub.privacy.requests import add_months
from crmhub.privacy.subject import merged_into
from crmhub.store.dialect import in_chunks, lock_hub
from crmhub.store.schema import (
    activities,
    customers,
    outbox,
    overrides,
    quarantine,
    source_records,
    sync_runs,
    sync_state,
)

if TYPE_CHECKING:
    from crmhub.hub import Hub

__all__ = [
    "AUDIT_ACTION",
    "CategoryReport",
    "RetentionReport",
    "apply_retention",
    "cutoff_for",
    "retention_report",
]

AUDIT_ACTION = "retention.applied"


@dataclass(frozen=True)
class CategoryReport:
    """One category: what is past its age (dry run), or what was removed (applied)."""

    category: str
    age: str
    """The configured age, e.g. ``"30d"``."""
    cutoff: datetime
    """Rows dated before this are past their age."""
    count: int
    """Rows (customers, for ``inactive_customers``) that would go, or went."""
    oldest: datetime | None
    """The oldest date among them (for inactive customers: the oldest last activity)."""
    details: dict[str, int] = field(default_factory=dict)
    """Further counts: for inactive customers, their source records, and once applied what
    the erasure removed per table."""
    audit_event: int | None = None
    """The id of the audit event, once applied."""

    def as_dict(self) -> dict[str, Any]:
        """Plain values, dates as ISO text (for JSON)."""
        return {
            "category": self.category,
            "age": self.age,
            "cutoff": self.cutoff.isoformat(),
            "count": self.count,
            "oldest": self.oldest.isoformat() if self.oldest else None,
            "details": dict(self.details),
            "audit_event": self.audit_event,
        }


@dataclass(frozen=True)
class RetentionReport:
    """Per configured category, in the order they are applied."""

    now: datetime
    applied: bool
    categories: tuple[CategoryReport, ...] = ()

    @property
    def total(self) -> int:
        """Rows that would go, or went, over every category."""
        return sum(category.count for category in self.categories)

    def category(self, name: str) -> CategoryReport | None:
        """The report of one category, or None when it has no rule."""
        return next((c for c in self.categories if c.category == name), None)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, dates as ISO text (for JSON)."""
        return {
            "now": self.now.isoformat(),
            "applied": self.applied,
            "total": self.total,
            "categories": [category.as_dict() for category in self.categories],
        }


def cutoff_for(age: str, now: datetime) -> datetime:
    """The moment ``age`` before ``now``: days exactly, months by the calendar (the 31st
    of a month becomes the last day of a shorter one)."""
    amount, unit = parse_age(age)
    now = _utc(now)
    if unit == "days":
        return now - timedelta(days=amount)
    return add_months(now, -amount)


def retention_report(hub: Hub, now: datetime | None = None) -> RetentionReport:
    """What the configured rules would remove now; nothing changes."""
    now = _utc(now or datetime.now(UTC))
    reports = []
    with hub.engine.connect() as conn:
        for category, age in hub.config.retention.rules().items():
            cutoff = cutoff_for(age, now)
            if category == "inactive_customers":
                found = _inactive_customers(conn, cutoff)
                records = _member_records(conn, [c for c, _ in found])
                oldest = min((when for _, when in found), default=None)
                reports.append(
                    CategoryReport(
                        category,
                        age,
                        cutoff,
                        len(found),
                        oldest,
                        details={"source_records": len(records)},
                    )
                )
                continue
            rule = _RULES[category]
            count, oldest = conn.execute(
                select(func.count(), func.min(rule.dated)).where(*rule.where(cutoff))
            ).one()
            reports.append(
                CategoryReport(category, age, cutoff, int(count), _utc(oldest) if oldest else None)
            )
    return RetentionReport(now=now, applied=False, categories=tuple(reports))


def apply_retention(hub: Hub, actor: str, now: datetime | None = None) -> RetentionReport:
    """Remove what the configured rules say is past its age, and audit it.

    Each category is one transaction under the hub's write lock: it finds its rows again
    there, removes them in chunks and appends one ``retention.applied`` event (category,
    age, cutoff, count). A category that fails leaves the ones before it applied.
    """
    now = _utc(now or datetime.now(UTC))
    reports = []
    for category, age in hub.config.retention.rules().items():
        cutoff = cutoff_for(age, now)
        with hub.engine.begin() as conn:
            lock_hub(conn)
            if category == "inactive_customers":
                count, oldest, details = _remove_inactive_customers(conn, hub, cutoff, now)
            else:
                count, oldest = _remove(conn, _RULES[category], cutoff)
                details = {}
            event_details: dict[str, Any] = {
                "category": category,
                "age": age,
                "removed": count,
                "cutoff": cutoff.isoformat(),
            }
            if details:
                event_details["counts"] = details
            event_id = audit.append(conn, actor, AUDIT_ACTION, details=event_details)
        reports.append(CategoryReport(category, age, cutoff, count, oldest, details, event_id))
    if any(report.count for report in reports):
        # Deleted personal data must not linger in the WAL either (as after an erasure).
        secure_cleanup(hub.engine)
    return RetentionReport(now=now, applied=True, categories=tuple(reports))


@dataclass(frozen=True)
class _Rule:
    """A category whose rows go by one date column."""

    table: Table
    dated: Column[Any]
    extra: tuple[ColumnElement[bool], ...] = ()

    def where(self, cutoff: datetime) -> list[ColumnElement[bool]]:
        return [self.dated.is_not(None), self.dated < cutoff, *self.extra]


_RULES: dict[str, _Rule] = {
    "quarantine": _Rule(quarantine, quarantine.c.created_at),
    "activities": _Rule(activities, activities.c.occurred_at),
    "outbox": _Rule(outbox, outbox.c.updated_at, (outbox.c.status.in_(("done", "failed")),)),
    "runs": _Rule(
        sync_runs,
        sync_runs.c.finished_at,
        (
            sync_runs.c.status != "running",
            # A stream's state names the run that wrote it: that run stays.
            ~exists().where(sync_state.c.run_id == sync_runs.c.id),
        ),
    ),
}
assert set(_RULES) | {"inactive_customers"} == set(RETENTION_CATEGORIES)


def _remove(conn: Connection, rule: _Rule, cutoff: datetime) -> tuple[int, datetime | None]:
    """Delete the rule's rows past ``cutoff`` in chunks; (how many, the oldest date)."""
    table = rule.table
    rows = conn.execute(select(table.c.id, rule.dated).where(*rule.where(cutoff))).all()
    ids = [row[0] for row in rows]
    oldest = min((_utc(row[1]) for row in rows), default=None)
    removed = 0
    for chunk in in_chunks(ids):
        if table is sync_runs:
            # Quarantine rows keep their place and lose the run (as ON DELETE SET NULL would,
            # without relying on the connection enforcing foreign keys).
            conn.execute(
                update(quarantine).where(quarantine.c.run_id.in_(chunk)).values(run_id=None)
            )
        result = conn.execute(delete(table).where(table.c.id.in_(chunk)))
        removed += int(result.rowcount or 0)
    return removed, oldest


def _inactive_customers(conn: Connection, cutoff: datetime) -> list[tuple[str, datetime]]:
    """Live golden records none of whose members was seen, and none of whose members'
    activities occurred, since ``cutoff``; with each one's last activity.

    A golden record without members (none should be live, but nothing backs one that is)
    counts as inactive once it was last updated before the cutoff.
    """
    c = customers.c
    member = source_records.alias("member")
    acting = source_records.alias("acting")
    a = activities.c
    acted_on = and_(a.connector == acting.c.connector, a.person_external_id == acting.c.external_id)
    seen_since = exists().where(member.c.customer_id == c.id, member.c.last_seen >= cutoff)
    acted_since = exists(
        select(1)
        .select_from(acting.join(activities, acted_on))
        .where(acting.c.customer_id == c.id, a.occurred_at >= cutoff)
    )
    has_members = exists().where(member.c.customer_id == c.id)
    last_seen = (
        select(func.max(member.c.last_seen)).where(member.c.customer_id == c.id).scalar_subquery()
    )
    last_acted = (
        select(func.max(a.occurred_at))
        .select_from(acting.join(activities, acted_on))
        .where(acting.c.customer_id == c.id)
        .scalar_subquery()
    )
    rows = conn.execute(
        select(c.id, last_seen, last_acted, c.updated_at)
        .where(
            c.merged_into.is_(None),
            ~seen_since,
            ~acted_since,
            or_(has_members, c.updated_at < cutoff),
        )
        .order_by(c.id)
    ).all()
    found = []
    for customer_id, seen, acted, updated in rows:
        dates = [_utc(d) for d in (seen, acted) if d is not None]
        found.append((str(customer_id), max(dates) if dates else _utc(updated)))
    return found


def _member_records(conn: Connection, customer_ids: Sequence[str]) -> list[int]:
    """The ids of the source records that are members of these customers."""
    ids: list[int] = []
    for chunk in in_chunks(customer_ids):
        ids.extend(
            conn.execute(
                select(source_records.c.id).where(source_records.c.customer_id.in_(chunk))
            ).scalars()
        )
    return sorted(ids)


def _remove_inactive_customers(
    conn: Connection, hub: Hub, cutoff: datetime, now: datetime
) -> tuple[int, datetime | None, dict[str, int]]:
    """Erase the inactive customers' source records, and with them everything hanging off
    them (the erasure removes the golden records left without members, and the ids once
    merged into them); then whatever of these customers is left (a golden record that had
    no members), so that no golden values outlive their sources."""
    found = _inactive_customers(conn, cutoff)
    customer_ids = [customer_id for customer_id, _ in found]
    oldest = min((when for _, when in found), default=None)
    record_ids = _member_records(conn, customer_ids)
    details: dict[str, int] = {"source_records": len(record_ids)}
    if not customer_ids:
        return 0, None, details
    if record_ids:
        counts = erase_records(conn, record_ids, now=now, resolver=hub.resolver())
        details.update({f"erased_{name}": int(n) for name, n in counts.as_dict().items()})
    left = [*customer_ids, *merged_into(conn, customer_ids)]
    removed = 0
    for chunk in in_chunks(left):
        # Explicitly, rather than by ON DELETE CASCADE: the same on every connection.
        conn.execute(delete(overrides).where(overrides.c.customer_id.in_(chunk)))
        conn.execute(delete(outbox).where(outbox.c.customer_id.in_(chunk)))
        conn.execute(
            update(customers).where(customers.c.merged_into.in_(chunk)).values(merged_into=None)
        )
        removed += int(
            conn.execute(delete(customers).where(customers.c.id.in_(chunk))).rowcount or 0
        )
    details["customers_left_deleted"] = removed
    return len(customer_ids), oldest, details


def _utc(value: datetime) -> datetime:
    """Backends hand timestamps back with or without a zone: UTC, with a zone."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)

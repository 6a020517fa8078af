"""What the ops team watches and fixes, for the web pages, the JSON API and the CLI: the run
history with its counts and failures, open quarantine rows (the raw record, which is personal
data, only one at a time), push failures, and the actions on them (retry quarantined records
after a mapping fix, make failed pushes due again), each an audit event (ids and counts only).

Reads take a connection; actions take the hub (or its engine) and the actor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from crmhub import audit
from crmhub.hub import Hub, RetryOutcome
from crmhub.push import failed_pushes, outbox_summary
from crmhub.store.dialect import in_chunks, lock_hub
from crmhub.store.rows import as_dict
from crmhub.store.runs import COUNT_NAMES
from crmhub.store.schema import outbox, quarantine, sync_runs

__all__ = [
    "ALWAYS_SHOWN",
    "COUNT_NAMES",
    "RUN_STATUSES",
    "Page",
    "PushFailures",
    "make_pushes_due",
    "push_failures",
    "quarantine_groups",
    "quarantine_item",
    "quarantine_page",
    "retry_quarantine",
    "run_connectors",
    "run_detail",
    "runs_page",
    "shown_counts",
]

RUN_STATUSES = ("running", "succeeded", "failed", "interrupted", "rejected")
"""The statuses a recorded run can have (``rejected``: a webhook delivery refused)."""

MAX_PAGE = 100_000
"""The last page number a listing serves (an offset must stay a small integer)."""


@dataclass
class Page:
    """One page of a listing: its ``items``, how many there are in all, which page."""

    items: list[dict[str, Any]]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """How many pages the listing has (at least one)."""
        return max(1, -(-self.total // self.per_page))


def _aware(value: datetime | None) -> datetime | None:
    """SQLite gives timestamps back without their zone; they were stored in UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _usable(name: str | None) -> bool:
    """Whether a filter value can name anything stored (a NUL byte, which PostgreSQL refuses
    in text, cannot)."""
    return not name or "\x00" not in name


def _offset(page: int, per_page: int) -> int:
    return (min(max(page, 1), MAX_PAGE) - 1) * per_page


# ---------------------------------------------------------------------------------- runs
def _run(row: dict[str, Any]) -> dict[str, Any]:
    """A run row with aware timestamps, its counts under ``counts`` and its duration (so far,
    for a running one)."""
    out = {k: v for k, v in row.items() if k not in COUNT_NAMES}
    for key in ("started_at", "heartbeat_at", "finished_at"):
        out[key] = _aware(row.get(key))
    out["counts"] = {name: int(row.get(name) or 0) for name in COUNT_NAMES}
    end = out["finished_at"] or out["heartbeat_at"]
    start = out["started_at"]
    out["duration"] = max((end - start).total_seconds(), 0.0) if end and start else None
    return out


def runs_page(
    conn: Connection,
    *,
    connector: str | None = None,
    status: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> Page:
    """Runs, newest first, optionally of one connector instance and one status."""
    page = min(max(page, 1), MAX_PAGE)
    if not (_usable(connector) and _usable(status)):
        return Page([], 0, page, per_page)
    where: list[ColumnElement[bool]] = []
    if connector:
        where.append(sync_runs.c.connector == connector)
    if status:
        where.append(sync_runs.c.status == status)
    total = conn.execute(select(func.count()).select_from(sync_runs).where(*where)).scalar_one()
    rows = conn.execute(
        select(sync_runs)
        .where(*where)
        .order_by(sync_runs.c.id.desc())
        .limit(per_page)
        .offset(_offset(page, per_page))
    )
    return Page([_run(as_dict(row)) for row in rows], int(total), page, per_page)


ALWAYS_SHOWN = ("read", "inserted", "updated", "unchanged", "quarantined")
"""The counts a run listing always shows; the others only when a listed run has them."""


def shown_counts(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The count columns worth showing for these runs (as ``crmhub runs`` does)."""
    return [
        name
        for name in COUNT_NAMES
        if name in ALWAYS_SHOWN or any(run["counts"][name] for run in runs)
    ]


def run_connectors(conn: Connection) -> list[str]:
    """The connector instances that have recorded runs, by name."""
    found = conn.execute(select(sync_runs.c.connector).distinct()).scalars()
    return sorted(found)


def run_detail(conn: Connection, run_id: int) -> dict[str, Any] | None:
    """One run with its counts and error, and the quarantine rows it left (open or not,
    without their raw records); None if there is no such run."""
    row = conn.execute(select(sync_runs).where(sync_runs.c.id == run_id)).first()
    if row is None:
        return None
    run = _run(as_dict(row))
    columns = [c for c in quarantine.c if c.name != "raw"]
    rows = conn.execute(
        select(*columns).where(quarantine.c.run_id == run_id).order_by(quarantine.c.id).limit(500)
    )
    run["quarantined_records"] = [_quarantine_row(as_dict(r)) for r in rows]
    return run


# ---------------------------------------------------------------------------- quarantine
def _quarantine_row(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("created_at", "last_seen", "resolved_at"):
        if key in row:
            row[key] = _aware(row[key])
    errors = row.get("errors")
    if isinstance(errors, str | bytes):  # a driver that hands JSON back as text
        errors = orjson.loads(errors)
    row["errors"] = [str(e) for e in (errors or [])]
    return row


def quarantine_page(
    conn: Connection,
    *,
    connector: str | None = None,
    stream: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> Page:
    """Open quarantine rows, newest first, without their raw records (personal data)."""
    page = min(max(page, 1), MAX_PAGE)
    if not (_usable(connector) and _usable(stream)):
        return Page([], 0, page, per_page)
    where: list[ColumnElement[bool]] = [quarantine.c.resolved_at.is_(None)]
    if connector:
        where.append(quarantine.c.connector == connector)
    if stream:
        where.append(quarantine.c.stream == stream)
    total = conn.execute(select(func.count()).select_from(quarantine).where(*where)).scalar_one()
    columns = [c for c in quarantine.c if c.name != "raw"]
    rows = conn.execute(
        select(*columns)
        .where(*where)
        .order_by(quarantine.c.id.desc())
        .limit(per_page)
        .offset(_offset(page, per_page))
    )
    return Page([_quarantine_row(as_dict(r)) for r in rows], int(total), page, per_page)


def quarantine_groups(conn: Connection) -> list[dict[str, Any]]:
    """Open quarantine rows counted per connector instance and stream."""
    q = quarantine.c
    rows = conn.execute(
        select(q.connector, q.stream, func.count())
        .where(q.resolved_at.is_(None))
        .group_by(q.connector, q.stream)
        .order_by(q.connector, q.stream)
    )
    return [{"connector": c, "stream": s, "open": int(n)} for c, s, n in rows]


def quarantine_item(conn: Connection, quarantine_id: int) -> dict[str, Any] | None:
    """One quarantine row with its raw record: ``raw`` as received (text) and ``record``, the
    parsed JSON object when it is one (None for an unparsed row); None if there is no such
    row."""
    row = conn.execute(select(quarantine).where(quarantine.c.id == quarantine_id)).first()
    if row is None:
        return None
    item = _quarantine_row(as_dict(row))
    raw = str(item.get("raw") or "")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    item["record"] = parsed if isinstance(parsed, dict) else None
    item["raw_pretty"] = (
        json.dumps(parsed, indent=2, ensure_ascii=False, sort_keys=True)
        if parsed is not None
        else raw
    )
    return item


def retry_quarantine(
    hub: Hub,
    actor: str,
    *,
    ids: Sequence[int] | None = None,
    connector: str | None = None,
) -> RetryOutcome:
    """Map open quarantined records again with the mappings as they are now on disk (after a
    fix): the chosen ``ids``, or every open one of ``connector`` (both: those ids of that
    connector). Audited as ``quarantine.retried`` with the ids asked for and the counts.
    Neither ids nor a connector: nothing is retried (an empty outcome, no event).

    Raises:
        ConfigError, MappingError: a connector's config or (fixed) mapping is invalid.
    """
    if (not ids and not connector) or (connector is not None and not _usable(connector)):
        return RetryOutcome()
    with hub.engine.connect() as conn:
        names = {
            name
            for name in conn.execute(
                select(quarantine.c.connector)
                .distinct()
                .where(
                    quarantine.c.resolved_at.is_(None),
                    *([quarantine.c.connector == connector] if connector else []),
                )
            ).scalars()
        }
    # A long-lived hub (the web app) keeps each mapping it loaded: drop those of the
    # connectors concerned, so the retry reads the mapping as fixed on disk.
    hub.reload_mappings(sorted(names))
    outcome = hub.retry_quarantined(ids=list(ids) if ids else None, connector=connector)
    with hub.engine.begin() as conn:
        lock_hub(conn)
        audit.append(
            conn,
            actor,
            "quarantine.retried",
            subject_type="connector" if connector else "quarantine",
            subject_id=connector,
            details={
                "ids": sorted(set(ids))[:1000] if ids else None,
                "connector": connector,
                "counts": outcome.counts.as_dict(),
                "not_retriable": outcome.not_retriable,
            },
        )
    return outcome


# -------------------------------------------------------------------------------- pushes
@dataclass
class PushFailures:
    """Pushes that failed or wait for a retry (no field values: they are personal data),
    and the outbox's rows by status."""

    pushes: list[dict[str, Any]]
    summary: dict[str, int] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)


def push_failures(conn: Connection, *, target: str | None = None, limit: int = 200) -> PushFailures:
    """Failed and retrying pushes, newest first, of one target or all; see
    :func:`crmhub.push.failed_pushes`."""
    targets = sorted(conn.execute(select(outbox.c.target).distinct()).scalars())
    if not _usable(target):
        return PushFailures([], {}, targets)
    rows = failed_pushes(conn, target or None, limit=limit)
    for row in rows:
        for key in ("next_attempt_at", "updated_at"):
            row[key] = _aware(row.get(key))
    return PushFailures(rows, outbox_summary(conn, target or None), targets)


def make_pushes_due(
    engine: Engine,
    actor: str,
    *,
    ids: Sequence[int] | None = None,
    target: str | None = None,
    now: datetime | None = None,
) -> int:
    """Make failed or waiting pushes due now (status ``pending``, next attempt ``now``): the
    chosen ``ids``, or every failed and waiting one of ``target``. They are sent on the next
    push (``crmhub push``, or a sync that pushes), with their own idempotency keys; a push
    that failed for good gets one more try. Audited as ``push.retried``.

    Neither ids nor a target: nothing is made due (no event).

    Returns:
        How many pushes were made due.
    """
    if (not ids and not target) or (target is not None and not _usable(target)):
        return 0
    now = now or datetime.now(UTC)
    o = outbox.c
    waiting = or_(o.status == "failed", (o.status == "pending") & (o.attempts > 0))
    chosen: list[int] = []
    with engine.begin() as conn:
        lock_hub(conn)
        if ids:
            for chunk in in_chunks(sorted(set(ids))):
                query = select(o.id).where(o.id.in_(chunk), waiting)
                if target:
                    query = query.where(o.target == target)
                chosen.extend(conn.execute(query).scalars())
        else:
            chosen.extend(conn.execute(select(o.id).where(o.target == target, waiting)).scalars())
        for chunk in in_chunks(chosen):
            conn.execute(
                update(outbox)
                .where(o.id.in_(chunk))
                .values(status="pending", next_attempt_at=now, updated_at=now)
            )
        if chosen:
            audit.append(
                conn,
                actor,
                "push.retried",
                subject_type="target" if target else "outbox",
                subject_id=target,
                details={"ids": sorted(chosen)[:1000], "count": len(chosen)},
                at=now,
            )
    return len(chosen)

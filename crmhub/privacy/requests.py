"""Privacy requests as stored: kind, status, deadlines, duplicates.

A request names its subject only by keyed hashes of the identifiers given and by the ids of
the source records found for them, so the request outlives the subject without holding any
of their personal data.

Deadlines follow GDPR Art. 12(3): one calendar month from receipt (the 31st of January is
due on the last day of February), extendable once by two further months with a recorded
reason.
"""

from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from crmhub.errors import PrivacyError
from crmhub.store.schema import privacy_requests

__all__ = [
    "DUE_SOON",
    "OPEN_STATUSES",
    "STATUS_LABELS",
    "PrivacyRequest",
    "RequestKind",
    "add_months",
    "find_open",
    "get_request",
    "insert_request",
    "list_requests",
    "set_status",
]

RequestKind = Literal["erasure", "access"]
STATUS_LABELS = {
    "received": "received",
    "verified": "verified",
    "in_progress": "in progress",
    "waiting": "waiting on systems",
    "done": "done",
    "partially_done": "partially done",
    "refused": "refused",
}
"""Every status, with the words shown for it."""
OPEN_STATUSES = ("received", "verified", "in_progress", "waiting")
"""Statuses of requests still being handled (their deadline runs)."""
DUE_SOON = timedelta(days=7)
"""Open requests due within this are listed as due soon."""

_r = privacy_requests.c


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months, clamped to the end of a shorter month."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands timestamps back without their zone; they were stored in UTC.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


@dataclass
class PrivacyRequest:
    """One stored request."""

    id: str
    kind: RequestKind
    status: str
    subject: dict[str, Any]
    ledger: dict[str, Any] | None
    received_at: datetime
    due_at: datetime
    extension_reason: str | None
    completed_at: datetime | None
    created_by: str
    duplicate_of: str | None
    refusal_reason: str | None
    duplicates: list[str] = field(default_factory=list)

    @property
    def status_label(self) -> str:
        """The status in words."""
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def open(self) -> bool:
        """Whether the request is still being handled."""
        return self.status in OPEN_STATUSES

    @property
    def extended(self) -> bool:
        """Whether the deadline was extended."""
        return self.extension_reason is not None

    @property
    def identifier_hashes(self) -> set[tuple[str, str]]:
        """The keyed hashes of the identifiers the request names, as (kind, hash)."""
        return {(i["kind"], i["hash"]) for i in self.subject.get("identifiers", [])}

    @property
    def record_ids(self) -> dict[int, str]:
        """The source records found for the subject when the request was last resolved, with
        the reason each was found for."""
        reasons = self.subject.get("reasons") or {}
        return {
            int(i): reasons.get(str(i), "named by the request")
            for i in self.subject.get("records", [])
        }

    def overdue(self, now: datetime) -> bool:
        """Whether the request is open past its due date."""
        return self.open and self.due_at < now

    def due_soon(self, now: datetime) -> bool:
        """Whether the request is open and due within :data:`DUE_SOON`."""
        return self.open and now <= self.due_at <= now + DUE_SOON

    def as_dict(self) -> dict[str, Any]:
        """The request as plain values (no personal data: hashes and ids only)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "status_label": self.status_label,
            "subject": self.subject,
            "received_at": self.received_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "extended": self.extended,
            "extension_reason": self.extension_reason,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "created_by": self.created_by,
            "duplicate_of": self.duplicate_of,
            "duplicates": self.duplicates,
            "refusal_reason": self.refusal_reason,
        }


def _request(row: Any) -> PrivacyRequest:
    received = _aware(row.received_at)
    due = _aware(row.due_at)
    assert received is not None and due is not None
    return PrivacyRequest(
        id=row.id,
        kind=row.kind,
        status=row.status,
        subject=row.subject or {},
        ledger=row.ledger,
        received_at=received,
        due_at=due,
        extension_reason=row.extension_reason,
        completed_at=_aware(row.completed_at),
        created_by=row.created_by,
        duplicate_of=row.duplicate_of,
        refusal_reason=row.refusal_reason,
    )


def insert_request(
    conn: Connection,
    kind: RequestKind,
    subject: dict[str, Any],
    *,
    received_at: datetime,
    actor: str,
    duplicate_of: str | None = None,
) -> PrivacyRequest:
    """Store a new request (status received, due one calendar month after receipt)."""
    request_id = str(uuid.uuid4())
    conn.execute(
        insert(privacy_requests).values(
            id=request_id,
            kind=kind,
            status="received",
            subject=subject,
            received_at=received_at,
            due_at=add_months(received_at, 1),
            created_by=actor,
            duplicate_of=duplicate_of,
        )
    )
    return get_request(conn, request_id)


def get_request(conn: Connection, request_id: str) -> PrivacyRequest:
    """The request with this id (a unique prefix of it will do).

    Raises:
        PrivacyError: no request, or more than one, has this id or prefix.
    """
    rows = conn.execute(
        select(privacy_requests).where(_r.id.startswith(request_id, autoescape=True)).limit(2)
    ).all()
    exact = [row for row in rows if row.id == request_id]
    if exact:
        rows = exact
    if not rows or not request_id:
        raise PrivacyError(f"no privacy request {request_id!r}")
    if len(rows) > 1:
        raise PrivacyError(f"{request_id!r} names more than one request: give more of the id")
    request = _request(rows[0])
    request.duplicates = list(
        conn.execute(
            select(_r.id).where(_r.duplicate_of == request.id).order_by(_r.received_at)
        ).scalars()
    )
    return request


def find_open(
    conn: Connection, kind: RequestKind, hashes: set[tuple[str, str]]
) -> PrivacyRequest | None:
    """The earliest open request of ``kind`` (not itself a duplicate) naming any of the same
    identifiers, if there is one."""
    rows = conn.execute(
        select(privacy_requests)
        .where(_r.kind == kind, _r.status.in_(OPEN_STATUSES), _r.duplicate_of.is_(None))
        .order_by(_r.received_at, _r.id)
    ).all()
    for row in rows:
        request = _request(row)
        if request.identifier_hashes & hashes:
            return get_request(conn, request.id)
    return None


def list_requests(
    conn: Connection, *, status: str | None = None, kind: str | None = None, limit: int = 200
) -> list[PrivacyRequest]:
    """Requests, open ones first by due date, then the rest newest first."""
    query = select(privacy_requests)
    if status == "open":
        query = query.where(_r.status.in_(OPEN_STATUSES))
    elif status:
        if status not in STATUS_LABELS:
            known = ", ".join(["open", *STATUS_LABELS])
            raise PrivacyError(f"unknown status {status!r} (one of: {known})")
        query = query.where(_r.status == status)
    if kind:
        query = query.where(_r.kind == kind)
    rows = [_request(row) for row in conn.execute(query)]
    rows.sort(key=lambda r: (not r.open, r.due_at if r.open else -r.received_at.timestamp()))
    return rows[:limit]


def set_status(
    conn: Connection,
    request_id: str,
    status: str,
    *,
    now: datetime | None = None,
    **values: Any,
) -> None:
    """Change a request's status (and its linked duplicates'); a final status sets the
    completion time."""
    final = status in ("done", "partially_done", "refused")
    changes: dict[str, Any] = {"status": status, **values}
    if final:
        changes["completed_at"] = now or datetime.now(UTC)
    conn.execute(update(privacy_requests).where(_r.id == request_id).values(**changes))
    duplicate_changes = {k: v for k, v in changes.items() if k in ("status", "completed_at")}
    conn.execute(
        update(privacy_requests).where(_r.duplicate_of == request_id).values(**duplicate_changes)
    )


def due_date_for(received: date | datetime) -> datetime:
    """The due date of a request received at ``received``."""
    moment = (
        received
        if isinstance(received, datetime)
        else datetime(received.year, received.month, received.day, tzinfo=UTC)
    )
    return add_months(moment, 1)

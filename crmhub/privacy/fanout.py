"""Fan-out: erasing the subject in every connected system that holds them.

Each system gets one task per request. A system whose connector can erase gets an ``api``
task that calls :meth:`crmhub.connector.Connector.erase` with the subject's external ids;
any other system (no erase capability, or no longer configured) gets a ``manual`` task that
an officer closes with a note once done by hand.

Crash safety comes from the order of writes: a task's attempt is counted and its next
attempt pushed out (a lease) in a committed transaction *before* the system is called, and
its result is written in the next one. A process killed in between leaves a task that is
still pending and becomes due again when the lease ends; calling the system again is
harmless, since erasing what is already gone counts as done. A task that is done is never
called again.

An ``api`` task that fails is retried with exponential backoff until
:data:`MAX_ATTEMPTS`; after that (or at once, for an error retrying cannot fix) it is
``failed`` and the request ends ``partially done``. External ids are kept while a task still
needs them and replaced by their keyed hashes once erased.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from crmhub.connector import EraseResult
from crmhub.errors import ConfigError, CrmhubError
from crmhub.logs import mask_text
from crmhub.privacy.identifiers import external_id_hash
from crmhub.store.schema import privacy_tasks

__all__ = [
    "BACKOFF",
    "LEASE",
    "MAX_ATTEMPTS",
    "PrivacyTask",
    "TaskOutcome",
    "backoff",
    "insert_tasks",
    "list_tasks",
    "request_state",
    "run_task",
]

MAX_ATTEMPTS = 6
"""Calls of a system before its task is given up as failed."""
BACKOFF = timedelta(minutes=1)
"""Wait after the first failed attempt; doubled after each further one."""
LEASE = timedelta(minutes=10)
"""How long a task being worked on is not due again (the worker may have died)."""

log = structlog.get_logger("crmhub.privacy")
_k = privacy_tasks.c


def backoff(attempts: int) -> timedelta:
    """The wait before the next attempt after ``attempts`` failed ones (capped at a day)."""
    return min(BACKOFF * (2 ** max(attempts - 1, 0)), timedelta(days=1))


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


@dataclass
class PrivacyTask:
    """One system's part of a request."""

    id: int
    request_id: str
    connector: str
    kind: str  # api | manual
    status: str  # pending | done | failed
    targets: dict[str, Any]
    attempts: int
    next_attempt_at: datetime | None
    result: dict[str, Any] | None
    note: str | None
    updated_at: datetime

    @property
    def records(self) -> int:
        """How many records of the subject the system held."""
        return int(self.targets.get("count", 0))

    def due(self, now: datetime) -> bool:
        """Whether the task should be worked on now."""
        return (
            self.kind == "api"
            and self.status == "pending"
            and (self.next_attempt_at is None or self.next_attempt_at <= now)
        )

    def as_dict(self) -> dict[str, Any]:
        """The task without the external ids it may still hold."""
        return {
            "connector": self.connector,
            "kind": self.kind,
            "status": self.status,
            "records": self.records,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
            "result": self.result,
            "note_recorded": bool(self.note),
            "updated_at": self.updated_at.isoformat(),
        }


def _task(row: Any) -> PrivacyTask:
    updated = _aware(row.updated_at)
    assert updated is not None
    return PrivacyTask(
        id=row.id,
        request_id=row.request_id,
        connector=row.connector,
        kind=row.kind,
        status=row.status,
        targets=row.targets or {},
        attempts=row.attempts,
        next_attempt_at=_aware(row.next_attempt_at),
        result=row.result,
        note=row.note,
        updated_at=updated,
    )


def insert_tasks(
    conn: Connection,
    request_id: str,
    systems: Mapping[str, Sequence[str]],
    kinds: Mapping[str, str],
    now: datetime,
) -> None:
    """One pending task per system holding the subject: its external ids and its kind."""
    for connector, external_ids in sorted(systems.items()):
        ids = sorted(set(external_ids))
        conn.execute(
            insert(privacy_tasks).values(
                request_id=request_id,
                connector=connector,
                kind=kinds[connector],
                status="pending",
                targets={"count": len(ids), "external_ids": ids},
                attempts=0,
                updated_at=now,
            )
        )


def list_tasks(conn: Connection, request_id: str) -> list[PrivacyTask]:
    """The request's tasks, by system."""
    rows = conn.execute(
        select(privacy_tasks).where(_k.request_id == request_id).order_by(_k.connector)
    )
    return [_task(row) for row in rows]


def request_state(tasks: Sequence[PrivacyTask]) -> str:
    """The request status its tasks add up to: done when every task is, partially done
    when none is left to try but some failed, otherwise waiting on systems."""
    if all(t.status == "done" for t in tasks):
        return "done"
    if any(t.status == "pending" for t in tasks):
        return "waiting"
    return "partially_done"


@dataclass
class TaskOutcome:
    """What one attempt at a task did."""

    connector: str
    status: str
    erased: int = 0
    already_gone: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def claim(conn: Connection, task: PrivacyTask, now: datetime) -> bool:
    """Count an attempt and lease the task (committed by the caller before the system is
    called); False if another worker claimed it first."""
    result = conn.execute(
        update(privacy_tasks)
        .where(_k.id == task.id, _k.status == "pending", _k.attempts == task.attempts)
        .values(attempts=task.attempts + 1, next_attempt_at=now + LEASE, updated_at=now)
    )
    return bool(result.rowcount)


def call_system(erase: Callable[[list[str]], Any], external_ids: list[str]) -> list[EraseResult]:
    """Call a connector's ``erase`` and collect one result per id; an error that stops the
    whole call fails every id still without a result (retriable unless it is a
    configuration or credentials problem)."""
    results: dict[str, EraseResult] = {}
    try:
        for result in erase(external_ids):
            results[str(result.external_id)] = result
    except ConfigError as exc:  # the settings must change first: retrying cannot help
        error, retriable = str(exc), False
    except CrmhubError as exc:  # refused credentials included: they can be fixed meanwhile
        error, retriable = str(exc), True
    except Exception as exc:  # a connector's bug must not stop the other systems' tasks
        error, retriable = (
            f"the connector failed: {type(exc).__name__}: {mask_text(str(exc))}",
            True,
        )
    else:
        error, retriable = "the connector returned no result for this id", True
    return [
        results.get(i) or EraseResult(i, "failed", error=error, retriable=retriable)
        for i in external_ids
    ]


def record_results(
    conn: Connection,
    task: PrivacyTask,
    results: Sequence[EraseResult],
    secret: bytes,
    now: datetime,
) -> TaskOutcome:
    """Write what an attempt did: done ids become keyed hashes; the task is done when no id
    is left, failed when out of attempts (or the error cannot be retried), else pending
    until its backoff ends."""
    attempts = task.attempts + 1
    previous = task.result or {}
    outcome = TaskOutcome(task.connector, "pending")
    left: list[str] = []
    for result in results:
        if result.status == "erased":
            outcome.erased += 1
        elif result.status == "already_gone":
            outcome.already_gone += 1
        else:
            outcome.failed += 1
            left.append(result.external_id)
            if result.error:
                outcome.errors.append(result.error)
    done_hashes = sorted(
        external_id_hash(secret, task.connector, r.external_id) for r in results if r.done
    )
    retriable = all(r.retriable for r in results if not r.done)
    if not left:
        outcome.status = "done"
    elif attempts >= MAX_ATTEMPTS or not retriable:
        outcome.status = "failed"
    result_body = {
        "erased": previous.get("erased", 0) + outcome.erased,
        "already_gone": previous.get("already_gone", 0) + outcome.already_gone,
        "failed": outcome.failed,
        "done_hashes": sorted({*previous.get("done_hashes", []), *done_hashes}),
        "last_error": _first_line(outcome.errors[0]) if outcome.errors else None,
    }
    targets = {"count": task.records, "external_ids": sorted(left)}
    conn.execute(
        update(privacy_tasks)
        .where(_k.id == task.id)
        .values(
            status=outcome.status,
            attempts=attempts,
            targets=targets,
            result=result_body,
            next_attempt_at=now + backoff(attempts) if outcome.status == "pending" else None,
            updated_at=now,
        )
    )
    log.info(
        "privacy.task",
        connector=task.connector,
        status=outcome.status,
        erased=outcome.erased,
        already_gone=outcome.already_gone,
        failed=outcome.failed,
        attempt=attempts,
    )
    return outcome


def _first_line(error: str) -> str:
    return error.splitlines()[0][:300] if error else error


def run_task(
    task: PrivacyTask,
    *,
    begin: Callable[[], Any],
    erase: Callable[[list[str]], Any] | None,
    secret: bytes,
    now: Callable[[], datetime],
) -> TaskOutcome | None:
    """Work on one due ``api`` task: claim it, call the system, record the results.

    Args:
        begin: opens a transaction (``engine.begin``).
        erase: the connector's ``erase``, or None when the connector cannot be built (the
            task fails with that reason).
        now: the clock.

    Returns:
        What the attempt did, or None when another worker had claimed the task.
    """
    with begin() as conn:
        if not claim(conn, task, now()):
            return None
    external_ids = list(task.targets.get("external_ids", []))
    if erase is None:
        results = [
            EraseResult(i, "failed", error="the connector is not configured") for i in external_ids
        ]
    else:
        results = call_system(erase, external_ids)
    with begin() as conn:
        return record_results(conn, task, results, secret, now())
